"""Where one target group's exact fine-tuning spends a step, and what exact changes could save.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/bench_finetune_bound.py --db /tmp/bench-eval.duckdb
        [--files out/eval-users] [--group 0] [--steps 10] [--blocks 100,4]

On the issue-14 file (bench/make_eval_file.py; the default build, reused when ``--db``
holds it) and one target group's 20 adaptation sets (5 seeds x n in 1, 5, 10, 20, as
the protocol draws them), the batched fine-tuning's own pieces
(``training._members``: the wide first layer with hand-written gradients, one fused
torch Adam over the stacks), timed over ``--steps`` steps after two warm-up steps:

1. **the split of a step**: the forward pass and gradients of each bucket (members
   with the same n) and the Adam step; from them the first layer's multiply-add rate
   (2 products of 2 R x 384 x 12,800 per member: the arithmetic no exact change
   removes) and Adam's rate in parameters per second, and the fine-tuning of all 40
   groups projected from the step time (100 steps a group: a projection, not a timing);
2. **the frozen units**: a hidden unit inactive on every one of a member's rows gets a
   zero gradient, its Adam moments stay zero and its weights never move, so it stays
   inactive: skipping those units is exact. Printed: the share of units active on a
   member's rows, weighted as Adam's work (per member) and as the matmuls' (per row):
   what skipping them could save at most;
3. **head blocks**: every head's loss reads only its own parameters and Adam is
   elementwise, so heads can be fine-tuned in blocks, all steps of a block while its
   parameters and moments stay in cache; the step time with ``--blocks`` heads per
   block (100 = the whole ensemble, the current path), to see whether memory traffic
   or arithmetic bounds a step.

Prints the load average at the start and the end (the machine is shared).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from make_eval_file import write_files  # noqa: E402

from hyre_engine import evaluate, training  # noqa: E402
from hyre_engine.pipeline import BuildConfig  # noqa: E402
from hyre_engine.protocol import DEFAULT_N, adaptation_order  # noqa: E402
from hyre_engine.store import Store  # noqa: E402

# The issue-14 run: 40 target groups, 100 Adam steps each.
GROUPS, STEPS = 40, training.DEFAULT_FINETUNE_STEPS
WARMUP = 2


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _sets(group, seeds: int) -> list[np.ndarray]:
    sets = []
    for seed in range(seeds):
        order = adaptation_order(group.logits, group.y, max(DEFAULT_N), strategy="random", beta=1.0,
                                 loss="zero-one", seed=seed)
        sets += [order[:n] for n in DEFAULT_N if n]
    return sets


def _buckets(family, sets: list[np.ndarray]) -> list[tuple[int, torch.Tensor]]:
    """(n, the (S, n) rows of its members) for every n, as training._finetune_chunk groups them."""
    return [(size, torch.from_numpy(np.stack([s for s in sets if len(s) == size]).astype(np.int64)))
            for size in sorted({len(s) for s in sets})]


def _split(family, sets, steps: int) -> tuple[dict[int, float], float, int]:
    """Seconds per step of each bucket's forward and gradients and of the Adam step; Adam's parameters."""
    buckets = [(n, family.bucket(idx)) for n, idx in _buckets(family, sets)]
    params = [p for _, b in buckets for p in b.stack.values()]
    optimizer = torch.optim.Adam(params, lr=training.DEFAULT_FINETUNE_LR, fused=True)
    grads = dict.fromkeys((n for n, _ in buckets), 0.0)
    adam = 0.0
    for step in range(WARMUP + steps):
        for n, b in buckets:
            start = time.perf_counter()
            family.loss_and_grads(b)
            grads[n] += (time.perf_counter() - start) * (step >= WARMUP)
        start = time.perf_counter()
        optimizer.step()
        adam += (time.perf_counter() - start) * (step >= WARMUP)
    return {n: s / steps for n, s in grads.items()}, adam / steps, sum(p.numel() for p in params)


def _active_share(family, sets) -> tuple[float, float]:
    """Share of hidden units active on at least one of a member's rows: per member, and per row."""
    per_member, per_row = [], []
    with torch.no_grad():
        for n, idx in _buckets(family, sets):
            c = family.bucket(idx).cache
            pre = torch.matmul(c["z"], family.params["w0"]).view(idx.shape[0], 2 * n, -1)
            pre = pre + family.params["b0"].reshape(1, 1, -1)
            active = (pre > 0).any(dim=1).double().mean(dim=1)  # (S,)
            per_member += active.tolist()
            per_row += [a * 2 * n for a in active.tolist()]
    rows = sum(2 * len(s) for s in sets)
    return float(np.mean(per_member)), float(sum(per_row) / rows)


