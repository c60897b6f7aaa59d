"""Scale: the live loop on a 10M-pair pool, single-process vs Ray builds, a killed worker.

    nice -n 10 .venv/bin/python bench/bench_scale.py live    [--pairs 10000000] [--heads 100] [--dtype float16] [--tables float32]
    nice -n 10 .venv/bin/python bench/bench_scale.py engines [--pairs 1000] [--kill]
    nice -n 5 .venv/bin/python bench/bench_scale.py engines --pairs 100000 --unique-texts 4000 --train-rows 5000
    .venv/bin/python bench/bench_scale.py projection

live: label -> next query on a synthetic Z (float16 by default; --dtype float32), with the
    sampler's p and H tables in --tables precision (float32: 8 GB at 10M x 100). Each
    step adds one label to the HyRe posterior and asks `CandidateSampler` for the next
    pair (a fresh 200k sample plus the previous best). The baseline, in the same run,
    scores the whole pool with the same tables. Medians over --queries steps; target
    <= 100 ms per step at 10M pairs.
engines: a synthetic pool of --pairs pairs whose texts are built from the demo's
    sentences (every text unique, so everything is embedded), built by the
    single-process pipeline and by the Ray engine on a local Ray of 2 CPUs, each into
    a fresh store; seconds per stage and the ratio. --kill adds a Ray build whose
    embedding actor is killed mid-job (ray.kill) and compares it with the undisturbed
    Ray build. --unique-texts N builds a shared-text pool instead: N distinct answers
    (spread over the demo's prompts) recombined into --pairs distinct pairs of two answers
    to the same prompt, as a real pool shares texts (UltraFeedback: 4 answers per prompt
    give 6 pairs); both engines embed each distinct text once. --train-rows R labels R
    random pairs group "train" and trains on those only (the rest are group "pool").
    Prints seconds per stage (read, embed, train, Z, register), the load average and
    whether embeddings and Z agree to 1e-5.
projection: the arithmetic for 10M pairs with a 2B backbone on N GPUs (no GPU is
    measured here).

Not a test: it prints figures. The machine may be shared; run with nice and read the
ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

TARGET_STEP_MS = 100.0


# ------------------------------------------------------------------ live


def bench_live(args) -> None:
    from hyre_engine.candidates import DEFAULT_CANDIDATES, CandidateSampler
    from hyre_engine.reweight import Posterior

    n, k = args.pairs, args.heads
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    z = np.empty((n, k), dtype=dtype)
    chunk = 1_000_000
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        # heads that agree on an item-level signal plus their own noise, like a trained ensemble
        z[lo:hi] = (rng.standard_normal((hi - lo, 1), dtype=np.float32) * 2
                    + rng.standard_normal((hi - lo, k), dtype=np.float32))
    print(f"synthetic Z {n:,} x {k} {dtype.name}: {z.nbytes / 2**30:.2f} GiB "
          f"({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    sampler = CandidateSampler(z, n_candidates=args.candidates, seed=0, dtype=np.dtype(args.tables))
    print(f"sampler tables (p, H) {args.tables}: "
          f"{(sampler._p.nbytes + sampler._h.nbytes) / 2**30:.2f} GiB, built in "
          f"{time.perf_counter() - t0:.1f} s (once per session)")
    posterior = Posterior(k, beta=1.0, loss="zero-one")
    truth = rng.integers(0, 2, n)
    item = int(rng.integers(n))
    sampled, full = [], []
    for step in range(args.queries):
        start = time.perf_counter()
        posterior.add(z[item : item + 1].astype(np.float64), np.array([float(truth[item])]))
        sampler.mark_unavailable([item])
        item = sampler.next_item(args.strategy, posterior.weights, step)
        sampled.append(time.perf_counter() - start)
        if step < args.full_queries:
            start = time.perf_counter()
            _full_pool_best(sampler, posterior.weights, args.strategy)
            full.append(time.perf_counter() - start)
    ms = statistics.median(sampled) * 1e3
    full_ms = statistics.median(full) * 1e3
    print(f"label -> next query, {args.strategy}, {args.candidates:,} candidates "
          f"(default {DEFAULT_CANDIDATES:,}) of {n:,}: median {ms:.1f} ms over {len(sampled)} "
          f"steps (p90 {np.percentile(sampled, 90) * 1e3:.1f} ms)")
    print(f"full-pool scoring, same tables: median {full_ms:.0f} ms over {len(full)} steps "
          f"({full_ms / ms:.0f}x the sampled step)")
    print(f"target <= {TARGET_STEP_MS:.0f} ms: {'PASS' if ms <= TARGET_STEP_MS else 'FAIL'}")


def _full_pool_best(sampler, w, strategy: str) -> int:
    """Score every pair with the sampler's own tables (the baseline): the argmax item."""
    from hyre_engine.numerics import binary_entropy

    w32 = w.astype(np.float32)
    best, best_score = -1, -np.inf
    step = 262_144
    for lo in range(0, len(sampler._p), step):
        s = binary_entropy(sampler._p[lo : lo + step].astype(np.float32) @ w32)
        if strategy == "bald":
            s -= sampler._h[lo : lo + step].astype(np.float32) @ w32
        s[sampler._unavailable[lo : lo + step]] = -np.inf
        j = int(np.argmax(s))
        if s[j] > best_score:
            best, best_score = lo + j, s[j]
    return int(sampler._perm[best])


