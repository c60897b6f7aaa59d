"""Command line: `build` and `evaluate` in-process on a few demo prompts, errors, the package surface.

Commands run through `hyre_engine.cli.main` (stdout captured); one test runs
``python -m hyre_engine`` in a fresh interpreter to check the entry point and
the exit code of an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyre_engine.cli import main
from hyre_engine.protocol import ALL_METHODS

REPO = Path(__file__).resolve().parents[1]
DEMO_PAIRS = REPO / "data" / "demo" / "pairs.jsonl"
TRAIN_PROMPTS = 3  # 18 texts, 45 pairs: embeds and trains in a few seconds
TARGET_GROUPS = ("maya", "leo")  # two personas who want opposite depths
SMALL_BUILD = ["--heads", "8", "--hidden", "16"]



@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The demo rows of a few prompts, as the whole pool, its crowd rows and two personas' rows."""
    rows = [json.loads(line) for line in DEMO_PAIRS.read_text().splitlines() if line.strip()]
    prompts = list(dict.fromkeys(r["prompt_id"] for r in rows))[:TRAIN_PROMPTS]
    rows = [r for r in rows if r["prompt_id"] in prompts]
    folder = tmp_path_factory.mktemp("cli")

    def write(name: str, selected: list[dict]) -> Path:
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in selected))
        return path

    good = json.dumps(rows[0])
    bad = folder / "broken.jsonl"
    bad.write_text(good + "\n" + good[:-1] + ',"label": \n' + good + "\n")
    return {
        "pool": write("subset.jsonl", rows),
        "train": write("crowd.jsonl", [r for r in rows if r["group"] == "crowd"]),
        "target": write("personas.jsonl", [r for r in rows if r["group"] in TARGET_GROUPS]),
        "bad": bad,
    }


def last_json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_quiet_build_leaves_stderr_empty_and_progress_counts_are_monotone(files, tmp_path, capsys):
    db = str(tmp_path / "quiet.duckdb")
    argv = ["build", "--pool", str(files["pool"]), "--db", db, "--train-groups", "crowd", "--quiet", *SMALL_BUILD]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert last_json_line(captured.out)["embedded"] == 18  # stdout still ends in the JSON report

    from hyre_engine.pipeline import BUILD_STAGES, BuildConfig, build_pool
    from hyre_engine.store import Store

    store = Store(tmp_path / "progress.duckdb")
    from hyre_engine.data import read_preferences

    pool_id = store.add_pool("subset", read_preferences(files["pool"]))
    calls: dict[str, list[tuple[int, int]]] = {}
    config = BuildConfig(train_groups=["crowd"], n_heads=8, hidden=16, calibrate=False)
    build_pool(store, pool_id, config, progress=lambda stage, done, total: calls.setdefault(stage, []).append(
        (done, total)))
    assert {"embed", "train", "predict"} <= set(calls) <= set(BUILD_STAGES)
    for stage, seen in calls.items():
        done = [d for d, _ in seen]
        assert done == sorted(done), stage  # monotone
        assert len({t for _, t in seen}) == 1 and done[-1] == seen[-1][1], stage  # ends at the total


@pytest.mark.slow
def test_build_prints_what_it_computed_then_what_it_reused(files, tmp_path, capsys):
    db = str(tmp_path / "build.duckdb")
    argv = ["build", "--pool", str(files["pool"]), "--db", db, "--train-groups", "crowd", *SMALL_BUILD]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "imported 585 rows" in out and "as pool 'subset'" in out
    assert "embeddings: 18 computed, 0 reused" in out
    first = last_json_line(out)
    assert (first["n_pairs"], first["n_texts"], first["n_train_rows"]) == (45, 18, 45)
    assert (first["embedded"], first["trained"], first["predicted"]) == (18, True, True)

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pool 'subset' already in the store: reusing it" in out
    assert "embeddings: 0 computed, 18 reused" in out
    assert f"ensemble {first['ensemble_id']}: reused" in out
    assert "head predictions: reused" in out
    again = last_json_line(out)
    assert (again["embedded"], again["embeddings_reused"]) == (0, 18)
    assert (again["trained"], again["predicted"]) == (False, False)
    assert again["ensemble_id"] == first["ensemble_id"]


