"""The package runs from an installed wheel, without the source checkout.

The wheel is built from a copy of the package (links resolved, as a release build
sees them), installed with --no-deps into a fresh venv whose only other packages are
the project venv's (a .pth file, so nothing is downloaded), and run from a folder
outside the checkout: the help, and a small build of the shipped demo pool.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DEMO_BUILD = """
import json
import sys
from pathlib import Path
import hyre_engine
from hyre_engine.demo import PAIRS_FILE, ensure_demo
from hyre_engine.pipeline import BuildConfig
from hyre_engine.store import Store

assert "{repo}" not in str(Path(hyre_engine.__file__).resolve()), hyre_engine.__file__
assert PAIRS_FILE.is_file(), PAIRS_FILE
from hyre_engine import demo_embeddings
# the shipped vectors travel in the wheel too, and read as the file the checkout holds
assert len(demo_embeddings.read()[1]) == 324, demo_embeddings.EMBEDDINGS_FILE
# The shipped file, cut to its first two prompts: what is tested is that the wheel
# carries the data and builds from it, not how long 324 texts take to embed.
rows = [json.loads(line) for line in PAIRS_FILE.read_text().splitlines()]
prompts = list(dict.fromkeys(r["prompt_id"] for r in rows))[:2]
Path("slice.jsonl").write_text("".join(json.dumps(r) + chr(10) for r in rows if r["prompt_id"] in prompts))
config = BuildConfig(train_groups=["crowd"], n_heads=4, hidden=8, calibrate=False)
report = ensure_demo(Store("demo.duckdb"), config=config, pairs_path=Path("slice.jsonl"))
print("built", report.n_pairs, report.ensemble_id, report.trained)
"""


def _run(args, cwd, timeout=600):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_an_installed_wheel_runs_the_help_and_a_demo_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "hyre_engine", src / "hyre_engine",
                    ignore=shutil.ignore_patterns("__pycache__"), symlinks=False)
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-q", "-w", str(dist), str(src)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("hyre_studio-*.whl"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    (site / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                      "-q", str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    helped = _run([str(python), "-m", "hyre_engine", "--help"], cwd=work)
    assert helped.returncode == 0, helped.stderr
    assert "build" in helped.stdout and "evaluate" in helped.stdout
    demo = _run([str(python), "-c", DEMO_BUILD.format(repo=REPO)], cwd=work)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert demo.stdout.startswith("built ") and "True" in demo.stdout
