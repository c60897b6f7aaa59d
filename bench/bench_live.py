"""Latency of one label on the Label page, server side, through the page's own code path.

Run: .venv/bin/python bench/bench_live.py [--labels 30] [--skip-large]

For each pool it times what the page does between a keypress and having the
data of all three panels: the stored session's settings, row count and revision
in one read (the page's staleness check), the store write plus the LiveSession update
(hyre_engine.live.record_label) and LiveSession.snapshot() (weights, PCA map,
next pair, accuracy curves). Building the three plotly figures
(pages/_shared/live_figures.py) is timed apart. Nothing here imports streamlit.

Pools: (1) the demo pool's real texts (data/demo/pairs.jsonl) with K = 100
heads, target <= 150 ms; (2) a synthetic 100,000-pair pool with K = 100,
target <= 300 ms. Z is random here: the cost does not depend on its values.
The store is a real DuckDB file in a temporary folder. Medians are printed;
the machine may be shared, so expect noise.
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hyre_engine import live  # noqa: E402
from hyre_engine.data import read_preferences  # noqa: E402
from hyre_engine.demo import PAIRS_FILE  # noqa: E402
from hyre_engine.pca import fit_pool_pca  # noqa: E402
from hyre_engine.store import Store  # noqa: E402
from pages._shared import live_figures  # noqa: E402

# The targets, milliseconds from a label to the data of the three panels.
TARGET_DEMO_MS = 150.0
TARGET_LARGE_MS = 300.0
# The paper's ensemble size; the large pool is the 100,000 pairs.
N_HEADS = 100
N_LARGE = 100_000


def _pool_frame(n_synthetic: int | None) -> pd.DataFrame:
    if n_synthetic is None:
        frame = read_preferences(PAIRS_FILE)
        return frame.drop_duplicates("pair_id")[["pair_id", "prompt", "response_a", "response_b"]]
    ids = np.arange(n_synthetic).astype(str)
    return pd.DataFrame(
        {
            "pair_id": ids,
            "prompt": np.char.add("prompt ", ids),
            "response_a": np.char.add("answer a ", ids),
            "response_b": np.char.add("answer b ", ids),
        }
    )


def bench_pool(name: str, folder: Path, frame: pd.DataFrame, n_labels: int, target_ms: float) -> bool:
    path = str(folder / f"{name}.duckdb")
    store = Store(path)
    t0 = time.perf_counter()
    pool_id = store.add_pool(name, frame, source="bench")
    n_pairs = store.n_pairs(pool_id)
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(n_pairs, N_HEADS)).astype(np.float32)
    store.put_ensemble(
        ensemble_id=f"bench-{name}", pool_id=pool_id, backbone_id="bench",
        config={"kind": "bench", "n_heads": N_HEADS}, weights=b"\0", train_fingerprint="bench",
    )
    store.put_head_predictions(f"bench-{name}", pool_id, logits)
    setup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    # what the page's cached context reads once per (ensemble, pool): Z, its PCA, the pair ids
    z = np.ascontiguousarray(store.get_head_predictions(f"bench-{name}", pool_id), dtype=np.float32)
    pca = fit_pool_pca(z)
    pair_ids = store.pool_pairs(pool_id, with_meta=False)["pair_id"].to_numpy(dtype=object)
    session_id = store.get_or_create_session(user="bench", pool_id=pool_id, ensemble_id=f"bench-{name}")
    state = live.open_live(store, session_id, z, pair_ids, beta=1.0, strategy="bald", pca=pca)
    panels = state.live.snapshot()
    open_s = time.perf_counter() - t0

    server_ms, figure_ms, server_cpu, figure_cpu = [], [], [], []
    for i in range(n_labels):
        item = panels.next_item
        start, cpu0 = time.perf_counter(), time.thread_time()
        # the page reads the session once (settings, row count, revision) and checks staleness
        assert state.matches(store.get_session(session_id), 1.0)
        live.record_label(store, state, item, "a" if i % 3 else "b")
        panels = state.live.snapshot()
        mid, cpu1 = time.perf_counter(), time.thread_time()
        for build in (live_figures.weights_figure, live_figures.pca_figure, live_figures.accuracy_figure):
            build(panels).to_json()
        end, cpu2 = time.perf_counter(), time.thread_time()
        server_ms.append((mid - start) * 1000)
        figure_ms.append((end - mid) * 1000)
        server_cpu.append((cpu1 - cpu0) * 1000)
        figure_cpu.append((cpu2 - cpu1) * 1000)

    median = statistics.median(server_ms)
    ok = median <= target_ms
    print(
        f"{name:>6}: {n_pairs:>7,} pairs x {N_HEADS} heads | setup {setup_s:5.1f} s, "
        f"open page {open_s * 1000:6.0f} ms | label -> panel data: median {median:6.1f} ms, "
        f"p90 {np.percentile(server_ms, 90):6.1f} ms (target <= {target_ms:.0f} ms: "
        f"{'ok' if ok else 'MISSED'}) | + 3 figures: median {statistics.median(figure_ms):5.1f} ms"
    )
    # CPU of this thread: what a shared machine's other jobs do not inflate (much)
    print(f"{'':>8}CPU (thread time), medians: label -> panel data {statistics.median(server_cpu):6.1f} ms, "
          f"3 figures {statistics.median(figure_cpu):5.1f} ms")
    store.close()
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