@pytest.mark.slow
def test_evaluate_writes_the_json_contract_and_a_table(files, tmp_path, capsys):
    db, out_json = str(tmp_path / "eval.duckdb"), tmp_path / "out" / "result.json"
    argv = [
        "evaluate", "--train", str(files["train"]), "--target", str(files["target"]),
        "--db", db, "--n", "0,4", "--seeds", "2", "--heads", "8", "--strategy", "bald",
        "--json", str(out_json),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads(out_json.read_text())

    assert result["n"] == [0, 4]
    assert set(result["groups"]) == set(TARGET_GROUPS)
    for group in result["groups"].values():
        assert group["n_examples"] == 45
        assert set(group["methods"]) == set(ALL_METHODS)
        for stats in group["methods"].values():
            assert len(stats["mean"]) == len(stats["std"]) == 2
            assert all(0.0 <= v <= 1.0 for v in stats["mean"])
            assert all(v >= 0.0 for v in stats["std"])
        m = group["methods"]
        # with no labels HyRe's weights are uniform, and fine-tuning has not moved a head
        np.testing.assert_allclose(m["hyre"]["mean"][0], m["uniform"]["mean"][0], atol=1e-9)
        np.testing.assert_allclose(m["finetune"]["mean"][0], m["uniform"]["mean"][0], atol=1e-9)
    assert set(result["summary"]) == set(ALL_METHODS)
    for method, stats in result["summary"].items():
        per_group = [g["methods"][method]["mean"] for g in result["groups"].values()]
        np.testing.assert_allclose(stats["mean"], np.mean(per_group, axis=0), atol=1e-6)
        assert all(0.0 <= v <= 1.0 for v in stats["mean"])

    # the readable table: a header with every n, a row per method
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("method"))
    assert header.split()[1:] == ["n=0", "n=4"]
    for method in ALL_METHODS:
        row = next(line for line in lines if line.split()[:1] == [method])
        np.testing.assert_allclose(
            [float(v) for v in row.split()[1:]], result["summary"][method]["mean"], atol=5e-4
        )
    assert f"wrote {out_json}" in out

    # another loss and strategy on the same store: the ensemble is reused, the options recorded
    argv2 = [
        "evaluate", "--train", str(files["train"]), "--target", str(files["target"]),
        "--db", db, "--n", "0,2", "--seeds", "1", "--heads", "8", "--strategy", "entropy",
        "--loss", "cross-entropy", "--methods", "uniform,hyre", "--rho", "0", "--json", str(out_json),
    ]
    assert main(argv2) == 0
    capsys.readouterr()
    second = json.loads(out_json.read_text())
    assert second["n"] == [0, 2] and set(second["summary"]) == {"uniform", "hyre"}
    assert (second["strategy"], second["loss"]) == ("entropy", "cross-entropy")
    assert second["ensemble_id"] == result["ensemble_id"]
    # the personal head's structured prior: the ensemble's unless given
    assert result["rho_source"] in ("ensemble", "default") and result["rho"] >= 0
    assert (second["rho"], second["rho_source"], second["prior_rank"]) == (0.0, "given", 0)