# ------------------------------------------------------------------ engines


def _demo_prompts_and_sentences() -> tuple[list[str], list[str]]:
    """The demo's prompts and its answers' sentences of four words or more, sorted."""
    import re

    from hyre_engine.demo import DEMO_DIR

    rows = [json.loads(line) for line in (DEMO_DIR / "responses.jsonl").read_text().splitlines()]
    prompts = sorted({r["prompt"] for r in rows})
    sentences = sorted({s.strip() for r in rows for s in re.split(r"(?<=[.!?])\s+", r["text"])
                        if len(s.split()) >= 4})
    return prompts, sentences


def synthetic_pool(n_pairs: int, folder: Path, *, n_shards: int = 4, seed: int = 0) -> list[Path]:
    """n_pairs pairs of unique texts built from the demo's sentences, as JSONL shards."""
    prompts, sentences = _demo_prompts_and_sentences()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{i:03d}.jsonl" for i in range(n_shards)]
    files = [open(p, "w") for p in paths]
    try:
        for i in range(n_pairs):
            prompt = prompts[rng.integers(len(prompts))]
            a, b = (" ".join(sentences[j] for j in rng.choice(len(sentences), 3, replace=False))
                    for _ in range(2))
            row = {"pair_id": f"s{i}", "prompt": prompt, "response_a": a, "response_b": b,
                   "label": "ab"[rng.integers(2)], "group": "crowd",
                   "annotator": f"u{rng.integers(20)}"}
            files[i % n_shards].write(json.dumps(row) + "\n")
    finally:
        for f in files:
            f.close()
    return paths


