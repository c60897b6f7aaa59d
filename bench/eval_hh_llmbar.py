"""HyRe on real preference data: HH-RLHF (four subsets) and LLMBar (five subsets).

Protocol: the ensemble trains on a mixture of half of each of the
four HH-RLHF test splits (the train splits are not available); the other
halves are the four target distributions. The same HH-trained ensemble is then
adapted to each of the five LLMBar subsets. Accuracy vs the number n of a
target's labels, mean and std over adaptation seeds (random draws of the n
labels), plus a paper-style helpful/harmless cross view.

Subcommands (run in this order; every step reuses the store's caches):

    .venv/bin/python bench/eval_hh_llmbar.py prepare   # HH/LLMBar -> JSONL files under out/hh_llmbar
    .venv/bin/python bench/eval_hh_llmbar.py embed     # embed every text once (cached in out/hh_llmbar/store.duckdb)
    .venv/bin/python bench/eval_hh_llmbar.py main      # accuracy-vs-n on HH targets and LLMBar
    .venv/bin/python bench/eval_hh_llmbar.py cross     # helpful-base vs harmless-base view
    .venv/bin/python bench/eval_hh_llmbar.py sweep     # prior scale, K, beta, loss, kind, masks
    .venv/bin/python bench/eval_hh_llmbar.py features  # response-only embeddings, linear probes
    .venv/bin/python bench/eval_hh_llmbar.py report    # markdown of the JSON results (section.md)

Embedding on the shared 2-core CPU is slow (1.5-8 texts/s measured), so the HH halves are
subsampled (default 250 train / 300 target pairs per subset, seeded); see
`DEFAULT_TRAIN_PER_GROUP`. Reads ../shared/data by default (--data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# One torch thread: on the shared, oversubscribed 2-core CPU the small matmuls of
# training and fine-tuning 100 heads run faster without thread hand-offs.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hyre_engine import baselines, training  # noqa: E402
from hyre_engine import ensemble as ens  # noqa: E402
from hyre_engine.backbone import load_backbone  # noqa: E402
from hyre_engine.data import read_preferences  # noqa: E402
from hyre_engine.evaluate import evaluate_pools, import_file  # noqa: E402
from hyre_engine.numerics import sigmoid  # noqa: E402
from hyre_engine.pipeline import BuildConfig, build_pool, load_model, pair_embeddings, predict_pool  # noqa: E402
from hyre_engine.protocol import evaluate_group, format_table, summarise  # noqa: E402
from hyre_engine.reweight import example_losses, weights_from_losses  # noqa: E402
from hyre_engine.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "out" / "hh_llmbar"
HH_SUBSETS = ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled")
# RewardBench's names for the five LLMBar subsets, keyed by the file name's stem.
LLMBAR_SUBSETS = {
    "LLMBar_Natural": "llmbar-natural",
    "LLMBar_Adversarial_GPTInst": "llmbar-adver-GPTInst",
    "LLMBar_Adversarial_GPTOut": "llmbar-adver-GPTOut",
    "LLMBar_Adversarial_Manual": "llmbar-adver-manual",
    "LLMBar_Adversarial_Neighbor": "llmbar-adver-neighbor",
}
# Subsample sizes per HH subset: 4 x (250 + 300) pairs = 4400 texts took ~25 min
# to embed once on the shared 2-core CPU (3-8 texts/s under load).
DEFAULT_TRAIN_PER_GROUP = 250
DEFAULT_TARGET_PER_GROUP = 300
# Seed of the half split and the subsample (the split is per subset, by pair).
SPLIT_SEED = 0
DEFAULT_N = (0, 1, 5, 10, 20)
DEFAULT_SEEDS = 20
# The paper's beta; passed explicitly so a calibrated beta stored with the
# ensemble (calibrated on held-out training annotators) does not silently change these numbers.
PAPER_BETA = 1.0
# Fine-tuning is the slow baseline (100 full-batch steps per seed and n).
DEFAULT_FINETUNE_SEEDS = 3


# -- data ---------------------------------------------------------------------------


def prepare(data: Path, out: Path, *, train_per_group: int, target_per_group: int, seed: int) -> dict:
    """Write hh_train.jsonl, hh_target.jsonl and llmbar_target.jsonl (DESIGN format) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    train, target = [], []
    counts = {}
    for subset in HH_SUBSETS:
        frame = read_preferences(data / "hh_rlhf" / f"{subset}_test.jsonl.gz", format="hh-rlhf", group=subset)
        empty = (frame["response_a"].str.strip() == "") | (frame["response_b"].str.strip() == "")
        # The hh-rlhf reader keeps empty responses but the DESIGN-format reader
        # refuses them, so the written files could not be read back: drop them.
        frame = frame[~empty].drop_duplicates("pair_id", keep="first").reset_index(drop=True)
        order = np.random.default_rng([seed, HH_SUBSETS.index(subset)]).permutation(len(frame))
        half = len(frame) // 2
        tr, tg = order[:half][:train_per_group], order[half:][:target_per_group]
        train.append(frame.iloc[tr])
        target.append(frame.iloc[tg])
        counts[subset] = {"unique_pairs": len(frame), "dropped_empty": int(empty.sum()), "train": len(tr), "target": len(tg)}
    llmbar = []
    for stem, name in LLMBAR_SUBSETS.items():
        frame = read_preferences(data / "llmbar" / f"{stem}.json.gz", format="llmbar", group=name)
        llmbar.append(frame)
        counts[name] = {"target": len(frame)}
    columns = ["pair_id", "prompt", "response_a", "response_b", "label", "group"]
    paths = {}
    for key, frames in (("hh_train", train), ("hh_target", target), ("llmbar_target", llmbar)):
        path = out / f"{key}.jsonl"
        pd.concat(frames)[columns].to_json(path, orient="records", lines=True, force_ascii=False)
        paths[key] = str(path)
    return {"paths": paths, "counts": counts}


