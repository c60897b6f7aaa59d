"""Joint fine-tuning of MiniLM with the heads on HH-RLHF, against the frozen-backbone ensemble.

The same protocol as bench/eval_hh_llmbar.py: the ensemble trains on a mixture of
(a subsample of) half of each of the four HH-RLHF test splits; the other halves are
the four target distributions, and the five LLMBar subsets are further targets.
Both ensembles have the same settings (K = 100 shared-base heads, hidden 128, prior
scale 1, every head on every row, beta = 1); the only difference is that one keeps
MiniLM frozen and the other trains MiniLM with the heads (`joint_training`).

    .venv/bin/python bench/finetune_hh.py --quick                      # end-to-end check, ~2 min
    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python bench/finetune_hh.py \
        --train-per-group 250 --target-per-group 150 --epochs 2 --max-length 128 \
        --json out/finetune_hh/result.json 2>&1 | tee out/finetune_hh/run.log

Prints per-epoch time and validation scores, accuracy vs n (uniform, HyRe and
personal: HyRe plus the Bayesian personal head on that backbone's embedding
differences, prior precision --lam) on each target for both backbones (mean and
std over adaptation seeds), and the paper's helpful/harmless table; --markdown
writes the same tables as Markdown (what docs/results.md shows). Interrupted runs resume (embeddings are cached in
the store, fine-tuning from its last finished epoch). Reads ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from eval_hh_llmbar import DEFAULT_DATA, PAPER_BETA, prepare  # noqa: E402

from hyre_engine import ensemble as ens  # noqa: E402
from hyre_engine import joint_training as jt  # noqa: E402
from hyre_engine import training  # noqa: E402
from hyre_engine.backbone import load_backbone  # noqa: E402
from hyre_engine.evaluate import import_file  # noqa: E402
from hyre_engine.numerics import accuracy, sigmoid  # noqa: E402
from hyre_engine.personal import DEFAULT_LAMBDA, PersonalModel, embedding_differences  # noqa: E402
from hyre_engine.pipeline import ensure_embeddings, pair_embeddings, training_rows  # noqa: E402
from hyre_engine.protocol import evaluate_group, format_table, summarise  # noqa: E402
from hyre_engine.reweight import example_losses, weights_from_losses  # noqa: E402
from hyre_engine.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "out" / "finetune_hh"
METHODS = ["uniform", "hyre", "personal"]
HEADS = 100
HIDDEN = 128
ENSEMBLE_SEED = 0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def build_heads(dim: int) -> ens.Ensemble:
    # every head on every row: the paper's setting, and the HH "annotators" are only the 4 subsets
    return ens.build_ensemble(ens.EnsembleConfig(kind="shared", input_dim=dim, n_heads=HEADS, hidden=HIDDEN,
                                                 prior_scale=1.0, seed=ENSEMBLE_SEED))


def target_logits(store: Store, pool: str, backbone, model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs = store.pool_pairs(pool, with_meta=False)
    xa, xb = pair_embeddings(store, backbone.id, pairs)
    return ens.predict_pairs(model, xa, xb).astype(np.float64), xa, xb


def accuracy_vs_n(store: Store, pool: str, Z: np.ndarray, diffs: np.ndarray, n_values, seeds: int, *,
                  lam: float) -> dict:
    labels = store.pool_labels(pool)
    groups = {}
    for name in sorted(labels["group"].unique()):
        rows = labels[labels["group"] == name]
        idx = rows["row_index"].to_numpy()
        y = (rows["label"] == "a").to_numpy().astype(np.float64)
        groups[name] = evaluate_group(Z[idx], y, n_values=n_values, seeds=seeds, beta=PAPER_BETA,
                                      diffs=diffs[idx], lam=lam, methods=METHODS)
    return summarise(n_values, groups)


def cross_table(store: Store, pool: str, Z: np.ndarray, xa, xb, model, *, n_list, seeds: int,
                finetune_seeds: int, lam: float) -> dict:
    """Adapt on helpful-base or harmless-base (HyRe, personal, and fine-tuning the heads), score on both."""
    labels = store.pool_labels(pool)
    rows = {g: labels[labels["group"] == g]["row_index"].to_numpy() for g in ("helpful-base", "harmless-base")}
    y = np.zeros(len(Z))
    y[labels["row_index"].to_numpy()] = (labels["label"] == "a").to_numpy()
    P = sigmoid(Z)
    per_example = example_losses(Z, y, loss="zero-one")
    diffs = embedding_differences(xa, xb)

    def acc(prob, idx):
        return accuracy(prob[idx], y[idx])

    table = {"uniform": {g: {"mean": acc(P.mean(axis=1), idx), "std": 0.0} for g, idx in rows.items()}}
    for source in rows:
        other = next(g for g in rows if g != source)
        for n in n_list:
            scores = {m: {source: [], other: []} for m in ("hyre", "personal", "finetune")}
            for seed in range(seeds):
                perm = np.random.default_rng(seed).permutation(rows[source])
                adapt, held = perm[:n], perm[n:]
                w = weights_from_losses(per_example[adapt].sum(axis=0), beta=PAPER_BETA)
                scores["hyre"][source].append(acc(P @ w, held))
                scores["hyre"][other].append(acc(P @ w, rows[other]))
                personal = sigmoid(PersonalModel.replay(Z, diffs, adapt, y[adapt], beta=PAPER_BETA,
                                                        lam=lam).margins())
                scores["personal"][source].append(acc(personal, held))
                scores["personal"][other].append(acc(personal, rows[other]))
                if seed < finetune_seeds:
                    tuned = training.finetune_heads(model, task="preference", inputs=(xa[adapt], xb[adapt]),
                                                     targets=y[adapt], seed=seed)
                    Pt = sigmoid(ens.predict_pairs(tuned, xa, xb).astype(np.float64)).mean(axis=1)
                    scores["finetune"][source].append(acc(Pt, held))
                    scores["finetune"][other].append(acc(Pt, rows[other]))
            for method, by_group in scores.items():
                if by_group[source]:
                    table[f"{method} on {source}, n={n}"] = {
                        g: {"mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)}
                        for g, v in by_group.items()}
    return table


def format_cross(frozen: dict, tuned: dict) -> str:
    lines = [f"{'model':<34}{'frozen helpful':>16}{'frozen harmless':>17}{'tuned helpful':>16}{'tuned harmless':>16}"]
    for name in tuned:
        cells = []
        for table in (frozen, tuned):
            for g in ("helpful-base", "harmless-base"):
                c = table.get(name, {}).get(g)
                cells.append(f"{c['mean']:.3f}±{c['std']:.3f}" if c else "-")
        lines.append(f"{name:<34}" + "".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


METHOD_NAMES = {"uniform": "uniform", "hyre": "HyRe", "personal": "personal"}


def _cell(stats: dict, j: int) -> str:
    return f"{stats['mean'][j]:.3f} ± {stats['std'][j]:.3f}"


def markdown_tables(results: dict) -> str:
    """The per-target tables (both backbones, mean ± std over seeds) and the cross table, as Markdown."""
    out = []
    for key in ("hh_target", "llmbar_target"):
        frozen, tuned = results[f"frozen/{key}"], results[f"tuned/{key}"]
        n_values = frozen["n"]
        seeds = results["config"]["seeds"]
        out += [f"**{key}** (per target: mean ± std over {seeds} adaptation seeds)", ""]
        header = ["target", "backbone"] + [f"{METHOD_NAMES[m]} n={n}" for m in METHODS for n in n_values]
        out += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        for target in frozen["groups"]:
            for name, result in (("frozen", frozen), ("tuned", tuned)):
                methods = result["groups"][target]["methods"]
                cells = [_cell(methods[m], j) for m in METHODS for j in range(len(n_values))]
                out.append(f"| {target} | {name} | " + " | ".join(cells) + " |")
        for name, result in (("frozen", frozen), ("tuned", tuned)):
            cells = [f"{v:.3f}" for m in METHODS for v in result["summary"][m]["mean"]]
            out.append(f"| mean over targets | {name} | " + " | ".join(cells) + " |")
        out.append("")
    cross = results["cross"]
    out += ["**helpful-base / harmless-base** (adapt on one, score on both; mean ± std over seeds)", "",
            "| model | frozen: helpful-base | frozen: harmless-base | fine-tuned: helpful-base | "
            "fine-tuned: harmless-base |", "|---|---:|---:|---:|---:|"]
    for row in cross["tuned"]:
        cells = []
        for name in ("frozen", "tuned"):
            for g in ("helpful-base", "harmless-base"):
                c = cross[name].get(row, {}).get(g)
                cells.append(f"{c['mean']:.3f} ± {c['std']:.3f}" if c else "-")
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-per-group", type=int, default=250)
    parser.add_argument("--target-per-group", type=int, default=150)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text, frozen and tuned alike")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--finetune-pairs", type=int, default=None,
                        help="train both ensembles on this many of the training pairs (seeded, equal "
                        "per HH subset): what a joint fine-tuning fits in a time box on a loaded CPU")
    parser.add_argument("--batch-pairs", type=int, default=jt.DEFAULT_BATCH_PAIRS)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--backbone-lr", type=float, default=jt.DEFAULT_BACKBONE_LR)
    parser.add_argument("--head-lr", type=float, default=jt.DEFAULT_HEAD_LR)
    parser.add_argument("--n", default="0,5,10")
    parser.add_argument("--seeds", type=int, default=20, help="adaptation seeds (random label draws)")
    parser.add_argument("--cross-n", default="10,20")
    parser.add_argument("--finetune-seeds", type=int, default=3)
    parser.add_argument("--lam", type=float, default=DEFAULT_LAMBDA,
                        help="the personal head's prior precision (the library default; HH has no "
                        "held-out training annotators to calibrate it on)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script end to end")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_per_group, args.target_per_group, args.epochs, args.seeds = 12, 8, 1, 3
        args.out = args.out.with_name(args.out.name + "_quick")
        args.cross_n, args.finetune_seeds = "2", 1
    torch.set_num_threads(args.threads)
    n_values = [int(v) for v in args.n.split(",")]
    started = time.perf_counter()
    tag = f"tr{args.train_per_group}-tg{args.target_per_group}-max{args.max_length}"
    out = args.out / tag
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(args.data, out, train_per_group=args.train_per_group,
                       target_per_group=args.target_per_group, seed=0)
    store = Store(out / "store.duckdb")
    pools = {k: import_file(store, out / f"{k}.jsonl", format="design") for k in ("hh_train", "hh_target", "llmbar_target")}
    base = load_backbone(None, max_length=args.max_length)
    log(f"backbone {base.id} ({base.kind}, {base.max_length} tokens, {base.device}); torch threads {torch.get_num_threads()}")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    for key, pool in pools.items():
        computed, reused = ensure_embeddings(store, pool, base)
        log(f"frozen embeddings {key}: {computed} computed, {reused} reused")
    timings["embed_frozen"] = time.perf_counter() - t

    # the frozen-backbone ensemble, trained on all training rows
    labels = training_rows(store, pools["hh_train"], None)
    if args.finetune_pairs:
        per_group = args.finetune_pairs // labels["group"].nunique()
        keep = (labels.groupby("group", group_keys=False)
                .apply(lambda g: g.sample(n=min(per_group, len(g)), random_state=ENSEMBLE_SEED)).index)
        labels = labels.loc[sorted(keep)].reset_index(drop=True)
        log(f"training on {len(labels)} of the training pairs ({per_group} per subset)")
    train_pairs = store.pool_pairs(pools["hh_train"], with_meta=False)
    index = dict(zip(train_pairs["pair_id"], train_pairs["row_index"], strict=True))
    xa_all, xb_all = pair_embeddings(store, base.id, train_pairs)
    rows = labels["pair_id"].map(index).to_numpy()
    y = (labels["label"] == "a").to_numpy().astype(np.float32)
    t = time.perf_counter()
    frozen = build_heads(base.dim)
    training.fit_ensemble(frozen, task="preference", inputs=(xa_all[rows], xb_all[rows]), targets=y, seed=ENSEMBLE_SEED)
    timings["train_frozen"] = time.perf_counter() - t

    # joint fine-tuning (resumes from the last finished epoch if a run was interrupted)
    data = jt.preference_texts(base, train_pairs, labels)
    config = jt.JointTrainingConfig(mode="full", epochs=args.epochs, batch_pairs=args.batch_pairs,
                                    grad_accum=args.grad_accum, backbone_lr=args.backbone_lr,
                                    head_lr=args.head_lr, max_length=args.max_length, seed=ENSEMBLE_SEED)
    # no epoch count in the name: a longer run continues a shorter one's checkpoint
    subset = f"-p{args.finetune_pairs}" if args.finetune_pairs else ""
    ft_dir = out / f"ft{subset}-b{args.batch_pairs}x{args.grad_accum}-lr{args.backbone_lr:g}-{args.head_lr:g}"
    t = time.perf_counter()
    if (ft_dir / jt.FINETUNED_MANIFEST).is_file():
        log(f"fine-tuned backbone already in {ft_dir}: reusing it")
        manifest = jt.read_manifest(ft_dir)
        history, best_epoch = manifest["training"]["history"], manifest["training"]["best_epoch"]
    else:
        trainee = load_backbone(None, max_length=args.max_length)
        result = jt.finetune_backbone(trainee, build_heads(base.dim), data, ft_dir, config,
                                      initial_embeddings=(xa_all[rows], xb_all[rows]), show_progress_bar=True)
        history, best_epoch = result.history, result.best_epoch
        del trainee, result
    timings["finetune"] = time.perf_counter() - t
    for h in history:
        log(f"epoch {h['epoch']}: train loss {h['train_loss']:.4f}, val loss {h['val_loss']:.4f}, "
            f"val accuracy {h['val_accuracy']:.3f}, {h['seconds']:.0f} s")
    log(f"best epoch {best_epoch}")
    tuned = load_backbone(ft_dir)
    tuned_heads = jt.load_finetuned_heads(ft_dir)
    log(f"fine-tuned backbone id {tuned.id}")

    t = time.perf_counter()
    for key in ("hh_target", "llmbar_target"):
        computed, reused = ensure_embeddings(store, pools[key], tuned)
        log(f"fine-tuned embeddings {key}: {computed} computed, {reused} reused")
    timings["embed_tuned"] = time.perf_counter() - t

    results: dict = {"config": {**vars(args), "data": str(args.data), "out": str(args.out), "json": str(args.json),
                                "markdown": str(args.markdown)},
                     "counts": prepared["counts"], "history": history, "best_epoch": best_epoch,
                     "backbone_ids": {"frozen": base.id, "tuned": tuned.id}, "n_train_rows": len(labels)}
    cross = {}
    for name, backbone, model in (("frozen", base, frozen), ("tuned", tuned, tuned_heads)):
        for key in ("hh_target", "llmbar_target"):
            Z, xa, xb = target_logits(store, pools[key], backbone, model)
            result = accuracy_vs_n(store, pools[key], Z, embedding_differences(xa, xb), n_values, args.seeds,
                                   lam=args.lam)
            results[f"{name}/{key}"] = result
            print(format_table(result, title=f"\n{name} backbone, {key}"), flush=True)
            if key == "hh_target":
                cross[name] = cross_table(store, pools[key], Z, xa, xb, model,
                                          n_list=[int(v) for v in args.cross_n.split(",")], seeds=args.seeds,
                                          finetune_seeds=args.finetune_seeds, lam=args.lam)
    results["cross"] = cross
    text = format_cross(cross["frozen"], cross["tuned"])
    print("\nhelpful-base / harmless-base (adapt on one, score on both)\n" + text, flush=True)
    timings["total"] = time.perf_counter() - started
    results["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    log("seconds: " + json.dumps(results["seconds"]))
    path = args.json or out / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    log(f"wrote {path}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_tables(results))
        log(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
