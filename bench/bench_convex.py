"""The convex-weights baseline: the projected-gradient solver against the former SLSQP one.

    nice -n 5 .venv/bin/python bench/bench_convex.py --db /tmp/bench-eval.duckdb [--files out/eval-users]
        [--groups 10] [--seeds 5]

On the issue-14 file (bench/make_eval_file.py; the default build, reused when ``--db``
holds it), for the first ``--groups`` target groups and every (seed, n > 0) of the
protocol's random draws: ``baselines.fit_convex_weights`` (spectral projected gradient)
and SLSQP on the same objective (the solver it replaced, as it was called: bounds,
the sum constraint, at most 200 iterations). Prints the seconds of each, the objective
each reaches, the largest weight difference, and the convex method's accuracy on the
rest rows by n with each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from make_eval_file import write_files  # noqa: E402

from hyre_engine import baselines, evaluate  # noqa: E402
from hyre_engine.numerics import accuracy, sigmoid  # noqa: E402
from hyre_engine.pipeline import BuildConfig  # noqa: E402
from hyre_engine.protocol import DEFAULT_N, adaptation_order  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def _slsqp(Z: np.ndarray, y: np.ndarray, l2: float = baselines.DEFAULT_CONVEX_L2) -> np.ndarray:
    """The former fit_convex_weights, verbatim in what it asked of scipy."""
    K = Z.shape[1]
    uniform = np.full(K, 1.0 / K)
    result = minimize(baselines._convex_objective, uniform, args=(sigmoid(Z), y, l2), jac=True, method="SLSQP",
                      bounds=[(0.0, 1.0)] * K, options={"maxiter": 200},
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}])
    w = np.clip(result.x, 0.0, None)
    return w / w.sum() if w.sum() > 0 else uniform


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=None)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print(f"start: load {_load()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-convex-"))
    files = args.files or tmp / "files"
    if not (files / "train.jsonl").exists():
        write_files(files, train_users=860, train_pairs=15, targets=40, target_pairs=80, seed=0)
    store = Store(args.db or tmp / "bench.duckdb")
    train = evaluate.import_file(store, files / "train.jsonl")
    target = evaluate.import_file(store, files / "target.jsonl")
    _, _, tgt = evaluate._prepare(store, train, target, BuildConfig(), evaluate.load_backbone(None), [], None)
    groups = evaluate._target_groups(store, target, tgt, None)[: args.groups]
    positive = [n for n in DEFAULT_N if n]
    rows = []  # (n, seconds new, seconds old, f new, f old, max |dw|, acc new, acc old)
    for g in groups:
        Z, y = g.logits.astype(np.float64), g.y
        for seed in range(args.seeds):
            order = adaptation_order(Z, y, max(DEFAULT_N), strategy="random", beta=1.0, loss="zero-one", seed=seed)
            for n in positive:
                adapt, rest = order[:n], np.setdiff1d(np.arange(len(y)), order[:n])
                start = time.perf_counter()
                new = baselines.fit_convex_weights(Z[adapt], y[adapt])
                mid = time.perf_counter()
                old = _slsqp(Z[adapt], y[adapt])
                end = time.perf_counter()
                P = sigmoid(Z[adapt])
                f_new, f_old = (baselines._convex_objective(w, P, y[adapt], baselines.DEFAULT_CONVEX_L2)[0]
                                for w in (new, old))
                rows.append((n, mid - start, end - mid, f_new, f_old, np.abs(new - old).max(),
                             accuracy(sigmoid(Z[rest]) @ new, y[rest]), accuracy(sigmoid(Z[rest]) @ old, y[rest])))
    r = np.array(rows)
    print(f"{len(groups)} groups x {args.seeds} seeds x n in {positive}: {len(r)} fits (load {_load()})")
    print(f"seconds: projected gradient {r[:, 1].sum():.2f}, SLSQP {r[:, 2].sum():.2f} ({r[:, 2].sum() / r[:, 1].sum():.0f}x)")
    print(f"objective new - old: max {np.max(r[:, 3] - r[:, 4]):+.2e}, mean {np.mean(r[:, 3] - r[:, 4]):+.2e}; "
          f"largest weight difference {r[:, 5].max():.2e}")
    for n in positive:
        sel = r[:, 0] == n
        d = r[sel, 6] - r[sel, 7]
        print(f"n={n:>2}: accuracy new {r[sel, 6].mean():.4f}, old {r[sel, 7].mean():.4f}, "
              f"difference mean {d.mean():+.4f}, max |diff| {np.abs(d).max():.4f}, folds that differ {int((d != 0).sum())}")
    print(f"end: load {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
