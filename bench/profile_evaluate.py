"""Where `evaluate` spends its time on the issue-14 file: cProfile of the build and of a
few target groups, and torch's profiler on one group's fine-tuning.

    OMP_NUM_THREADS=2 nice -n 5 .venv/bin/python bench/profile_evaluate.py --db /tmp/prof.duckdb
        [--files out/eval-users] [--what build,evaluate,tune] [--groups 3] [--seeds 5] [--stride 1]
        [--top 25]

``build``: cProfile of ``build_pool`` (a fresh store builds everything; a store that
holds the build reuses it, which is then what is profiled). ``evaluate``:
cProfile of ``evaluate_pools`` on the first ``--groups`` target groups, every default
method, the build reused, and the seconds per method (cumulative, from the profile).
``tune``: torch.profiler over one group's batched fine-tuning (``--stride``).
Each part prints the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from make_eval_file import write_files  # noqa: E402

from hyre_engine import evaluate, protocol, training  # noqa: E402
from hyre_engine.pipeline import BuildConfig, build_pool  # noqa: E402
from hyre_engine.protocol import ALL_METHODS, DEFAULT_N, adaptation_order  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def _print_stats(profile: cProfile.Profile, top: int) -> pstats.Stats:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    for key in ("cumulative", "tottime"):
        stats.sort_stats(key).print_stats(top)
    print(out.getvalue(), flush=True)
    return stats


def _method_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each protocol method function (and the fold set-up) in a profile."""
    names = {getattr(protocol, f"_{m}").__code__.co_name for m in ALL_METHODS}
    names |= {"_folds", "_fine_tuned", "flip_share", "finetune_heads_batched", "_prepare"}
    seconds = {}
    for (_, _, func), (_, _, _, cumulative, _) in stats.stats.items():
        if func in names:
            seconds[func] = seconds.get(func, 0.0) + cumulative
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=None)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--what", default="build,evaluate,tune")
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--stride", type=int, default=training.DEFAULT_FINETUNE_STRIDE)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    what = set(args.what.split(","))
    files = args.files or Path(tempfile.mkdtemp(prefix="prof-eval-")) / "files"
    if not (files / "train.jsonl").exists():
        write_files(files, train_users=860, train_pairs=15, targets=40, target_pairs=80, seed=0)
    store = Store(args.db)
    train = evaluate.import_file(store, files / "train.jsonl")
    target = evaluate.import_file(store, files / "target.jsonl")
    config = BuildConfig()
    backbone = evaluate.load_backbone(None)
    if "build" in what:
        print(f"== build (load {_load()})", flush=True)
        profile = cProfile.Profile()
        start = time.perf_counter()
        report = profile.runcall(build_pool, store, train, config, backbone=backbone)
        print(f"build: {time.perf_counter() - start:.1f} s (profiled), stages {report.seconds}, load {_load()}")
        _print_stats(profile, args.top)
    names = sorted(store.pool_labels(target)["group"].unique())[: args.groups]
    if "evaluate" in what:
        print(f"== evaluate, {len(names)} groups, {args.seeds} seeds, stride {args.stride} (load {_load()})",
              flush=True)
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.runcall(evaluate.evaluate_pools, store, train, target, config=config, seeds=args.seeds,
                        target_groups=names, backbone=backbone, finetune_stride=args.stride)
        print(f"evaluate: {time.perf_counter() - start:.1f} s (profiled), load {_load()}")
        stats = _print_stats(profile, args.top)
        print("cumulative seconds by method / step:")
        for name, s in _method_seconds(stats).items():
            print(f"  {name:<24} {s:8.2f}")
    if "tune" in what:
        import torch
        from torch.profiler import ProfilerActivity, profile

        _, _, tgt = evaluate._prepare(store, train, target, config, backbone, ["finetune"], None)
        group = evaluate._target_groups(store, target, tgt, names[:1])[0]
        sets = []
        for seed in range(args.seeds):
            order = adaptation_order(group.logits, group.y, max(DEFAULT_N), strategy="random", beta=1.0,
                                     loss="zero-one", seed=seed)
            sets += [order[:n] for n in DEFAULT_N if n]
        print(f"== tune: one group, {len(sets)} members, stride {args.stride}, torch threads "
              f"{torch.get_num_threads()} (load {_load()})", flush=True)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            training.finetune_heads_batched(tgt.model, task="preference", inputs=(group.xa, group.xb),
                                            targets=group.y, adapt=sets, stride=args.stride)
        print(f"tune: {time.perf_counter() - start:.1f} s (profiled), load {_load()}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
