"""Latency of one label with the personal head: new weights, new v and the next query.

Run: .venv/bin/python bench/bench_personal.py [--repeats 30] [--labels 20]

N = 100,000 pool pairs, K = 100 heads (float32 cached Z), d = 384 (MiniLM) float32
embedding differences D. One step = the label's HyRe update, the personal head's refit
(every labelled row's offset moved with w; Newton to convergence, warm-started), the
pool's predictive mean and the next query by personal BALD (its variance: the heads'
variance under w + the Laplace variance by Woodbury, computed only for the pairs whose
score bound could win, `PersonalModel.next_item`). Baseline in the same run: the HyRe-only
step (update + BALD over the heads + select). Medians over steps taken after
--labels earlier labels (the cost grows with the number of labels n through O(N n^2)).
The machine may be shared: the ratio is the robust figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hyre_engine.acquisition import PoolScorer, gaussian_logit_bald_screen, select  # noqa: E402
from hyre_engine.personal import PersonalModel, gaussian_logit_bald  # noqa: E402
from hyre_engine.reweight import Posterior  # noqa: E402

# The target: pool, ensemble and backbone sizes of a large real pool.
N_ITEMS, N_HEADS, DIM = 100_000, 100, 384
TARGET_MS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed labels")
    parser.add_argument("--labels", type=int, default=10, help="labels given before timing starts")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((N_ITEMS, N_HEADS)) * 2.0).astype(np.float32)
    xa = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
    xb = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
    xa /= np.linalg.norm(xa, axis=1, keepdims=True)  # unit-norm, as MiniLM's embeddings
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    d = xa - xb
    truth = rng.standard_normal(DIM)
    labels = (d @ truth + z.mean(axis=1) > 0).astype(float)

    t0 = time.perf_counter()
    model = PersonalModel(z, d, lam=0.1)
    build_personal = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorer = PoolScorer(z)
    build_hyre = time.perf_counter() - t0
    post = Posterior(N_HEADS)

    asked_p, asked_h = [0], [0]

    def personal_step() -> None:
        item = asked_p[-1]
        model.add(item, labels[item])
        asked_p.append(model.next_item("personal_bald", seed=len(asked_p)))

    def hyre_step() -> None:
        item = asked_h[-1]
        post.add(z[item], labels[item])
        scores = scorer.score("bald", post.weights)
        asked_h.append(int(select(scores, 1, exclude=asked_h, seed=len(asked_h))[0]))

    for _ in range(args.labels):
        personal_step()
        hyre_step()
    times_p, times_h = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        personal_step()
        times_p.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hyre_step()
        times_h.append(time.perf_counter() - t0)
    p_ms, h_ms = np.median(times_p) * 1e3, np.median(times_h) * 1e3
    n_first, n_last = args.labels + 1, args.labels + args.repeats
    print(f"machine: {os.cpu_count()} CPU cores, numpy {np.__version__}, load {os.getloadavg()[0]:.1f}")
    print(f"setup once per pool: PersonalModel {build_personal * 1e3:.0f} ms, PoolScorer {build_hyre * 1e3:.0f} ms")
    print(f"one label -> new w, new v, next query (personal BALD), N={N_ITEMS:,}, K={N_HEADS}, d={DIM}, "
          f"labels {n_first}..{n_last}: median {p_ms:.2f} ms (p90 {np.percentile(times_p, 90) * 1e3:.2f}) "
          f"target <= {TARGET_MS:.0f} ms {'PASS' if p_ms <= TARGET_MS else 'FAIL'}")
    print(f"HyRe-only step (update + BALD + select), same run: median {h_ms:.2f} ms; "
          f"personal / HyRe-only = {p_ms / h_ms:.2f}x")
    print(f"Newton steps per refit (last label): {model.head.iterations}")
    _breakdown(model, args.repeats)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _breakdown(model: PersonalModel, repeats: int) -> None:
    """Where a step's time goes, each part timed alone at the current number of labels."""
    head, n = model.head, model.n_labels
    scratch = np.empty(model.n_pairs, dtype=np.float32)
    w32 = model.weights.astype(np.float32)
    mu, s2 = model.predictive()
    head_var = model.head_variance()
    scores = gaussian_logit_bald(mu, s2)
    row = int(head.rows[-1])
    mask = np.zeros(model.n_pairs, dtype=bool)
    mask[head.rows] = True
    parts = {
        "new column of D D_L^T (one N x d float32 pass)": lambda: np.dot(head._D, head._D[row], out=scratch),
        "heads' mean and variance under w (two N x K passes)": lambda: (model._centred @ w32, model._centred_sq @ w32),
        "Newton refit of v (n x n dual)": lambda: head.refit(head._fits[-1].offsets),
        f"v . d_i over the cross matrix (N x {n})": head.corrections,
        "BALD bound over N (float32 screen, the prior's variance)": lambda: gaussian_logit_bald_screen(
            mu, head_var + head.prior_variances()),
        "the bounded pick, given the margins (bound + exact few)": lambda: model._bounded_best("personal_bald", mask),
        f"[not per label now] all Laplace variances, Woodbury (N x {n}^2)": head.variances,
        "[not per label now] personal BALD over N, exact": lambda: gaussian_logit_bald(mu, s2),
        "[not per label now] pick the best of all N": lambda: select(scores, 1, exclude=head.rows, seed=0),
    }
    print(f"where the time goes at n = {n} labels (medians, each part alone):")
    for name, fn in parts.items():
        print(f"  {name:<62} {_median_ms(fn, repeats):7.2f} ms")


if __name__ == "__main__":
    main()
