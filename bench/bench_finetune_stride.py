"""The fine-tuning baseline on a coarser time grid against the exact 100 Adam steps.

    nice .venv/bin/python bench/bench_finetune_stride.py --db /tmp/bench-eval.duckdb
        [--files out/eval-users] [--groups 3] [--seeds 5] [--strides 1,5,10,20]

On the issue-14 file (bench/make_eval_file.py; the default build, reused when ``--db``
holds it, e.g. from bench_evaluate.py), for the first ``--groups`` target groups
and every (seed, n > 0) of the protocol: ``training.finetune_heads_batched`` with each
``--strides`` value (stride 1: 100 Adam steps at lr 1e-3, the method; stride s:
ceil(100 / s) steps of the time-rescaled Adam, ``training.coarse_adam``). Prints, per
stride, the seconds, the share of (row, head) margins whose sign equals stride 1's,
the fine-tuned ensemble's accuracy on each fold's rest rows against stride 1's (mean,
its standard error and largest difference over folds), and the accuracy and the
difference by n, next to stride 1's own seed noise (the standard error over seeds of a
group's accuracy: what rerunning the method with other seeds moves it by).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from make_eval_file import write_files  # noqa: E402

from hyre_engine import evaluate, training  # noqa: E402
from hyre_engine.numerics import accuracy, sigmoid  # noqa: E402
from hyre_engine.pipeline import BuildConfig  # noqa: E402
from hyre_engine.protocol import DEFAULT_N, adaptation_order  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _folds(group, seeds: int) -> list[tuple[int, np.ndarray]]:
    """(n, adaptation rows) of every seed and n > 0, as protocol._folds draws them."""
    out = []
    for seed in range(seeds):
        order = adaptation_order(group.logits, group.y, max(DEFAULT_N), strategy="random", beta=1.0,
                                 loss="zero-one", seed=seed)
        out += [(n, order[:n]) for n in DEFAULT_N if n]
    return out


def _accuracies(tuned: np.ndarray, folds, y: np.ndarray) -> np.ndarray:
    acc = []
    for logits, (_, adapt) in zip(tuned, folds, strict=True):
        rest = np.setdiff1d(np.arange(len(y)), adapt)
        acc.append(accuracy(sigmoid(logits[rest].astype(np.float64)).mean(axis=1), y[rest]))
    return np.array(acc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=None)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strides", default="1,5,10,20")
    args = parser.parse_args()
    strides = [int(s) for s in args.strides.split(",")]
    if strides[0] != 1:
        strides = [1, *strides]
    print("start:", _uptime(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stride-"))
    files = args.files or tmp / "files"
    if not (files / "train.jsonl").exists():
        write_files(files, train_users=860, train_pairs=15, targets=40, target_pairs=80, seed=0)
    store = Store(args.db or tmp / "bench.duckdb")
    train = evaluate.import_file(store, files / "train.jsonl")
    target = evaluate.import_file(store, files / "target.jsonl")
    # the default build, so a store that bench_evaluate.py or profile_evaluate.py built is reused
    _, _, tgt = evaluate._prepare(store, train, target, BuildConfig(), evaluate.load_backbone(None),
                                  ["finetune"], None)
    groups = evaluate._target_groups(store, target, tgt, None)[: args.groups]
    seconds = dict.fromkeys(strides, 0.0)
    agree = {s: [] for s in strides}
    acc = {s: [] for s in strides}
    n_of = []
    for g in groups:
        folds = _folds(g, args.seeds)
        n_of += [n for n, _ in folds]
        ref = None
        for s in strides:
            start = time.perf_counter()
            tuned = training.finetune_heads_batched(tgt.model, task="preference", inputs=(g.xa, g.xb), targets=g.y,
                                                    adapt=[a for _, a in folds], stride=s)
            seconds[s] += time.perf_counter() - start
            ref = tuned if s == 1 else ref
            agree[s].append(float(((tuned > 0) == (ref > 0)).mean()))
            acc[s].append(_accuracies(tuned, folds, g.y))
        print(f"  group {g.name}: {len(folds)} fine-tunings; " + ", ".join(
            f"stride {s} {seconds[s]:.1f} s (cumulative)" for s in strides), flush=True)
    n_of = np.array(n_of)
    base = np.concatenate(acc[1])
    positive = [n for n in DEFAULT_N if n]
    # the baseline's own seed noise: per group and n, the standard error over seeds of
    # stride 1's accuracy, averaged (what a rerun with other seeds would move it by)
    per_group = np.stack(acc[1]).reshape(len(groups), args.seeds, len(positive))
    noise = (per_group.std(axis=1, ddof=1) / np.sqrt(args.seeds)).mean(axis=0)
    print(f"{len(groups)} groups x {args.seeds} seeds x n in {positive}; stride 1's seed noise (standard error "
          f"over seeds per group) by n: " + " ".join(f"{v:.4f}" for v in noise))
    print(f"{'stride':>6} {'steps':>5} {'seconds':>8} {'sign agree':>10} {'acc diff mean':>13} {'(se)':>7} "
          f"{'max |diff|':>10}  accuracy by n  |  diff by n")
    for s in strides:
        a = np.concatenate(acc[s])
        d = a - base
        by_n = " ".join(f"{a[n_of == n].mean():.4f}" for n in positive)
        diff_n = " ".join(f"{d[n_of == n].mean():+.4f}" for n in positive)
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        print(f"{s:>6} {training.coarse_adam(training.DEFAULT_FINETUNE_STEPS, 1.0, s)[0]:>5} {seconds[s]:>8.1f} "
              f"{np.mean(agree[s]):>10.4f} {np.mean(d):>+13.4f} {se:>7.4f} {np.abs(d).max():>10.4f}  {by_n}  |  {diff_n}")
    print("end:", _uptime(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