def _head_block(family, k0: int, k1: int):
    """The family restricted to heads k0..k1 (their own columns of the wide first layer)."""
    h = family.h
    block = copy.copy(family)
    block.k = k1 - k0
    block.params = {"w0": family.params["w0"][:, k0 * h: k1 * h].contiguous(), "b0": family.params["b0"][k0:k1],
                    "w_out": family.params["w_out"][k0:k1], "b_out": family.params["b_out"][k0:k1]}
    return block


def _blocked(family, sets, heads: int, steps: int) -> float:
    """Seconds per step (all heads) when blocks of ``heads`` heads run their steps one block after another."""
    total = 0.0
    for _, idx in _buckets(family, sets):
        for k0 in range(0, family.k, heads):
            k1 = min(k0 + heads, family.k)
            block = _head_block(family, k0, k1)
            b = block.bucket(idx)
            if b.cache["prior"] is not None:
                b.cache["prior"] = b.cache["prior"][..., k0:k1].contiguous()
            optimizer = torch.optim.Adam(list(b.stack.values()), lr=training.DEFAULT_FINETUNE_LR, fused=True)
            for step in range(WARMUP + steps):
                start = time.perf_counter()
                block.loss_and_grads(b)
                optimizer.step()
                total += (time.perf_counter() - start) * (step >= WARMUP)
    return total / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=None)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--group", type=int, default=0, help="which target group (index)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--blocks", default="100,4", help="heads per block, comma-separated")
    args = parser.parse_args()
    blocks = [int(b) for b in args.blocks.split(",")]
    if args.steps < 1 or any(b < 1 for b in blocks):
        raise ValueError(f"--steps and --blocks must be >= 1, got {args.steps} and {blocks}")
    print("start:", _uptime(), "| torch threads", torch.get_num_threads(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-bound-"))
    files = args.files or tmp / "files"
    if not (files / "train.jsonl").exists():
        write_files(files, train_users=860, train_pairs=15, targets=40, target_pairs=80, seed=0)
    store = Store(args.db or tmp / "bench.duckdb")
    train = evaluate.import_file(store, files / "train.jsonl")
    target = evaluate.import_file(store, files / "target.jsonl")
    _, _, tgt = evaluate._prepare(store, train, target, BuildConfig(), evaluate.load_backbone(None),
                                  ["finetune"], None)
    group = evaluate._target_groups(store, target, tgt, None)[args.group]
    sets = _sets(group, args.seeds)
    # what finetune_heads_batched sets up before its steps
    base = copy.deepcopy(tgt.model).eval()
    base.input_fitted.fill_(1)
    xs, y, _ = training._check_training_data(base, "preference", (group.xa, group.xb), group.y, None)
    rows = training._Batches.on(base, xs, y, None, torch.device("cpu"))
    family = training._members(base, "preference", rows)
    if not isinstance(family, training._WideMembers):
        raise ValueError("the ensemble is not of the wide kind (one hidden layer, no trunk) this measures")

    grads, adam, n_params = _split(family, sets, args.steps)
    step = sum(grads.values()) + adam
    d, width = family.params["w0"].shape
    print(f"group {group.name}: {len(sets)} members, {n_params / 1e6:.1f}M stacked parameters; "
          f"per step ({args.steps} steps):")
    for n, seconds in grads.items():
        members = sum(len(s) == n for s in sets)
        flop = members * 2 * (2 * n) * d * width * 2  # forward and weight gradient of the first layer
        print(f"  n = {n:>2}: forward + gradients {seconds * 1e3:7.1f} ms ({flop / seconds / 1e9:5.1f} GFLOP/s "
              f"of first-layer products)")
    print(f"  Adam (torch fused): {adam * 1e3:7.1f} ms ({n_params / adam / 1e9:.2f} G parameters/s)")
    print(f"  step {step * 1e3:.1f} ms, Adam {adam / step:.0%} of it; projection for {GROUPS} groups x {STEPS} steps: "
          f"{step * STEPS * GROUPS:.0f} s of fine-tuning (not a timing)", flush=True)

    per_member, per_row = _active_share(family, sets)
    print(f"units active on a member's rows: {per_member:.3f} of Adam's work, {per_row:.3f} of the matmuls' "
          f"(skipping the frozen rest saves at most {1 - per_member:.1%} and {1 - per_row:.1%})", flush=True)

    for heads in blocks:
        print(f"blocks of {heads:>3} heads, all steps per block: {_blocked(family, sets, heads, args.steps) * 1e3:.1f} "
              "ms per step", flush=True)
    print("end:", _uptime(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
