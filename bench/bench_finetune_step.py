"""One target group's batched fine-tuning at the default size: where a step's time goes.

    OMP_NUM_THREADS=2 nice -n 5 .venv/bin/python bench/bench_finetune_step.py [--steps 10] [--rows 80]
        [--seeds 5] [--repeats 3]

The default ensemble (K = 100 heads, hidden 128, 384-d inputs), its input statistics
fitted on random unit vectors, and one group of ``--rows`` random pairs; the members are
every (seed, n > 0) of the protocol (5 seeds x n in 1, 5, 10, 20: 20 members of 4.9M
learnable parameters). For each way of stacking the members (training._StackedMembers:
the heads' own (K, D, H) layout and autograd; training._WideMembers: one (D, K x H) first
layer per member and hand-written gradients into kept buffers), prints the seconds per step of the forward and backward pass and of the fused
Adam step (medians over ``--repeats`` runs of ``--steps`` steps), and the largest
difference between the two layouts' outputs after the steps. The sizes are those of the
issue-14 file; the weights are random, which changes which units are active, not the
work per step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyre_engine import ensemble as ens  # noqa: E402
from hyre_engine import training  # noqa: E402


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def _steps(family, sets, steps: int) -> tuple[list[float], list[float]]:
    """Seconds of each step's forward + backward and of its Adam step."""
    buckets = []
    for size in sorted({len(s) for s in sets}):
        members = [i for i, s in enumerate(sets) if len(s) == size]
        buckets.append(family.bucket(torch.from_numpy(np.stack([sets[i] for i in members]).astype(np.int64))))
    optimizer = torch.optim.Adam([p for b in buckets for p in b.stack.values()], lr=1e-3, fused=True)
    passes, adams = [], []
    for _ in range(steps):
        start = time.perf_counter()
        for b in buckets:
            family.loss_and_grads(b)
        mid = time.perf_counter()
        optimizer.step()
        passes.append(mid - start)
        adams.append(time.perf_counter() - mid)
    return passes, adams


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=80)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = ens.build_ensemble(ens.EnsembleConfig())
    x = rng.normal(size=(2 * args.rows + 1000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    training._fit_input_stats(model, [x])
    xa, xb = x[: args.rows], x[args.rows: 2 * args.rows]
    y = (rng.random(args.rows) < 0.5).astype(np.float32)
    sets = [rng.permutation(args.rows)[:n] for _ in range(args.seeds) for n in (1, 5, 10, 20)]
    base = model.eval()
    rows = training._Batches.on(base, [xa, xb], y, None, torch.device("cpu"))
    params = sum(p.numel() for p in base.parameters() if p.requires_grad)
    print(f"{len(sets)} members x {params / 1e6:.2f}M learnable parameters, {args.steps} steps x {args.repeats}, "
          f"torch threads {torch.get_num_threads()}, load {_load()}", flush=True)
    outputs = {}
    for kind in (training._StackedMembers, training._WideMembers):
        family = kind(base, "preference", rows)
        name = type(family).__name__
        passes, adams = [], []
        for _ in range(args.repeats):
            p, a = _steps(family, sets, args.steps)
            passes.append(statistics.median(p))
            adams.append(statistics.median(a))
        start = time.perf_counter()
        outputs[name] = training._finetune_chunk(family, sets, steps=args.steps, lr=1e-3, betas=(0.9, 0.999),
                                                 dev=torch.device("cpu"), progress=None)
        whole = time.perf_counter() - start
        print(f"{name:<16} forward+backward {statistics.median(passes) * 1e3:7.1f} ms/step, "
              f"Adam {statistics.median(adams) * 1e3:7.1f} ms/step; {args.steps} steps + prediction {whole:.2f} s "
              f"(load {_load()})", flush=True)
    a, b = outputs.values()
    print(f"largest |difference| of the two layouts' margins after {args.steps} steps: {np.abs(a - b).max():.2e}; "
          f"signs equal {((a > 0) == (b > 0)).mean():.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
