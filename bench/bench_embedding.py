"""Embedding throughput on CPU: torch against ONNX Runtime (float32 and int8), one run.

    nice .venv/bin/python bench/bench_embedding.py [--repeats 3] [--threads 2] [--cache-dir DIR] [--texts N]

Embeds the demo pool's distinct texts (324) with `Backbone.embed_texts` on each
backend of the embedded all-MiniLM-L6-v2, alternating the backends each repeat so
that load from other jobs falls on all of them alike. Prints, per backend, the
median texts/s, its ratio to torch measured in the same run, and the minimum and
mean cosine of its vectors to the float32 torch vectors. The ONNX exports are made
(or reused) first and their time is printed separately.

This is not a test: it prints figures. Target: >= 2x torch at cosine >= 0.99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def demo_texts(backbone) -> list[str]:
    from hyre_engine.demo import PAIRS_FILE, read_jsonl

    seen: dict[tuple[str, str], None] = {}
    for row in read_jsonl(PAIRS_FILE):
        for key in ("response_a", "response_b"):
            seen[(row["prompt"], row[key])] = None
    return backbone.format([p for p, _ in seen], [r for _, r in seen])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache (default: the user cache)")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--texts", type=int, default=None,
                        help="embed only this many of the texts (every 324/N-th: a loaded machine)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from hyre_engine.backbone import load_backbone

    backends = {}
    for name in args.backends.split(","):
        start = time.perf_counter()
        backends[name] = load_backbone(device="cpu", backend=name, cache_dir=args.cache_dir)
        print(f"load {name}: {time.perf_counter() - start:.1f} s (export included when not cached)", flush=True)
    texts = demo_texts(backends["torch"])
    if args.texts:
        texts = texts[:: max(1, len(texts) // args.texts)][: args.texts]
    print(f"{len(texts)} texts, {args.threads} threads, load average {os.getloadavg()[0]:.1f}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in backends}
    vectors = {}
    for _ in range(args.repeats):
        for name, backbone in backends.items():
            start = time.perf_counter()
            vectors[name] = backbone.embed_texts(texts)
            times[name].append(time.perf_counter() - start)
    ref = vectors["torch"]
    base = len(texts) / statistics.median(times["torch"])
    print(f"{'backend':<10} {'texts/s':>8} {'x torch':>8} {'min cos':>8} {'mean cos':>9}")
    for name in backends:
        rate = len(texts) / statistics.median(times[name])
        v = vectors[name]
        cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
        print(f"{name:<10} {rate:8.1f} {rate / base:8.2f} {cos.min():8.4f} {cos.mean():9.4f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
