"""The personal step's pool-sized kernels, each against its alternatives, interleaved in one run.

Run: .venv/bin/python bench/bench_personal_kernels.py [--repeats 15]

N = 100,000 pairs, K = 100, d = 384, as bench/bench_personal.py. Per label the step reads
D once (the new column of C = D D_L^T, N x d float32, 154 MB), Z's two centred tables
(2 x N x K float32, 80 MB) and scores BALD over N. This script times the ways tried to
make those cheaper, alternating them each repeat so that load falls on all alike:

- the pass over D: numpy (OpenBLAS sgemv) at 1 and 2 threads, torch (MKL) float32 at 1
  and 2 threads, and D stored as float16 / bfloat16 read by torch's half-precision
  matrix-vector kernel (numpy has no BLAS kernel for float16: its matmul is a plain loop,
  and its float16 -> float32 cast runs at ~0.5 G values/s on this CPU);
- the heads' two moments under w: two column-major gemvs at 1 and 2 threads;
- BALD over N: float64 (acquisition.gaussian_logit_bald) and float32.

Prints medians (ms), ratios to the first variant of each group and the worst error of the
lossy ones. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hyre_engine.acquisition import gaussian_logit_bald  # noqa: E402
from hyre_engine.personal import _centred_tables  # noqa: E402

N_ITEMS, N_HEADS, DIM = 100_000, 100, 384


def _time(fn, repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _group(title: str, variants: dict, repeats: int, errors: dict | None = None) -> None:
    times = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved: one call of each per round
        for name, fn in variants.items():
            times[name] += _time(fn, 1)
    base = None
    print(f"{title} (load {os.getloadavg()[0]:.1f}):")
    for name, ts in times.items():
        med = float(np.median(ts)) * 1e3
        base = base or med
        err = f"  worst error {errors[name]:.2e}" if errors and name in errors else ""
        print(f"  {name:<44} {med:7.2f} ms  {med / base:5.2f}x{err}")


def bald32(mu: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """gaussian_logit_bald in float32, in place: the same formula, half the bytes."""
    import math

    k, c2 = np.float32(math.pi / 8.0), np.float32(math.pi * math.log(2.0) / 2.0)
    m2 = mu * mu
    m2 *= k
    t2 = s2 * k
    a = t2 + np.float32(1.0)
    a *= 2.0 * c2
    pred = np.divide(m2, a)
    np.negative(pred, out=pred)
    np.exp(pred, out=pred)
    t2 += c2
    e = np.divide(m2, t2)
    e *= np.float32(-0.5)
    np.exp(e, out=e)
    np.sqrt(t2, out=t2)
    np.divide(np.float32(math.sqrt(c2)), t2, out=t2)
    e *= t2
    pred -= e
    pred *= np.float32(math.log(2.0))
    np.maximum(pred, 0.0, out=pred)
    return pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import torch

    rng = np.random.default_rng(0)
    xa = rng.standard_normal((N_ITEMS, DIM), dtype=np.float32)
    xb = rng.standard_normal((N_ITEMS, DIM), dtype=np.float32)
    xa /= np.linalg.norm(xa, axis=1, keepdims=True)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    D = xa - xb
    del xa, xb
    row = D[123].copy()
    exact = D.astype(np.float64) @ row.astype(np.float64)
    out = np.empty(N_ITEMS, dtype=np.float32)
    Dt, rowt = torch.from_numpy(D), torch.from_numpy(row)
    D16, row16 = Dt.to(torch.float16), rowt.to(torch.float16)
    Dbf, rowbf = Dt.to(torch.bfloat16), rowt.to(torch.bfloat16)

    def numpy_mv(threads):
        def run():
            with threadpool_limits(threads, user_api="blas"):
                np.dot(D, row, out=out)
        return run

    def torch_mv(mat, vec, threads):
        def run():
            torch.set_num_threads(threads)
            return torch.mv(mat, vec)
        return run

    errors = {
        "torch float16 mv, 1 thread": float(np.abs(torch.mv(D16, row16).float().numpy() - exact).max()),
        "torch bfloat16 mv, 1 thread": float(np.abs(torch.mv(Dbf, rowbf).float().numpy() - exact).max()),
    }
    errors["torch float16 mv, 2 threads"] = errors["torch float16 mv, 1 thread"]
    errors["torch bfloat16 mv, 2 threads"] = errors["torch bfloat16 mv, 1 thread"]
    errors["numpy float32 sgemv, 1 thread"] = float(np.abs(D @ row - exact).max())
    print(f"machine: {os.cpu_count()} cores, numpy {np.__version__}, torch {torch.__version__}; "
          f"|D d| up to {np.abs(exact).max():.2f}")
    _group("pass over D: the new column of C (N x d)", {
        "numpy float32 sgemv, 1 thread": numpy_mv(1),
        "numpy float32 sgemv, 2 threads": numpy_mv(2),
        "torch float32 mv, 1 thread": torch_mv(Dt, rowt, 1),
        "torch float32 mv, 2 threads": torch_mv(Dt, rowt, 2),
        "torch float16 mv, 1 thread": torch_mv(D16, row16, 1),
        "torch float16 mv, 2 threads": torch_mv(D16, row16, 2),
        "torch bfloat16 mv, 1 thread": torch_mv(Dbf, rowbf, 1),
        "torch bfloat16 mv, 2 threads": torch_mv(Dbf, rowbf, 2),
    }, args.repeats, errors)

    z = (rng.standard_normal((N_ITEMS, N_HEADS)) * 2.0).astype(np.float32)
    _, centred, centred_sq = _centred_tables(z)
    w = rng.dirichlet(np.ones(N_HEADS)).astype(np.float32)
    a, b = np.empty(N_ITEMS, np.float32), np.empty(N_ITEMS, np.float32)

    def moments(threads):
        def run():
            with threadpool_limits(threads, user_api="blas"):
                np.dot(centred, w, out=a)
                np.dot(centred_sq, w, out=b)
        return run

    _group("heads' mean and variance under w (two N x K gemvs, column-major)", {
        "1 thread": moments(1), "2 threads": moments(2),
    }, args.repeats)

    mu = rng.normal(scale=3.0, size=N_ITEMS)
    s2 = rng.gamma(2.0, 5.0, size=N_ITEMS)
    mu32, s232 = mu.astype(np.float32), s2.astype(np.float32)
    ref = gaussian_logit_bald(mu, s2)
    _group("BALD over N", {
        "float64 (gaussian_logit_bald)": lambda: gaussian_logit_bald(mu, s2),
        "float32, in place": lambda: bald32(mu32, s232),
    }, args.repeats, {"float32, in place": float(np.abs(bald32(mu32, s232) - ref).max())})


if __name__ == "__main__":
    main()
