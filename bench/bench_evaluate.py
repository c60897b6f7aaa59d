"""`evaluate` on a per-user file of issue 14's shape, every default method, 5 seeds: wall time.

    nice .venv/bin/python bench/bench_evaluate.py [--files out/eval-users] [--db /tmp/bench-eval.duckdb]
        [--targets 40] [--seeds 5] [--jobs 1] [--stride 10] [--old-groups 1] [--old-steps 100]
        [--no-without] [--cli]

The lead's rerun of issue 14's target (quiet machine; build and evaluate printed apart,
then the command itself on a fresh store):

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_evaluate.py --old-groups 0 --no-without --cli

Makes the files with bench/make_eval_file.py when ``--files`` has none (860 training
users x 15 pairs, ``--targets`` users x 80 pairs, over the demo's 324 texts), in a
fresh store, then times, in one run:

1. the build on the training users (embedding, training K = 100, beta calibration);
2. evaluate_pools with every default method (protocol.ALL_METHODS, batched
   fine-tuning included, on the Adam time grid ``--stride``: the default
   training.DEFAULT_FINETUNE_STRIDE) on every target group, the build reused:
   with step 1, what ``python -m hyre_engine evaluate`` does;
3. the same without ``finetune`` (the baseline issue 14 measured at 99 s);
4. the old path: fine-tuning by a loop of ``training.finetune_heads``, one training per
   (seed, n), on the first ``--old-groups`` groups, against the batched fine-tuning of
   the same groups, both with ``--old-steps`` Adam steps (0 groups skips it: the loop
   takes minutes per group; the cost of either is linear in the steps);
5. with ``--cli``: ``python -m hyre_engine evaluate --train --target --seeds --quiet``
   in a subprocess on another fresh store, its wall time from start to exit (imports,
   import of the files, the build, every default method): the issue's command.

``--no-without`` skips step 3. Prints the load average (``uptime``) at the start and the
end: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
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

from hyre_engine import ensemble as ens  # noqa: E402
from hyre_engine import evaluate, training  # noqa: E402
from hyre_engine.pipeline import BuildConfig, build_pool  # noqa: E402
from hyre_engine.protocol import ALL_METHODS, DEFAULT_N, adaptation_order, format_table  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _old_vs_batched(store: Store, train: str, target: str, config: BuildConfig, n_groups: int, seeds: int,
                    steps: int):
    """Seconds of the loop of finetune_heads and of finetune_heads_batched on the same groups."""
    report, _, tgt = evaluate._prepare(store, train, target, config, evaluate.load_backbone(None),
                                       ["finetune"], None)
    groups = evaluate._target_groups(store, target, tgt, None)[:n_groups]
    old = new = 0.0
    for g in groups:
        orders = [adaptation_order(g.logits, g.y, max(DEFAULT_N), strategy="random", beta=1.0, loss="zero-one",
                                   seed=s) for s in range(seeds)]
        sets = [o[:n] for o in orders for n in DEFAULT_N if n]
        start = time.perf_counter()
        batched = training.finetune_heads_batched(tgt.model, task="preference", inputs=(g.xa, g.xb),
                                                  targets=g.y, adapt=sets, steps=steps)
        new += time.perf_counter() - start
        start = time.perf_counter()
        loop = np.stack([ens.predict_pairs(training.finetune_heads(
            tgt.model, task="preference", inputs=(g.xa[s], g.xb[s]), targets=g.y[s], steps=steps), g.xa, g.xb)
            for s in sets])
        old += time.perf_counter() - start
        agree = ((loop > 0) == (batched > 0)).mean()
        print(f"  group {g.name}: {len(sets)} fine-tunings, sign agreement loop vs batched {agree:.4f}", flush=True)
    return old, new, len(groups)


def _time_cli(files: Path, db: Path, args) -> None:
    """Wall time of the evaluate command itself, from a fresh process and store to its exit."""
    out = db.with_suffix(".json")
    command = [sys.executable, "-m", "hyre_engine", "evaluate", "--train", str(files / "train.jsonl"),
               "--target", str(files / "target.jsonl"), "--seeds", str(args.seeds), "--jobs", str(args.jobs),
               "--db", str(db), "--quiet", "--json", str(out)]
    if args.stride != training.DEFAULT_FINETUNE_STRIDE:
        command += ["--finetune-stride", str(args.stride)]
    print("cli:", " ".join(command[1:]), "|", _uptime(), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    result = json.loads(out.read_text())
    print(f"evaluate command on a fresh store: {wall:.1f} s wall ({len(result['groups'])} groups, "
          f"evaluate_pools {result['seconds']:.1f} s of it)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=None, help="folder with train.jsonl and target.jsonl")
    parser.add_argument("--db", type=Path, default=None, help="fresh DuckDB file (default: a temporary one)")
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--stride", type=int, default=training.DEFAULT_FINETUNE_STRIDE)
    parser.add_argument("--old-groups", type=int, default=1)
    parser.add_argument("--old-steps", type=int, default=training.DEFAULT_FINETUNE_STEPS)
    parser.add_argument("--no-without", action="store_true", help="skip the run without finetune")
    parser.add_argument("--cli", action="store_true", help="also time the evaluate command on a fresh store")
    args = parser.parse_args()
    print("start:", _uptime(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    files = args.files or tmp / "files"
    if not (files / "train.jsonl").exists():
        write_files(files, train_users=860, train_pairs=15, targets=args.targets, target_pairs=80, seed=0)
    store = Store(args.db or tmp / "bench.duckdb")
    train = evaluate.import_file(store, files / "train.jsonl")
    target = evaluate.import_file(store, files / "target.jsonl")
    config = BuildConfig()
    start = time.perf_counter()
    build_pool(store, train, config, backbone=evaluate.load_backbone(None))
    build = time.perf_counter() - start
    print(f"build: {build:.1f} s", flush=True)
    timings = {}
    runs = [("all methods", ALL_METHODS)]
    if not args.no_without:
        runs.append(("without finetune", [m for m in ALL_METHODS if m != "finetune"]))
    for label, methods in runs:
        start = time.perf_counter()
        result = evaluate.evaluate_pools(store, train, target, config=config, seeds=args.seeds,
                                         methods=methods, jobs=args.jobs, finetune_stride=args.stride)
        timings[label] = time.perf_counter() - start
        print(format_table(result, title=f"{label}: {len(result['groups'])} groups, {timings[label]:.1f} s"),
              flush=True)
    if args.old_groups:
        old, new, n = _old_vs_batched(store, train, target, config, args.old_groups, args.seeds, args.old_steps)
        print(f"fine-tuning {n} group(s), {args.old_steps} steps: loop of finetune_heads {old:.1f} s, batched {new:.1f} s "
              f"({old / new:.2f}x)", flush=True)
    without = f", without finetune {timings['without finetune']:.1f} s" if "without finetune" in timings else ""
    print(f"build {build:.1f} s + evaluate, all methods {timings['all methods']:.1f} s = "
          f"{build + timings['all methods']:.1f} s (in process){without}", flush=True)
    if args.cli:
        _time_cli(files, tmp / "cli.duckdb", args)
    print("end:", _uptime(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