@pytest.mark.slow
def test_quiet_evaluate_leaves_stderr_empty_and_json_dash_is_all_of_stdout(files, tmp_path, capsys):
    argv = ["evaluate", "--train", str(files["train"]), "--target", str(files["target"]),
            "--db", str(tmp_path / "quiet.duckdb"), "--n", "0,2", "--seeds", "2", *SMALL_BUILD,
            "--methods", "uniform,hyre,finetune", "--json", "-"]
    assert main([*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    quiet = json.loads(captured.out)  # nothing but the JSON on stdout
    assert set(quiet["summary"]) == {"uniform", "hyre", "finetune"}
    assert main(argv) == 0  # the same store: the ensemble is reused (--jobs: tests/test_evaluate.py)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["groups"] == quiet["groups"]
    # bars with counts on stderr, and the table there too (stdout is the JSON)
    assert "evaluate: 100%" in captured.err and "tune: 100%" in captured.err
    assert any(line.split()[:1] == ["finetune"] for line in captured.err.splitlines())


def test_evaluate_malformed_file_exits_2_naming_file_and_line(files, tmp_path, capsys):
    argv = ["evaluate", "--train", str(files["train"]), "--target", str(files["bad"]),
            "--db", str(tmp_path / "bad.duckdb")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "broken.jsonl" in err and "line 2" in err and "malformed JSON" in err


def test_evaluate_missing_file_exits_2_naming_it(files, tmp_path, capsys):
    missing = tmp_path / "nowhere.jsonl"
    argv = ["evaluate", "--train", str(missing), "--target", str(files["target"]),
            "--db", str(tmp_path / "missing.duckdb")]
    assert main(argv) == 2
    assert "nowhere.jsonl" in capsys.readouterr().err


def test_evaluate_unknown_method_exits_2_listing_valid_ones(files, tmp_path, capsys):
    argv = ["evaluate", "--train", str(files["train"]), "--target", str(files["target"]),
            "--db", str(tmp_path / "m.duckdb"), "--methods", "hyre,oracle_of_delphi"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "oracle_of_delphi" in err and "best_head_oracle" in err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--strategy", "greedy"), ("--loss", "hinge"), ("--seeds", "many"), ("--rho", "-1"), ("--rho", "inf")],
)
def test_bad_option_values_are_argparse_errors(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--train", "a.jsonl", "--target", "b.jsonl", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and value in err


def test_build_requires_a_pool(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build"])
    assert exc.value.code == 2
    assert "--pool" in capsys.readouterr().err


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "hyre_engine", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )


@pytest.mark.slow
def test_python_m_entry_point_help_and_error_exit_code(files, tmp_path):
    shown = _run_module("--help", cwd=tmp_path)
    assert shown.returncode == 0
    for command in ("build", "evaluate", "repro", "demo-data"):
        assert command in shown.stdout

    failed = _run_module(
        "evaluate", "--train", str(files["bad"]), "--target", str(files["target"]),
        "--db", str(tmp_path / "sub.duckdb"), cwd=tmp_path,
    )
    assert failed.returncode == 2
    assert "broken.jsonl" in failed.stderr and "line 2" in failed.stderr
    assert "Traceback" not in failed.stderr


# -- the package surface --------------------------------------------------------------


def test_import_hyre_engine_stays_light():
    code = (
        "import sys, hyre_engine\n"
        "print(sorted(m for m in ('torch', 'duckdb', 'pandas', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )
    assert out.stdout.strip() == "[]"


def test_exported_names_resolve_to_their_modules_objects():
    import importlib

    import hyre_engine

    assert len(hyre_engine.__all__) == len(set(hyre_engine.__all__))
    for name in hyre_engine.__all__:
        value = getattr(hyre_engine, name)
        assert value is not None, name
        module = getattr(value, "__module__", None)
        if module and module.startswith("hyre_engine."):
            assert getattr(importlib.import_module(module), name) is value
    from hyre_engine import pipeline, store

    assert hyre_engine.build_pool is pipeline.build_pool
    assert hyre_engine.Store is store.Store
    assert hyre_engine.store is store  # submodules are attributes too
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = hyre_engine.no_such_name


@pytest.mark.slow
def test_build_refuses_a_changed_file_under_an_existing_name_unless_replace(files, tmp_path, capsys):
    db = str(tmp_path / "replace.duckdb")
    base = ["--db", db, "--train-groups", "crowd", *SMALL_BUILD, "--name", "p"]
    assert main(["build", "--pool", str(files["pool"]), *base]) == 0
    capsys.readouterr()
    assert main(["build", "--pool", str(files["train"]), *base]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a pool named 'p' already exists with different content") and "--replace" in err
    assert main(["build", "--pool", str(files["train"]), *base, "--replace"]) == 0
    assert "replaced the pool with" in capsys.readouterr().out