def open_pools(out: Path) -> tuple[Store, dict[str, str]]:
    store = Store(out / "store.duckdb")
    pools = {key: import_file(store, out / f"{key}.jsonl", format="design") for key in
             ("hh_train", "hh_target", "llmbar_target")}
    return store, pools


def config_of(args: argparse.Namespace, **overrides) -> BuildConfig:
    # No beta calibration: HH has only 4 "annotators" (the subsets), and
    # every number here uses the paper's beta unless a sweep says otherwise.
    settings = dict(kind="shared", n_heads=100, prior_scale=1.0,
                    annotator_fraction=getattr(args, "annotator_fraction", None),
                    seed=args.ensemble_seed, calibrate=False)
    settings.update(overrides)
    return BuildConfig(**settings)


def run_embed(args: argparse.Namespace) -> dict:
    """Embed (and cache) every text of the three pools, logging speed."""
    from hyre_engine.pipeline import ensure_embeddings

    store, pools = open_pools(args.out)
    backbone = load_backbone(None)
    done = {}
    for key in ("llmbar_target", "hh_target", "hh_train"):
        started = time.perf_counter()

        def progress(stage: str, i: int, total: int, key=key, started=started) -> None:
            rate = i / max(time.perf_counter() - started, 1e-9)
            print(f"{key}: {stage} {i}/{total} ({rate:.1f} texts/s)", flush=True)

        computed, reused = ensure_embeddings(store, pools[key], backbone, progress=progress)
        done[key] = {"computed": computed, "reused": reused, "seconds": round(time.perf_counter() - started, 1)}
        print(key, done[key], flush=True)
    return done


# -- main table ----------------------------------------------------------------------


def run_main(args: argparse.Namespace) -> dict:
    store, pools = open_pools(args.out)
    backbone = load_backbone(None)
    n_values = [int(v) for v in args.n.split(",")]
    results = {}
    for ens_seed in [int(s) for s in args.ensemble_seeds.split(",")]:
        config = config_of(args, seed=ens_seed)
        started = time.perf_counter()
        report = build_pool(store, pools["hh_train"], config, backbone=backbone)
        print(report.summary(), flush=True)
        for target in ("hh_target", "llmbar_target"):
            methods = args.methods.split(",")
            result = evaluate_pools(
                store, pools["hh_train"], pools[target], config=config, n_values=n_values,
                seeds=args.seeds, beta=PAPER_BETA, methods=methods,
            )
            if args.finetune_seeds > 0:
                tuned = evaluate_pools(
                    store, pools["hh_train"], pools[target], config=config, n_values=n_values,
                    seeds=args.finetune_seeds, beta=PAPER_BETA, methods=["finetune"],
                )
                for name, group in tuned["groups"].items():
                    result["groups"][name]["methods"]["finetune"] = group["methods"]["finetune"]
                result["summary"]["finetune"] = tuned["summary"]["finetune"]
                result["finetune_seeds"] = args.finetune_seeds
            key = f"{target}/ensemble_seed={ens_seed}"
            results[key] = result
            print(format_table(result, title=f"\n{key} ({time.perf_counter() - started:.0f} s)"), flush=True)
            if 10 in n_values:
                print(per_group_lines(result, "hyre", "uniform", n=10), flush=True)
    return results


