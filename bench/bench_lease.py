"""What sharing the store file between processes costs a label write (store/lease.py).

Run: .venv/bin/python bench/bench_lease.py [--labels 200] [--baseline REF]

Every figure is the median time of `Store.add_session_label` (the Label page's write:
one transaction, committed to the WAL) in a process of its own, on a fresh DuckDB file:

1. baseline: the store code of git REF (default: the commit before store/lease.py was
   added, extracted with `git archive`), which holds the file for its whole life;
2. lease, alone: this checkout, no other process;
3. lease, during a build: this checkout while a second process plays a CLI build
   (compute for 0.2 s, write 2,000 embeddings in one transaction, again), so the
   file changes hands around most labels;
4. baseline, during a build: the old code in both processes: the labeller cannot
   open the file at all.

It also times opening a DuckDB file (what a hand-over costs each side). The machine may
be shared: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_PAIRS = 500
# A build's rhythm: seconds of compute between two writes, rows per write.
BUILD_COMPUTE_S, BUILD_ROWS = 0.2, 2000


def _setup(db: str) -> None:
    import numpy as np
    import pandas as pd

    from hyre_engine.store import Store

    frame = pd.DataFrame({"pair_id": [f"p{i}" for i in range(N_PAIRS)],
                          "prompt": [f"q{i}" for i in range(N_PAIRS)],
                          "response_a": [f"a{i}" for i in range(N_PAIRS)],
                          "response_b": [f"b{i}" for i in range(N_PAIRS)]})
    with Store(db) as store:
        pool = store.add_pool("bench", frame, source="bench")
        store.put_ensemble(ensemble_id="ens", pool_id=pool, backbone_id="bench", config={"n_heads": 2},
                           weights=b"", train_fingerprint="bench")
        store.put_head_predictions("ens", pool, np.zeros((N_PAIRS, 2), np.float32))


def _label(db: str, n: int) -> None:
    """Worker: n labels, one write each; prints the latencies (ms) as JSON."""
    from hyre_engine.store import Store

    store = Store(db)
    found = store.get_pool("bench")
    pool = found["pool_id"] if isinstance(found, dict) else found.pool_id  # the baseline returns a dict
    session = store.get_or_create_session(user=f"u{os.getpid()}", pool_id=pool, ensemble_id="ens")
    times = []
    for i in range(n):
        start = time.perf_counter()
        store.add_session_label(session, row_index=i, pair_id=f"p{i}", label="ab"[i % 2])
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)  # a person's pace is far slower; this keeps the writes apart
    lease = getattr(store, "_lease", None)
    print(json.dumps({"ms": times, "opens": getattr(lease, "opens", 1)}))
    store.close()


def _build(db: str, seconds: float) -> None:
    """Worker: a build's rhythm of compute and big writes for ``seconds``."""
    import numpy as np

    from hyre_engine.store import Store, text_hash

    store = Store(db)
    deadline, k = time.monotonic() + seconds, 0
    print("ready", flush=True)
    while time.monotonic() < deadline:
        time.sleep(BUILD_COMPUTE_S)
        hashes = [text_hash("build", f"{k} {i}") for i in range(BUILD_ROWS)]
        store.put_embeddings("bench-backbone", hashes, np.ones((BUILD_ROWS, 32), np.float32))
        k += 1
    print(json.dumps({"writes": k}), flush=True)
    store.close()


def _run(code: Path, *args: str, background: bool = False):
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", *args]
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _baseline_tree(ref: str | None, folder: Path) -> tuple[str, Path]:
    if ref is None:
        added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "hyre_engine/store/lease.py"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        ref = f"{added[-1]}^" if added else "HEAD"
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    archive = folder / "baseline.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref, "hyre_engine"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "baseline", filter="data")
    return sha, folder / "baseline"


def _scenario(code: Path, folder: Path, name: str, n: int, *, during_build: bool) -> dict:
    db = str(folder / f"{name}.duckdb")
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, __file__, "--worker", "setup", db], env=env, check=True)
    builder = None
    if during_build:
        builder = _run(code, "build", db, "600", background=True)
        builder.stdout.readline()  # it holds the file now
    try:
        return _run(code, "label", db, str(n))
    finally:
        if builder is not None:
            builder.kill()
            builder.wait()


def _open_ms() -> float:
    import duckdb

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "open.duckdb")
        duckdb.connect(path).close()
        times = []
        for _ in range(20):
            start = time.perf_counter()
            duckdb.connect(path).close()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _line(name: str, result: dict, baseline: float | None) -> str:
    if "error" in result:
        return f"{name:<28} could not write: {result['error'][:110]}"
    ms = sorted(result["ms"])
    median = statistics.median(ms)
    ratio = f" ({median / baseline:4.2f}x baseline)" if baseline else ""
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return (f"{name:<28} median {median:7.2f} ms, p90 {p90:7.2f} ms, max {ms[-1]:7.1f} ms{ratio}; "
            f"opened the file {result['opens']} times")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--baseline", default=None, help="git ref of the baseline store code")
    args = parser.parse_args(argv)
    if not 1 <= args.labels <= N_PAIRS:
        parser.error(f"--labels must be 1..{N_PAIRS}")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"{args.labels} labels per row")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sha, old = _baseline_tree(args.baseline, folder)
        base = _scenario(old, folder, "baseline", args.labels, during_build=False)
        base_ms = statistics.median(base["ms"]) if "ms" in base else None
        print(_line(f"baseline ({sha}), alone", base, None))
        print(_line("lease, alone", _scenario(ROOT, folder, "alone", args.labels, during_build=False), base_ms))
        print(_line("lease, during a build", _scenario(ROOT, folder, "build", args.labels, during_build=True),
                    base_ms))
        print(_line(f"baseline ({sha}), during a build",
                    _scenario(old, folder, "old-build", min(args.labels, 20), during_build=True), base_ms))
    print(f"opening a DuckDB file (a hand-over costs one each side): median {_open_ms():.1f} ms")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, db, *rest = sys.argv[2:]
        {"setup": lambda: _setup(db), "label": lambda: _label(db, int(rest[0])),
         "build": lambda: _build(db, float(rest[0]))}[kind]()
    else:
        raise SystemExit(main())
