"""Latency of the live loop: one HyRe update plus choosing the next BALD query.

Run: .venv/bin/python bench/bench_reweight.py [--repeats 50]

(a) Posterior.add + weights + PoolScorer BALD + select on N = 100,000 pairs, K = 100
    heads (float32 cached logits), target < 20 ms;
(b) a naive uniform-average entropy scorer that recomputes sigmoid(Z) every time, in
    the same run, for the ratio;
(c) weights_from_losses alone for K = 10,000 heads, target < 1 ms.
Timings are medians; the machine may be shared, so expect noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hyre_engine.acquisition import PoolScorer, select  # noqa: E402
from hyre_engine.reweight import Posterior, weights_from_losses  # noqa: E402

# Pool size and ensemble size of the target (K = 100 is the paper's ensemble).
N_ITEMS, N_HEADS = 100_000, 100
# Reweighting alone is measured at the largest ensemble the engine supports.
N_HEADS_LARGE = 10_000
# Targets from the issue: the app must feel live after every label.
TARGET_UPDATE_MS = 20.0
TARGET_REWEIGHT_US = 1000.0


def _median_s(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _naive_uniform_entropy(z: np.ndarray) -> np.ndarray:
    # What one writes without caching: sigmoid of the whole pool, uniform mean, entropy.
    p = 1.0 / (1.0 + np.exp(-z))
    q = np.clip(p.mean(axis=1), 1e-7, 1 - 1e-7)
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((N_ITEMS, N_HEADS)) * 2.0).astype(np.float32)
    # The labels a simulated user gives, and the items already asked about.
    labels = rng.integers(0, 2, size=args.repeats + 1)

    t0 = time.perf_counter()
    scorer = PoolScorer(z)
    build_s = time.perf_counter() - t0
    post = Posterior(N_HEADS)
    asked: list[int] = [0]

    def live_step(i: int) -> None:
        item = asked[-1]
        post.add(z[item], labels[i])
        w = post.weights
        scores = scorer.score("bald", w)
        asked.append(int(select(scores, 1, exclude=asked, seed=i)[0]))

    def naive_step(i: int) -> None:
        select(_naive_uniform_entropy(z), 1, exclude=asked, seed=i)

    live_step(args.repeats)  # warm-up: the first call pays one-off page faults
    live = _median_s(live_step, args.repeats)
    naive = _median_s(naive_step, max(5, args.repeats // 5))

    losses = rng.random(N_HEADS_LARGE) * 20.0
    weights_from_losses(losses)
    reweight = _median_s(lambda i: weights_from_losses(losses), args.repeats * 20)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(f"machine: {os.cpu_count()} CPU cores, numpy {np.__version__}")
    print(f"PoolScorer build (once per pool, N={N_ITEMS:,}, K={N_HEADS}): {build_s * 1e3:.0f} ms")
    print(
        f"(a) update + BALD + select, N={N_ITEMS:,}, K={N_HEADS}: {live * 1e3:.2f} ms "
        f"(target < {TARGET_UPDATE_MS:.0f} ms) {verdict(live * 1e3 < TARGET_UPDATE_MS)}"
    )
    print(
        f"(b) naive uniform entropy (sigmoid each time) + select: {naive * 1e3:.2f} ms; "
        f"naive / live = {naive / live:.1f}x"
    )
    print(
        f"(c) weights_from_losses, K={N_HEADS_LARGE:,}: {reweight * 1e6:.1f} us "
        f"(target < {TARGET_REWEIGHT_US:.0f} us) {verdict(reweight * 1e6 < TARGET_REWEIGHT_US)}"
    )


if __name__ == "__main__":
    main()
