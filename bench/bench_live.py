"""Latency of one label on the Label page, server side, through the page's own code path.

Run: .venv/bin/python bench/bench_live.py [--labels 30] [--skip-large]

For each pool it times what the page does between a keypress and having the
data of all three panels: the stored session's settings, row count and revision
in one read (the page's staleness check), the store write plus the LiveSession update
(hyre_engine.live.record_label) and LiveSession.snapshot() (weights, PCA map,
next pair, accuracy curves). Building the three SVG charts
(pages/_shared/live_svg.py) is timed apart. Nothing here imports streamlit.

Each pool is timed in three sessions, one label each in turn (so all three see the
same machine load), as the Label page opens them:
- ``hyre``: no embedding differences, HyRe alone (the paper's method);
- ``personal``: the pool's D given, HyRe + the personal head (the page's default);
- ``personal+persona``: the same with a demo persona's labels as truth (presenter
  mode), which adds the held-out accuracy of both models after every label.

Pools: (1) the demo pool's real texts (data/demo/pairs.jsonl) with K = 100
heads, target <= 150 ms (issue 11: label -> all panel data, with the personal head);
(2) a synthetic 100,000-pair pool with K = 100, target <= 300 ms. Z and D are random
here (D: differences of unit-norm 384-d vectors, as MiniLM's): the cost does not
depend on their values. The store is a real DuckDB file in a temporary folder.
Medians are printed; the machine may be shared, so compare the sessions' ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The same setting as app.py: single-threaded BLAS for the small live-loop algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gc  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hyre_engine import live  # noqa: E402
from hyre_engine.data import read_preferences  # noqa: E402
from hyre_engine.demo import DEMO_PRESENTER_PERSONA, PAIRS_FILE  # noqa: E402
from hyre_engine.pca import fit_pool_pca  # noqa: E402
from hyre_engine.store import Store  # noqa: E402
from pages._shared import live_svg  # noqa: E402

# The targets, milliseconds from a label to the data of the three panels.
TARGET_DEMO_MS = 150.0
TARGET_LARGE_MS = 300.0
# The paper's ensemble size; the large pool is the 100,000 pairs.
N_HEADS = 100
N_LARGE = 100_000
# MiniLM's embedding size: the personal head's D is n_pairs x DIM.
DIM = 384


def _pool_frame(n_synthetic: int | None) -> pd.DataFrame:
    if n_synthetic is None:
        # every persona's labels too: the presenter session reads its persona's as truth
        return read_preferences(PAIRS_FILE)
    ids = np.arange(n_synthetic).astype(str)
    return pd.DataFrame(
        {
            "pair_id": ids,
            "prompt": np.char.add("prompt ", ids),
            "response_a": np.char.add("answer a ", ids),
            "response_b": np.char.add("answer b ", ids),
        }
    )


def _random_diffs(rng: np.random.Generator, n_pairs: int) -> np.ndarray:
    """D (n_pairs, DIM) float32: differences of unit-norm vectors, as MiniLM's embeddings give."""
    xa = rng.standard_normal((n_pairs, DIM), dtype=np.float32)
    xb = rng.standard_normal((n_pairs, DIM), dtype=np.float32)
    xa /= np.linalg.norm(xa, axis=1, keepdims=True)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    return xa - xb


@dataclass
class _Session:
    """One Label-page session being timed, and its per-label figures."""

    name: str
    state: live.LiveState
    panels: live.LiveSnapshot
    open_ms: float
    server_ms: list[float] = field(default_factory=list)
    figure_ms: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    figure_cpu: list[float] = field(default_factory=list)


def _open(store: Store, cached: tuple, name: str, **options) -> _Session:
    """A Label-page session's LiveState, its stored labels replayed, and its first panels."""
    pool_id, ensemble_id, z, pca, pairs = cached
    t0 = time.perf_counter()
    session_id = store.get_or_create_session(user=f"bench-{name}", pool_id=pool_id, ensemble_id=ensemble_id)
    state = live.open_live(store, session_id, z, pairs["pair_id"].to_numpy(dtype=object), beta=1.0,
                           strategy="bald", pca=pca, prompts=pairs["prompt"].to_numpy(dtype=object),
                           **options)
    panels = state.live.snapshot()
    return _Session(name, state, panels, (time.perf_counter() - t0) * 1000)


