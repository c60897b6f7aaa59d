"""Benchmark: read head predictions Z (100,000 x 100 float32) back from the DuckDB store.

Prints the median of several reads of `Store.get_head_predictions` from a file
database (reopened, so nothing is cached in Python), next to the same matrix
read with `np.load` from an .npy file, and their ratio. Also times reading
embeddings in a shuffled order (`Store.get_embeddings`).

    .venv/bin/python bench/bench_store.py [--n 100000] [--k 100] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyre_engine.store import Store  # noqa: E402

# The target: a large pool (100k pairs) scored by the paper's K = 100 heads.
N_ITEMS = 100_000
N_HEADS = 100
# all-MiniLM-L6-v2, the default backbone, embeds into 384 dimensions.
EMBED_DIM = 384
# Enough texts to see the per-row cost without making the run long.
N_EMBED = 20_000
REPEATS = 7


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N_ITEMS, help="pairs in the pool (rows of Z)")
    parser.add_argument("--k", type=int, default=N_HEADS, help="heads (columns of Z)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--n-embed", type=int, default=N_EMBED)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((args.n, args.k)).astype(np.float32)  # noqa: N806
    frame = pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(args.n)],
            "prompt": [f"prompt {i}" for i in range(args.n)],
            "response_a": [f"a {i}" for i in range(args.n)],
            "response_b": [f"b {i}" for i in range(args.n)],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        with Store(db) as store:
            t0 = time.perf_counter()
            pool = store.add_pool("bench", frame)
            t_pool = time.perf_counter() - t0
            store.put_ensemble(
                ensemble_id="bench-ens",
                pool_id=pool,
                backbone_id="bench-bb",
                config={},
                weights=b"",
                train_fingerprint="",
            )
            t0 = time.perf_counter()
            store.put_head_predictions("bench-ens", pool, Z)
            t_put = time.perf_counter() - t0
            hashes = store.pool_texts(pool)["text_hash"].to_numpy()[: args.n_embed].tolist()
            vectors = rng.standard_normal((len(hashes), EMBED_DIM)).astype(np.float32)
            store.put_embeddings("bench-bb", hashes, vectors)
        npy = Path(tmp) / "z.npy"
        np.save(npy, Z)

        with Store(db) as store:
            t_store, got = median_seconds(
                lambda: store.get_head_predictions("bench-ens", pool), args.repeats
            )
            assert np.array_equal(got, Z)
            order = rng.permutation(len(hashes))
            query = [hashes[i] for i in order]
            t_emb, emb = median_seconds(
                lambda: store.get_embeddings("bench-bb", query), args.repeats
            )
            assert np.array_equal(emb, vectors[order])
        t_npy, base = median_seconds(lambda: np.load(npy), args.repeats)
        assert np.array_equal(base, Z)
        size_mb = db.stat().st_size / 2**20

    print(f"Z {args.n} x {args.k} float32 ({Z.nbytes / 2**20:.1f} MiB), {args.repeats} reads each")
    print(f"  store.get_head_predictions  median {t_store * 1e3:8.1f} ms")
    print(f"  np.load(.npy) baseline      median {t_npy * 1e3:8.1f} ms")
    print(f"  ratio store / npy                  {t_store / t_npy:8.1f} x")
    print(
        f"  write: add_pool {t_pool:.2f} s, put_head_predictions {t_put:.2f} s; file {size_mb:.0f} MiB"
    )
    print(f"embeddings {len(hashes)} x {EMBED_DIM}, shuffled order")
    print(f"  store.get_embeddings        median {t_emb * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