def shared_text_pool(n_pairs: int, n_texts: int, folder: Path, *, train_rows: int | None = None,
                     n_shards: int = 4, seed: int = 0) -> tuple[list[Path], int]:
    """n_pairs distinct pairs over n_texts distinct (prompt, answer) texts, as JSONL shards.

    The demo's prompts each get an equal share of the answers (three demo sentences
    each, no answer twice) and of the pairs (two different answers to that prompt,
    no pair twice). ``train_rows`` random pairs are group "train", the rest "pool"
    (None: all "crowd"). Returns the shard paths and the number of distinct texts in them.
    """
    prompts, sentences = _demo_prompts_and_sentences()
    rng = np.random.default_rng(seed)
    n_prompts = len(prompts)
    answers_per = [n_texts // n_prompts + (i < n_texts % n_prompts) for i in range(n_prompts)]
    pairs_per = [n_pairs // n_prompts + (i < n_pairs % n_prompts) for i in range(n_prompts)]
    for r, want in zip(answers_per, pairs_per, strict=True):
        if r * (r - 1) // 2 < want:
            raise ValueError(f"{n_texts} texts over {n_prompts} prompts give at most {r * (r - 1) // 2} "
                             f"distinct pairs per prompt; {want} are needed: use more texts")
    seen: set[str] = set()
    records = []
    for prompt, r, want in zip(prompts, answers_per, pairs_per, strict=True):
        answers: list[str] = []
        while len(answers) < r:
            text = " ".join(sentences[j] for j in rng.choice(len(sentences), 3, replace=False))
            if text not in seen:
                seen.add(text)
                answers.append(text)
        # pair number c of the r (r - 1) / 2 pairs i < j, decoded row by row
        starts = np.cumsum([0] + [r - 1 - i for i in range(r - 1)])
        for c in rng.choice(int(starts[-1]), want, replace=False):
            i = int(np.searchsorted(starts, c, side="right") - 1)
            j = i + 1 + int(c - starts[i])
            a, b = (answers[i], answers[j]) if rng.integers(2) else (answers[j], answers[i])
            records.append((prompt, a, b))
    order = rng.permutation(len(records))
    train = set(rng.choice(len(records), train_rows, replace=False).tolist()) if train_rows else set()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{i:03d}.jsonl" for i in range(n_shards)]
    files = [open(p, "w") for p in paths]
    try:
        for i, k in enumerate(order):
            prompt, a, b = records[k]
            group = "crowd" if train_rows is None else ("train" if i in train else "pool")
            row = {"pair_id": f"s{i}", "prompt": prompt, "response_a": a, "response_b": b,
                   "label": "ab"[rng.integers(2)], "group": group, "annotator": f"u{rng.integers(20)}"}
            files[i % n_shards].write(json.dumps(row) + "\n")
    finally:
        for f in files:
            f.close()
    return paths, len({(p, t) for p, a, b in records for t in (a, b)})  # texts in some pair


class _StoreTimer:
    """Seconds spent in some of one store's methods (its writes and registrations), by wrapping them."""

    def __init__(self, store, names: tuple[str, ...]) -> None:
        self.seconds = {name: 0.0 for name in names}
        for name in names:
            method = getattr(store, name)

            def timed(*a, _method=method, _name=name, **kw):
                start = time.perf_counter()
                try:
                    return _method(*a, **kw)
                finally:
                    self.seconds[_name] += time.perf_counter() - start

            setattr(store, name, timed)


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def bench_engines(args) -> None:
    import pandas as pd
    import ray
    import torch

    from hyre_engine.data import read_preferences
    from hyre_engine.distributed import RayOptions, build_pool_ray
    from hyre_engine.pipeline import BuildConfig, build_pool
    from hyre_engine.store import Store

    torch.set_num_threads(1)
    # K = 100 heads, hidden 128; with --train-rows only the "train" group trains
    config = BuildConfig(calibrate=False, train_groups=["train"] if args.train_rows else None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        if args.unique_texts:
            paths, n_texts = shared_text_pool(args.pairs, args.unique_texts, tmp / "pool",
                                              train_rows=args.train_rows)
            print(f"shared-text pool: {args.pairs:,} distinct pairs over {n_texts:,} distinct texts "
                  f"(each text in {2 * args.pairs / n_texts:.0f} pairs on average), "
                  f"{args.train_rows or args.pairs:,} training rows, {len(paths)} JSONL shards "
                  f"(written in {time.perf_counter() - start:.1f} s)")
        else:
            paths = synthetic_pool(args.pairs, tmp / "pool")
            print(f"synthetic pool: {args.pairs:,} pairs, {2 * args.pairs:,} unique texts, "
                  f"{len(paths)} JSONL shards")
        print(f"load average (1/5/15 min) before: {_load()}", flush=True)

        start = time.perf_counter()
        single = Store(tmp / "single.duckdb")
        timer1 = _StoreTimer(single, ("put_embeddings", "put_head_predictions"))
        frame = pd.concat([read_preferences(p) for p in paths], ignore_index=True)
        pool_id = single.add_pool("pool", frame)
        read_s = time.perf_counter() - start
        r1 = build_pool(single, pool_id, config)
        total1 = time.perf_counter() - start
        stages1 = _split(read_s, r1.seconds, timer1.seconds["put_embeddings"],
                         timer1.seconds["put_head_predictions"], total1)
        print(f"single-process (1 torch thread), {r1.embedded:,} texts embedded, {r1.n_train_rows:,} "
              f"training rows: " + _stages(stages1) + f", total {total1:.1f} s; load average {_load()}",
              flush=True)

        options = RayOptions(embed_batch_size=args.batch)
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=512 * 2**20)
        init_s = time.perf_counter() - start
        try:
            store = Store(tmp / "ray.duckdb")
            timer2 = _StoreTimer(store, ("register_embedding_shards", "register_prediction_shards"))
            r2 = build_pool_ray(store, str(tmp / "pool" / "*.jsonl"), config, name="pool",
                                options=options)
            total2 = time.perf_counter() - start
            stages2 = {"ray.init": init_s, **_split(
                r2.seconds["read"], r2.seconds, timer2.seconds["register_embedding_shards"],
                timer2.seconds["register_prediction_shards"], total2 - init_s)}
            print(f"ray local (2 CPUs, {options.embed_actors or 1} embedding actor, 1 torch thread), "
                  f"{r2.embedded:,} texts embedded: " + _stages(stages2)
                  + f", total {total2:.1f} s; load average {_load()}")
            rate = (r1.embedded / stages1["embed"], r2.embedded / stages2["embed"])
            print(f"ray / single-process: total {total2 / total1:.2f}x, embed {rate[0] / rate[1]:.2f}x "
                  f"({rate[0]:.1f} vs {rate[1]:.1f} texts/s), "
                  + ", ".join(f"{k} {stages2[k] / stages1[k]:.2f}x" for k in ("read", "train", "Z", "register")
                              if stages1[k] > 0))
            for n in (200_000,):
                print(f"at these rates {n:,} distinct texts cost {n / rate[0] / 60:.0f} min of embedding "
                      f"single-process, {n / rate[1] / 60:.0f} min on ray")
            pairs = store.pool_pairs(r2.pool_id, with_meta=False)
            hashes = sorted(set(pairs["hash_a"]) | set(pairs["hash_b"]))
            e1 = single.get_embeddings(r1.backbone_id, hashes)
            e2 = store.get_embeddings(r2.backbone_id, hashes)
            z1 = single.get_head_predictions(r1.ensemble_id, r1.pool_id)
            z2 = store.get_head_predictions(r2.ensemble_id, r2.pool_id)
            diff_e, diff_z = float(np.abs(e1 - e2).max()), float(np.abs(z1 - z2).max())
            print(f"max |difference| single vs ray over {len(hashes):,} texts and Z {z1.shape}: embeddings "
                  f"{diff_e:.2e}, Z {diff_z:.2e} (1e-5: {'PASS' if max(diff_e, diff_z) <= 1e-5 else 'FAIL'})")
            if args.kill:
                _bench_kill(tmp, config, options, e2, z2, pairs)
        finally:
            ray.shutdown()


def _bench_kill(tmp, config, options, e_ref, z_ref, pairs) -> None:
    import ray

    from hyre_engine.distributed import build_pool_ray
    from hyre_engine.store import Store

    killed, hellos = [], [0]

    def chaos(tracker):
        workers = tracker.workers.get("embed", [])
        hellos[0] = max(hellos[0], len(workers))
        if not killed and workers and tracker.done.get("embed", 0) >= len(pairs) // 2:
            ray.kill(workers[0], no_restart=False)
            killed.append(tracker.done["embed"])

    store = Store(tmp / "ray-kill.duckdb")
    start = time.perf_counter()
    r = build_pool_ray(store, str(tmp / "pool" / "*.jsonl"), config, name="pool", options=options,
                       monitor=chaos)
    e = store.get_embeddings(r.backbone_id, pairs["hash_a"].tolist())
    z = store.get_head_predictions(r.ensemble_id, r.pool_id)
    print(f"ray with the embedding actor killed after {killed[0] if killed else '-'} of "
          f"{r.embedded} texts: completed in {time.perf_counter() - start:.1f} s, actor started "
          f"{hellos[0]} times; vs undisturbed ray: embeddings max |diff| {np.abs(e - e_ref).max():.2e}, "
          f"Z max |diff| {np.abs(z - z_ref).max():.2e}")


def _split(read_s: float, seconds: dict, embed_writes: float, z_writes: float, total: float) -> dict:
    """Seconds per stage with the store writes / registrations taken out of embed and Z into
    "register", and what the stages do not cover (e.g. the single process's D cache) as "other"."""
    out = {"read": read_s, "embed": seconds["embed"] - embed_writes, "train": seconds["train"],
           "Z": seconds["predict"] - z_writes, "register": embed_writes + z_writes}
    out["other"] = max(0.0, total - sum(out.values()))
    return out


def _stages(seconds: dict) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())


# ------------------------------------------------------------------ projection

# Published figures the projection rests on (none measured here: no GPU this session).
H100_BF16_DENSE_FLOPS = 989.5e12  # NVIDIA H100 SXM datasheet, dense BF16 tensor core peak
ASSUMED_MFU = 0.4  # a typical fraction of peak for large-batch encoder-style forward passes
PARAMS_2B = 2.6e9  # Gemma-2 2B (the HyRe paper's backbone family is a 2B reward model)
HIDDEN_2B = 2304  # Gemma-2 2B hidden size: the embedding dimension
TOKENS_PER_TEXT = 500  # prompt + response in a 512-token window (prompt trimmed first)


def projection(n_pairs: int = 10_000_000, gpus: tuple[int, ...] = (1, 8, 32), *,
               texts_per_pair: float = 2.0, heads: int = 100) -> list[str]:
    texts = n_pairs * texts_per_pair
    tokens = texts * TOKENS_PER_TEXT
    flops = 2 * PARAMS_2B * tokens  # a forward pass is ~2 FLOPs per parameter per token
    tok_s = H100_BF16_DENSE_FLOPS * ASSUMED_MFU / (2 * PARAMS_2B)
    lines = [
        f"{n_pairs:,} pairs x {texts_per_pair:g} unique texts x {TOKENS_PER_TEXT} tokens = "
        f"{tokens:.2e} tokens; forward = 2 x {PARAMS_2B:.1e} params x tokens = {flops:.2e} FLOPs",
        f"one H100: {H100_BF16_DENSE_FLOPS:.1e} FLOP/s peak x {ASSUMED_MFU:.0%} MFU / "
        f"{2 * PARAMS_2B:.1e} FLOPs per token = {tok_s:,.0f} tokens/s",
    ]
    for n in gpus:
        hours = tokens / (tok_s * n) / 3600
        lines.append(f"  {n} GPU(s): {hours:,.1f} h of embedding")
    emb_bytes = texts * HIDDEN_2B * 4
    z_bytes = n_pairs * heads * 2
    lines += [
        f"embedding shards: {texts:,.0f} x {HIDDEN_2B} float32 = {emb_bytes / 1e9:,.0f} GB "
        f"(~{HIDDEN_2B * 4 * 100_000 / 1e9:.2f} GB per 100k-text shard)",
        f"Z shards: {n_pairs:,} x {heads} float16 = {z_bytes / 1e9:.1f} GB "
        f"({z_bytes / 1e9 / 8:.2f} GB per shard in 8 shards); the heads' forward is "
        f"{2 * n_pairs * 2 * HIDDEN_2B * 128 * heads / 1e12:.0f} TFLOPs: seconds on one GPU",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    live = sub.add_parser("live")
    live.add_argument("--pairs", type=int, default=10_000_000)
    live.add_argument("--heads", type=int, default=100)
    live.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    live.add_argument("--tables", choices=("float16", "float32"), default="float32")
    live.add_argument("--candidates", type=int, default=200_000)
    live.add_argument("--strategy", choices=("bald", "entropy"), default="bald")
    live.add_argument("--queries", type=int, default=30)
    live.add_argument("--full-queries", type=int, default=3)
    engines = sub.add_parser("engines")
    engines.add_argument("--pairs", type=int, default=1000)
    engines.add_argument("--batch", type=int, default=256)
    engines.add_argument("--kill", action="store_true")
    engines.add_argument("--unique-texts", type=int, default=None,
                         help="a shared-text pool of this many distinct texts (default: every text unique)")
    engines.add_argument("--train-rows", type=int, default=None,
                         help="train on this many random pairs (group 'train'); default: all")
    sub.add_parser("projection")
    args = parser.parse_args()
    if args.part == "live":
        bench_live(args)
    elif args.part == "engines":
        bench_engines(args)
    else:
        print("\n".join(projection()))


if __name__ == "__main__":
    main()