def _label(store: Store, session: _Session, i: int) -> None:
    """One timed keypress: staleness check, store write + update, panel data, then the figures."""
    state, item = session.state, session.panels.next_item
    start, cpu0 = time.perf_counter(), time.thread_time()
    # the page reads the session once (settings, row count, revision) and checks staleness
    assert state.matches(store.get_session(state.session_id), 1.0)
    label = state.live.persona_label(item) if state.live.has_truth else ("a" if i % 3 else "b")
    live.record_label(store, state, item, label or "skip")
    session.panels = state.live.snapshot()
    mid, cpu1 = time.perf_counter(), time.thread_time()
    for build in (live_svg.weights_svg, live_svg.pca_svg, live_svg.accuracy_svg):
        build(session.panels)
    end, cpu2 = time.perf_counter(), time.thread_time()
    session.server_ms.append((mid - start) * 1000)
    session.figure_ms.append((end - mid) * 1000)
    session.server_cpu.append((cpu1 - cpu0) * 1000)
    session.figure_cpu.append((cpu2 - cpu1) * 1000)


def bench_pool(name: str, folder: Path, frame: pd.DataFrame, n_labels: int, target_ms: float) -> bool:
    """Time the three sessions of one pool, interleaved; True when the personal ones meet the target."""
    store = Store(str(folder / f"{name}.duckdb"))
    t0 = time.perf_counter()
    pool_id = store.add_pool(name, frame, source="bench")
    n_pairs = store.n_pairs(pool_id)
    rng = np.random.default_rng(0)
    ensemble_id = f"bench-{name}"
    store.put_ensemble(
        ensemble_id=ensemble_id, pool_id=pool_id, backbone_id="bench",
        config={"kind": "bench", "n_heads": N_HEADS}, weights=b"\0", train_fingerprint="bench",
    )
    store.put_head_predictions(ensemble_id, pool_id, rng.normal(scale=2.0, size=(n_pairs, N_HEADS)).astype(np.float32))
    diffs = _random_diffs(rng, n_pairs)
    diffs.setflags(write=False)  # as the page's cached D
    if "group" in frame and DEMO_PRESENTER_PERSONA in set(frame["group"]):
        truth = live.group_truth(store, pool_id, DEMO_PRESENTER_PERSONA, n_pairs)
        persona = DEMO_PRESENTER_PERSONA
    else:  # a synthetic pool: a persona who answers every pair at random
        truth = np.where(rng.random(n_pairs) < 0.5, "a", "b").astype(object)
        persona = "random answers"
    setup_s = time.perf_counter() - t0

    # what the page's context caches once per (ensemble, pool) and every session shares
    t0 = time.perf_counter()
    z = np.ascontiguousarray(store.get_head_predictions(ensemble_id, pool_id), dtype=np.float32)
    z.setflags(write=False)
    pca = fit_pool_pca(z)
    cached = (pool_id, ensemble_id, z, pca, store.pool_pairs(pool_id, with_meta=False))
    cache_ms = (time.perf_counter() - t0) * 1000
    sessions = [
        _open(store, cached, "hyre"),
        _open(store, cached, "personal", diffs=diffs, lam=0.1, method="personal"),
        _open(store, cached, "personal+persona", diffs=diffs, lam=0.1, method="personal", truth=truth),
    ]
    for i in range(n_labels):
        for session in sessions:  # interleaved: every session sees the same load
            _label(store, session, i)
    store.close()

    base = statistics.median(sessions[0].server_ms)
    print(f"{name}: {n_pairs:,} pairs x {N_HEADS} heads, D {n_pairs:,} x {DIM} | setup {setup_s:.1f} s | "
          f"read Z + PCA {cache_ms:.0f} ms | {n_labels} labels per session | load {os.getloadavg()[0]:.1f} (persona: {persona})")
    ok = True
    for session in sessions:
        median = statistics.median(session.server_ms)
        personal = session.name != "hyre"
        if personal:
            ok &= median <= target_ms
        verdict = (f" target <= {target_ms:.0f} ms: {'ok' if median <= target_ms else 'MISSED'}"
                   if personal else "")
        print(f"  {session.name:<17} open {session.open_ms:6.0f} ms | label -> panel data: median {median:6.1f} ms "
              f"(p90 {np.percentile(session.server_ms, 90):6.1f}, {median / base:4.2f}x hyre){verdict} | "
              f"+ 3 figures {statistics.median(session.figure_ms):5.1f} ms")
        # CPU of this thread: what a shared machine's other jobs do not inflate (much)
        print(f"  {'':<17} CPU (thread time), medians: label -> panel data "
              f"{statistics.median(session.server_cpu):6.1f} ms, 3 figures {statistics.median(session.figure_cpu):5.1f} ms")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=30, help="labels timed per pool")
    parser.add_argument("--skip-large", action="store_true", help="only the demo pool")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        folder = Path(tmp)
        ok = bench_pool("demo", folder, _pool_frame(None), args.labels, TARGET_DEMO_MS)
        if not args.skip_large:
            ok &= bench_pool("large", folder, _pool_frame(N_LARGE), args.labels, TARGET_LARGE_MS)
        gc.collect()  # the stores are closed: release them before the files go
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
