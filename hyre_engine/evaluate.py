"""The accuracy-vs-n protocol: adapt to each target group with n labels, score the rest.

For every target group and seed, n adaptation rows are drawn (at random, or
chosen one by one with an acquisition strategy under the current weights) and
every method is scored on the group's remaining rows. `evaluate_group` works on
cached arrays; `evaluate_files` is the `evaluate` command: files in, the JSON
contract of DESIGN.md out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hyre_engine import baselines
from hyre_engine.acquisition import PoolScorer, select
from hyre_engine.reweight import (
    DEFAULT_BETA,
    Posterior,
    effective_heads,
    weight_entropy,
    weights_from_losses,
)

DEFAULT_N = (0, 1, 5, 10, 20)
DEFAULT_SEEDS = 20
STRATEGIES = ("random", "entropy", "bald")
LOSSES = ("zero-one", "cross-entropy")
# Methods that need only the cached head predictions of the group.
ARRAY_METHODS = ("uniform", "hyre", "convex", "best_head_oracle")
ALL_METHODS = ("single", "uniform", "hyre", "convex", "finetune", "best_head_oracle")

# finetune(adapt_rows, seed) -> logits (n_rows, n_heads) of the fine-tuned heads on the group
Finetune = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class GroupResult:
    n_examples: int
    methods: dict[str, dict[str, list[float]]]
    effective_heads: dict[str, list[float]] = field(default_factory=dict)
    # Shannon entropy (nats) of HyRe's weights at each n: log K when uniform, 0 on one head.
    weight_entropy: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "n_examples": self.n_examples,
            "methods": self.methods,
            "effective_heads": self.effective_heads,
            "weight_entropy": self.weight_entropy,
        }


def adaptation_order(
    logits: np.ndarray,
    y: np.ndarray,
    n_max: int,
    *,
    strategy: str,
    beta: float,
    loss: str,
    seed: int,
) -> np.ndarray:
    """The first ``n_max`` rows a user would label, in order.

    Random draws them uniformly; an active strategy picks each next row by its
    score under the weights after the previous labels (the paper's protocol).
    """
    n_rows, n_heads = logits.shape
    n_max = min(n_max, n_rows - 1)
    rng = np.random.default_rng(seed)
    if strategy == "random" or n_max <= 0:
        return rng.permutation(n_rows)[: max(n_max, 0)]
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    scorer = PoolScorer(logits)
    posterior = Posterior(n_heads, beta=beta, loss=loss)
    chosen: list[int] = []
    for step in range(n_max):
        scores = scorer.score(strategy, posterior.weights, rng=rng)
        item = int(select(scores, 1, exclude=np.array(chosen, dtype=np.int64), seed=seed + step)[0])
        chosen.append(item)
        posterior.add(logits[item][None, :].astype(np.float64), y[item : item + 1])
    return np.array(chosen, dtype=np.int64)


def evaluate_group(
    logits: np.ndarray,
    y: np.ndarray,
    *,
    n_values: Sequence[int] = DEFAULT_N,
    seeds: int = DEFAULT_SEEDS,
    strategy: str = "random",
    loss: str = "zero-one",
    beta: float = DEFAULT_BETA,
    single: np.ndarray | None = None,
    finetune: Finetune | None = None,
    methods: Sequence[str] = ALL_METHODS,
) -> GroupResult:
    """Accuracy of each method against n on one target group.

    logits: (n_rows, n_heads) head margins on the group's rows; y: (n_rows,) in
    {0, 1}; single: (n_rows,) a one-head model's margins (method ``single``);
    finetune: returns fine-tuned heads' logits given the adaptation rows.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if logits.ndim != 2 or y.shape != (logits.shape[0],):
        raise ValueError(f"logits (n_rows, n_heads) and y (n_rows,) expected, got {logits.shape} and {y.shape}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    n_rows, n_heads = logits.shape
    n_values = [int(n) for n in n_values]
    if min(n_values) < 0:
        raise ValueError(f"n values must be >= 0, got {n_values}")
    if n_rows < 2:
        raise ValueError(f"a target group needs at least 2 rows, got {n_rows}")
    methods = [m for m in methods if (m != "single" or single is not None) and (m != "finetune" or finetune is not None)]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {', '.join(ALL_METHODS)}")

    acc = {m: np.full((seeds, len(n_values)), np.nan) for m in methods}
    eff = np.full((seeds, len(n_values)), np.nan)
    ent = np.full((seeds, len(n_values)), np.nan)
    per_example = _example_losses(logits, y, loss)
    p_heads = baselines_sigmoid(logits)
    for seed in range(seeds):
        order = adaptation_order(
            logits, y, max(n_values), strategy=strategy, beta=beta, loss=loss, seed=seed
        )
        for j, n in enumerate(n_values):
            adapt = order[: min(n, len(order))]
            rest = np.setdiff1d(np.arange(n_rows), adapt)
            y_rest = y[rest]
            w = weights_from_losses(per_example[adapt].sum(axis=0), beta=beta)
            eff[seed, j] = effective_heads(w)
            ent[seed, j] = weight_entropy(w)
            for m in methods:
                if m == "uniform":
                    prob = p_heads[rest].mean(axis=1)
                elif m == "hyre":
                    prob = p_heads[rest] @ w
                elif m == "convex":
                    cw = baselines.fit_convex_weights(logits[adapt], y[adapt])
                    prob = p_heads[rest] @ cw
                elif m == "best_head_oracle":
                    _, best = baselines.best_head_oracle(logits[rest], y_rest)
                    acc[m][seed, j] = best
                    continue
                elif m == "single":
                    prob = baselines_sigmoid(single[rest])
                elif m == "finetune":
                    tuned = finetune(adapt, seed) if len(adapt) else logits
                    prob = baselines_sigmoid(np.asarray(tuned, dtype=np.float64)[rest]).mean(axis=1)
                acc[m][seed, j] = baselines.accuracy(prob, y_rest)
    return GroupResult(
        n_examples=n_rows,
        methods={
            m: {"mean": _round(np.nanmean(a, axis=0)), "std": _round(np.nanstd(a, axis=0))}
            for m, a in acc.items()
        },
        effective_heads={"mean": _round(eff.mean(axis=0)), "std": _round(eff.std(axis=0))},
        weight_entropy={"mean": _round(ent.mean(axis=0)), "std": _round(ent.std(axis=0))},
    )


def summarise(n_values: Sequence[int], groups: dict[str, GroupResult]) -> dict:
    """The JSON contract: per-group results plus the mean over groups of each group's mean."""
    methods = sorted({m for g in groups.values() for m in g.methods})
    summary = {}
    for m in methods:
        means = np.array([g.methods[m]["mean"] for g in groups.values() if m in g.methods])
        summary[m] = {"mean": _round(means.mean(axis=0)), "std_over_groups": _round(means.std(axis=0))}
    return {
        "n": list(n_values),
        "groups": {name: g.to_json() for name, g in groups.items()},
        "summary": summary,
    }


def format_table(result: dict, *, title: str = "") -> str:
    """A readable table of the summary: one row per method, one column per n."""
    n_values = result["n"]
    lines = [title] if title else []
    header = f"{'method':<18}" + "".join(f"{'n=' + str(n):>9}" for n in n_values)
    lines += [header, "-" * len(header)]
    for method, stats in result["summary"].items():
        lines.append(f"{method:<18}" + "".join(f"{v:>9.3f}" for v in stats["mean"]))
    for key, label, fmt in (("effective_heads", "(effective heads)", ".1f"),
                            ("weight_entropy", "(weight entropy)", ".2f")):
        rows = [g[key]["mean"] for g in result["groups"].values() if g.get(key)]
        if rows:
            mean_row = np.mean(np.array(rows), axis=0)
            lines.append(f"{label:<18}" + "".join(f"{v:>9{fmt}}" for v in mean_row))
    return "\n".join(lines)


def baselines_sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def _example_losses(logits: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    from hyre_engine.reweight import example_losses

    return example_losses(logits, y, loss=loss)


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


# -- files in, JSON out (the `evaluate` command) -------------------------------------


def import_file(store, path: Path, *, format: str = "auto", name: str | None = None) -> str:
    """Import a preference file as a pool named after its content (re-imports reuse it)."""
    import hashlib

    from hyre_engine.data import read_preferences

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]
    name = name or f"{Path(path).name.split('.')[0]}-{digest}"
    pools = store.list_pools()
    if len(pools) and name in set(pools["name"]):
        return store.get_pool(name)["pool_id"]
    return store.add_pool(name, read_preferences(path, format=format), source=str(path))


def evaluate_pools(
    store,
    train_pool: str,
    target_pool: str,
    *,
    config=None,
    n_values: Sequence[int] = DEFAULT_N,
    seeds: int = DEFAULT_SEEDS,
    strategy: str = "random",
    loss: str = "zero-one",
    beta: float | None = None,
    methods: Sequence[str] = ALL_METHODS,
    target_groups: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    backbone=None,
) -> dict:
    """Train (or reuse) the ensemble on ``train_pool``, then evaluate every target group.

    ``beta=None`` uses the ensemble's stored beta (calibrated on held-out training
    annotators when the build calibrated it); ``backbone`` defaults to ``config.backbone``.
    """
    from hyre_engine import ensemble as ens
    from hyre_engine.backbone import load_backbone
    from hyre_engine.pipeline import (
        BuildConfig,
        build_pool,
        load_model,
        pair_embeddings,
        predict_pool,
    )

    config = config or BuildConfig()
    backbone = backbone or load_backbone(config.backbone)
    started = time.perf_counter()
    report = build_pool(store, train_pool, config, backbone=backbone, progress=progress)
    logits = predict_pool(store, report.ensemble_id, target_pool, backbone, progress=progress)
    meta = store.get_ensemble(report.ensemble_id)["meta"]
    beta_source = "given"
    if beta is None:
        beta = float(meta.get("beta", DEFAULT_BETA))
        beta_source = "calibrated" if (meta.get("calibration") or {}).get("scores") else "default"

    single_logits = None
    if "single" in methods:
        single_config = BuildConfig(
            **{**config.__dict__, "n_heads": 1, "annotator_fraction": None, "calibrate": False}
        )
        single_report = build_pool(store, train_pool, single_config, backbone=backbone)
        single_logits = predict_pool(store, single_report.ensemble_id, target_pool, backbone)[:, 0]

    model = load_model(store, report.ensemble_id) if "finetune" in methods else None
    pairs = store.pool_pairs(target_pool)
    xa, xb = pair_embeddings(store, backbone.id, pairs)
    labels = store.pool_labels(target_pool)
    labels = labels[labels["label"].isin(["a", "b"])]
    names = sorted(labels["group"].unique()) if target_groups is None else list(target_groups)
    groups: dict[str, GroupResult] = {}
    for i, name in enumerate(names):
        rows = labels[labels["group"] == name]
        if len(rows) < 2:
            continue
        idx = rows["row_index"].to_numpy()
        y = (rows["label"] == "a").to_numpy().astype(np.float64)

        def finetune(adapt: np.ndarray, seed: int, idx=idx, y=y) -> np.ndarray:
            tuned = baselines.finetune_heads(
                model, task="preference", inputs=(xa[idx[adapt]], xb[idx[adapt]]),
                targets=y[adapt], seed=seed,
            )
            return ens.predict_pairs(tuned, xa[idx], xb[idx])

        groups[name] = evaluate_group(
            logits[idx],
            y,
            n_values=n_values,
            seeds=seeds,
            strategy=strategy,
            loss=loss,
            beta=beta,
            single=None if single_logits is None else single_logits[idx],
            finetune=finetune if model is not None else None,
            methods=methods,
        )
        if progress:
            progress("evaluate", i + 1, len(names))
    result = summarise(n_values, groups)
    result.update(
        {
            "ensemble_id": report.ensemble_id,
            "backbone_id": backbone.id,
            "strategy": strategy,
            "loss": loss,
            "beta": beta,
            "beta_source": beta_source,
            "calibration": meta.get("calibration"),
            "seeds": seeds,
            "config": config.ensemble_settings(),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return result


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    from hyre_engine.pipeline import add_ensemble_arguments

    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy vs number of labels for every group of a target file",
        description="Train the ensemble on --train (aggregate), then for every group of --target "
        "adapt with n labels and measure accuracy on the group's other rows.",
    )
    parser.add_argument("--train", required=True, type=Path)
    parser.add_argument("--target", required=True, type=Path)
    parser.add_argument("--format", default="auto", help="format of both files (auto, design, hh-rlhf, llmbar, ratings)")
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_N)), help="comma-separated numbers of labels")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
    parser.add_argument("--strategy", default="random", choices=STRATEGIES)
    parser.add_argument("--loss", default="zero-one", choices=LOSSES, help="reweighting loss")
    parser.add_argument("--beta", type=float, help="reweighting temperature (default: the ensemble's)")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    add_ensemble_arguments(parser)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    from hyre_engine.pipeline import config_from_args
    from hyre_engine.store import DEFAULT_DB_PATH, Store

    n_values = [int(v) for v in args.n.split(",") if v.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {', '.join(ALL_METHODS)}")
    store = Store(args.db or DEFAULT_DB_PATH)
    train_pool = import_file(store, args.train, format=args.format)
    target_pool = import_file(store, args.target, format=args.format)
    config = config_from_args(args)
    result = evaluate_pools(
        store, train_pool, target_pool, config=config, n_values=n_values, seeds=args.seeds,
        strategy=args.strategy, loss=args.loss, beta=args.beta, methods=methods,
    )
    print(format_table(result, title=f"{len(result['groups'])} target groups, {args.seeds} seeds, "
                       f"strategy {args.strategy}, beta {result['beta']:g} ({result['beta_source']})"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0