def per_group_lines(result: dict, a: str, b: str, *, n: int) -> str:
    j = result["n"].index(n)
    lines = [f"per group at n={n}: {a} vs {b} (mean +- std over seeds)"]
    for name, group in result["groups"].items():
        ma, mb = group["methods"][a], group["methods"][b]
        lines.append(f"  {name:<28} {ma['mean'][j]:.3f} +- {ma['std'][j]:.3f}   {mb['mean'][j]:.3f} +- {mb['std'][j]:.3f}")
    return "\n".join(lines)


# -- helpful / harmless cross view --------------------------------------------------------


def run_cross(args: argparse.Namespace) -> dict:
    """Adapt on one of helpful-base / harmless-base, score on both (the paper's table)."""
    store, pools = open_pools(args.out)
    backbone = load_backbone(None)
    config = config_of(args)
    report = build_pool(store, pools["hh_train"], config, backbone=backbone)
    Z = predict_pool(store, report.ensemble_id, pools["hh_target"], backbone).astype(np.float64)
    labels = store.pool_labels(pools["hh_target"])
    pairs = store.pool_pairs(pools["hh_target"], with_meta=False)
    xa, xb = pair_embeddings(store, backbone.id, pairs)
    model = load_model(store, report.ensemble_id)
    rows = {g: labels[labels["group"] == g]["row_index"].to_numpy() for g in ("helpful-base", "harmless-base")}
    y = np.zeros(len(pairs))
    y[labels["row_index"].to_numpy()] = (labels["label"] == "a").to_numpy()
    P = sigmoid(Z)
    per_example = example_losses(Z, y, loss="zero-one")

    def acc(prob: np.ndarray, idx: np.ndarray) -> float:
        return baselines.accuracy(prob[idx], y[idx])

    table: dict[str, dict] = {}
    uniform = P.mean(axis=1)
    table["uniform"] = {g: {"mean": acc(uniform, idx), "std": 0.0} for g, idx in rows.items()}
    for source in rows:
        other = next(g for g in rows if g != source)
        for n_label in args.cross_n.split(","):
            n = len(rows[source]) // 2 if n_label == "half" else int(n_label)
            scores: dict[str, dict[str, list[float]]] = {"hyre": {source: [], other: []}}
            if args.finetune_seeds > 0:
                scores["finetune"] = {source: [], other: []}
            for seed in range(args.seeds):
                perm = np.random.default_rng(seed).permutation(rows[source])
                adapt, held = perm[:n], perm[n:]
                w = weights_from_losses(per_example[adapt].sum(axis=0), beta=PAPER_BETA)
                scores["hyre"][source].append(acc(P @ w, held))
                scores["hyre"][other].append(acc(P @ w, rows[other]))
                if seed < args.finetune_seeds:
                    tuned = training.finetune_heads(
                        model, task="preference", inputs=(xa[adapt], xb[adapt]), targets=y[adapt], seed=seed
                    )
                    Pt = sigmoid(ens.predict_pairs(tuned, xa, xb).astype(np.float64)).mean(axis=1)
                    scores["finetune"][source].append(acc(Pt, held))
                    scores["finetune"][other].append(acc(Pt, rows[other]))
            for method, by_group in scores.items():
                table[f"{method} on {source}, n={n}"] = {
                    g: {"mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)} for g, v in by_group.items()
                }
            print(f"done {source} n={n}", flush=True)
    lines = [f"{'model':<34}{'helpful-base':>18}{'harmless-base':>18}"]
    for name, cols in table.items():
        lines.append(f"{name:<34}" + "".join(
            f"{cols[g]['mean']:>11.3f} +- {cols[g]['std']:.3f}" for g in ("helpful-base", "harmless-base")))
    print("\n".join(lines), flush=True)
    return {"table": table, "n_rows": {g: len(v) for g, v in rows.items()}, "seeds": args.seeds,
            "finetune_seeds": args.finetune_seeds, "beta": PAPER_BETA, "ensemble_id": report.ensemble_id,
            "config": config.ensemble_settings(), "text": "\n".join(lines)}


# -- investigation ------------------------------------------------------------------------


SWEEP = {
    # name: (BuildConfig overrides, reweighting betas, loss); cheapest and most telling first
    "base": ({}, (0.3, 1.0, 3.0, 10.0), "zero-one"),
    "base/cross-entropy": ({}, (1.0,), "cross-entropy"),
    # each head trains on the rows of one HH subset (annotator = group): the
    # mixture's components become hypotheses; uses subset identity at train time
    "subset-masked heads (fraction 0.2)": ({"annotator_fraction": 0.2}, (1.0, 3.0), "zero-one"),
    "prior_scale=10": ({"prior_scale": 10.0}, (1.0, 3.0), "zero-one"),
    "prior_scale=3": ({"prior_scale": 3.0}, (1.0, 3.0), "zero-one"),
    "prior_scale=0.1": ({"prior_scale": 0.1}, (1.0, 3.0), "zero-one"),
    "vanilla": ({"kind": "vanilla"}, (1.0, 3.0), "zero-one"),
    "epinet": ({"kind": "epinet"}, (1.0, 3.0), "zero-one"),
    "hidden=32": ({"hidden": 32}, (1.0, 3.0), "zero-one"),
    "K=300": ({"n_heads": 300}, (1.0, 3.0), "zero-one"),
}


# The fitted convex weighting is the slow part of an evaluation; the sweep leaves it out.
SWEEP_METHODS = ["uniform", "hyre", "best_head_oracle"]


def run_sweep(args: argparse.Namespace) -> dict:
    store, pools = open_pools(args.out)
    backbone = load_backbone(None)
    n_values = [int(v) for v in args.n.split(",")]
    names = list(SWEEP) if args.only is None else args.only.split(";")
    labels = store.pool_labels(pools["hh_target"])
    out = {}
    for name in names:
        overrides, betas, loss = SWEEP[name]
        config = config_of(args, **overrides)
        started = time.perf_counter()
        report = build_pool(store, pools["hh_train"], config, backbone=backbone)
        Z = predict_pool(store, report.ensemble_id, pools["hh_target"], backbone)
        for beta in betas:
            groups = {}
            for g in HH_SUBSETS:
                rows = labels[labels["group"] == g]
                y = (rows["label"] == "a").to_numpy().astype(np.float64)
                groups[g] = evaluate_group(
                    Z[rows["row_index"].to_numpy()], y, n_values=n_values, seeds=args.seeds,
                    beta=beta, loss=loss, methods=SWEEP_METHODS,
                )
            result = summarise(n_values, groups)
            result.update({"config": config.ensemble_settings(), "beta": beta, "loss": loss,
                           "head_spread": head_spread(Z)})
            key = f"{name}, beta={beta:g}"
            out[key] = result
            print(format_table(result, title=f"\n{key} ({time.perf_counter() - started:.0f} s)"), flush=True)
        # partial results survive a sweep stopped early (each variant trains an ensemble)
        (args.json or args.out / "sweep.json").write_text(json.dumps(out, indent=1))
    return out


def head_spread(Z: np.ndarray) -> dict:
    """How different the heads are: mean pairwise disagreement in sign and std of margins across heads."""
    sign = Z > 0
    agree = sign.mean(axis=1)
    return {"mean_disagreement": round(float(np.mean(2 * agree * (1 - agree))), 4),
            "mean_std_across_heads": round(float(Z.std(axis=1).mean()), 4)}


def run_features(args: argparse.Namespace) -> dict:
    """Features check: embed the responses alone (no prompt), train the same ensemble, evaluate.

    Works from the JSONL files and an npz cache (no store), so it can run beside
    another command. Also reports a linear probe (logistic regression on the
    standardised embedding difference) trained on the HH training half, for both
    the default (prompt + response) embeddings and the response-only ones.
    """
    from scipy.optimize import minimize

    backbone = load_backbone(None)
    frames = {k: read_preferences(args.out / f"{k}.jsonl", format="design") for k in ("hh_train", "hh_target")}
    cache = args.out / "response_only.npz"
    if cache.exists():
        arrays = dict(np.load(cache))
    else:
        arrays = {}
        for key, f in frames.items():
            started = time.perf_counter()
            arrays[f"{key}_a"] = backbone.embed_texts(f["response_a"].tolist())
            arrays[f"{key}_b"] = backbone.embed_texts(f["response_b"].tolist())
            print(f"embedded {key} responses in {time.perf_counter() - started:.0f} s", flush=True)
        np.savez(cache, **arrays)
    y = {k: (f["label"] == "a").to_numpy().astype(np.float64) for k, f in frames.items()}
    groups = frames["hh_target"]["group"].to_numpy()
    n_values = [int(v) for v in args.n.split(",")]
    config = ens.EnsembleConfig(kind="shared", input_dim=arrays["hh_train_a"].shape[1], seed=args.ensemble_seed)
    model = ens.build_ensemble(config)
    started = time.perf_counter()
    training.fit_ensemble(model, task="preference", inputs=(arrays["hh_train_a"], arrays["hh_train_b"]),
                     targets=y["hh_train"].astype(np.float32), seed=args.ensemble_seed)
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    Z = ens.predict_pairs(model, arrays["hh_target_a"], arrays["hh_target_b"])
    result = summarise(n_values, {
        g: evaluate_group(Z[groups == g], y["hh_target"][groups == g], n_values=n_values, seeds=args.seeds,
                          beta=PAPER_BETA, methods=SWEEP_METHODS)
        for g in HH_SUBSETS
    })
    result["head_spread"] = head_spread(Z)
    print(format_table(result, title="\nresponse-only embeddings, beta=1"), flush=True)

    def probe(xa_tr, xb_tr, xa_te, xb_te) -> dict:
        scale = np.concatenate([xa_tr, xb_tr]).std(axis=0) + 1e-6
        X, Xt = (xa_tr - xb_tr) / scale, (xa_te - xb_te) / scale
        sign = 2 * y["hh_train"] - 1

        def loss(w):
            z = sign * (X @ w)
            return (np.logaddexp(0, -z).mean() + PROBE_L2 * w @ w,
                    -(X * (sign / (1 + np.exp(z)))[:, None]).mean(axis=0) + 2 * PROBE_L2 * w)

        w = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B").x
        right = (Xt @ w > 0) == (y["hh_target"] > 0.5)
        return {"train": round(float(((X @ w > 0) == (sign > 0)).mean()), 4),
                **{g: round(float(right[groups == g].mean()), 4) for g in HH_SUBSETS}}

    store, pools = open_pools(args.out)
    default = {}
    for key in ("hh_train", "hh_target"):
        pairs = store.pool_pairs(pools[key], with_meta=False).set_index("pair_id").loc[frames[key]["pair_id"]]
        default[key] = pair_embeddings(store, backbone.id, pairs)
    probes = {
        "prompt+response (default)": probe(*default["hh_train"], *default["hh_target"]),
        "response only": probe(arrays["hh_train_a"], arrays["hh_train_b"], arrays["hh_target_a"], arrays["hh_target_b"]),
    }
    longer = (frames["hh_target"]["response_a"].str.len() > frames["hh_target"]["response_b"].str.len()).to_numpy()
    probes["longer response wins (no model)"] = {
        g: round(float((longer == (y["hh_target"] > 0.5))[groups == g].mean()), 4) for g in HH_SUBSETS}
    print(json.dumps(probes, indent=1), flush=True)
    return {"response_only": result, "linear_probe_l2": PROBE_L2, "probes": probes}


# L2 of the linear probe in `run_features` (on standardised features; 1e-2 was the
# middle of 1e-4 / 1e-2 / 1 in a first look, all within 0.03 of each other).
PROBE_L2 = 1e-2


# -- markdown ----------------------------------------------------------------------------


def _cell(stats: dict, j: int) -> str:
    return f"{stats['mean'][j]:.3f} ± {stats['std'][j]:.3f}"


def markdown_main(result: dict, *, title: str) -> str:
    """Per-group table (mean ± std over adaptation seeds) plus the mean over groups."""
    n_values = result["n"]
    methods = [m for m in ("single", "uniform", "hyre", "convex", "finetune", "best_head_oracle")
               if m in result["summary"]]
    lines = [f"**{title}**", "", "| group | method | " + " | ".join(f"n={n}" for n in n_values) + " |",
             "|---|---|" + "---|" * len(n_values)]
    for name, group in result["groups"].items():
        for m in methods:
            if m in group["methods"]:
                cells = " | ".join(_cell(group["methods"][m], j) for j in range(len(n_values)))
                lines.append(f"| {name} ({group['n_examples']}) | {m} | {cells} |")
    for m in methods:
        cells = " | ".join(f"{v:.3f}" for v in result["summary"][m]["mean"])
        lines.append(f"| **mean over groups** | {m} | {cells} |")
    return "\n".join(lines)


def markdown_sweep(result: dict, *, n: int = 10) -> str:
    lines = [f"| variant | uniform n={n} | HyRe n={n} | HyRe - uniform | HyRe n=20 | best head (oracle) | head disagreement |",
             "|---|---|---|---|---|---|---|"]
    for key, r in result.items():
        j = r["n"].index(n)
        j20 = r["n"].index(20) if 20 in r["n"] else j
        s = r["summary"]
        lines.append(
            f"| {key} | {s['uniform']['mean'][j]:.3f} | {s['hyre']['mean'][j]:.3f} | "
            f"{s['hyre']['mean'][j] - s['uniform']['mean'][j]:+.3f} | {s['hyre']['mean'][j20]:.3f} | "
            f"{s['best_head_oracle']['mean'][j]:.3f} | "
            f"{r['head_spread']['mean_disagreement']:.3f} |")
    return "\n".join(lines)


def run_report(args: argparse.Namespace) -> dict:
    """Markdown of whatever JSON results exist under ``--out`` (written to section.md)."""
    parts = []
    main_path, cross_path, sweep_path = (args.out / f"{c}.json" for c in ("main", "cross", "sweep"))
    if main_path.exists():
        for key, result in json.loads(main_path.read_text()).items():
            parts.append(markdown_main(result, title=f"{key}: {result['seeds']} adaptation seeds"
                                       + (f", fine-tuning {result['finetune_seeds']} seeds" if "finetune_seeds" in result else "")))
    if cross_path.exists():
        cross = json.loads(cross_path.read_text())
        parts.append("```\n" + cross["text"] + "\n```")
    if sweep_path.exists():
        parts.append(markdown_sweep(json.loads(sweep_path.read_text())))
    text = "\n\n".join(parts) + "\n"
    (args.out / "section.md").write_text(text)
    print(text)
    return {"markdown": text}


# -- command line ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "embed", "main", "cross", "sweep", "features", "report"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-per-group", type=int, default=DEFAULT_TRAIN_PER_GROUP)
    parser.add_argument("--target-per-group", type=int, default=DEFAULT_TARGET_PER_GROUP)
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_N)))
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="adaptation seeds")
    parser.add_argument("--finetune-seeds", type=int, default=DEFAULT_FINETUNE_SEEDS)
    parser.add_argument("--ensemble-seed", type=int, default=0)
    parser.add_argument("--ensemble-seeds", default="0", help="main: comma-separated ensemble seeds")
    parser.add_argument("--methods", default="single,uniform,hyre,convex,best_head_oracle",
                        help="main: methods besides finetune (which --finetune-seeds controls)")
    parser.add_argument("--annotator-fraction", type=float, default=None,
                        help="main/cross/sweep base config: heads see this fraction of the subsets "
                        "(annotator = subset); default: every head sees every row (the paper)")
    parser.add_argument("--cross-n", default="10,20,half", help="cross: label counts ('half' = half the subset)")
    parser.add_argument("--only", help="sweep: ';'-separated names of SWEEP entries")
    parser.add_argument("--json", type=Path, help="write the results here (default: out/hh_llmbar/<command>.json)")
    args = parser.parse_args()

    if args.command == "prepare":
        result = prepare(args.data, args.out, train_per_group=args.train_per_group,
                         target_per_group=args.target_per_group, seed=SPLIT_SEED)
        print(json.dumps(result, indent=1))
    else:
        result = {"embed": run_embed, "main": run_main, "cross": run_cross, "sweep": run_sweep, "features": run_features, "report": run_report}[args.command](args)
    if args.command == "report":
        return 0
    path = args.json or args.out / f"{args.command}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
