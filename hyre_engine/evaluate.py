"""Evaluating pools and files: train (or reuse) an ensemble, then the accuracy-vs-n protocol.

`evaluate_pools` builds the ensemble on a training pool, predicts a target pool
and runs `protocol.evaluate_group` on every target group; `import_file` brings a
preference file into the store under a name derived from its content. The
`evaluate` command (cli.py) is these two functions, files in and JSON out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hyre_engine import ensemble as ens
from hyre_engine import training
from hyre_engine.backbone import Backbone, load_backbone
from hyre_engine.numerics import PAIR_LABELS, label_targets
from hyre_engine.personal import DEFAULT_LAMBDA
from hyre_engine.pipeline import (
    BUILD_STAGES,
    BuildConfig,
    build_pool,
    load_model,
    pair_embeddings,
    pool_differences,
    predict_pool,
)
from hyre_engine.protocol import (
    ALL_METHODS,
    DEFAULT_N,
    DEFAULT_SEEDS,
    GroupResult,
    evaluate_group,
    summarise,
)
from hyre_engine.store import EnsembleMeta, Store

# The stages evaluate_pools reports: the build's, then one step per target group.
EVALUATE = "evaluate"
EVALUATE_STAGES = (*BUILD_STAGES, EVALUATE)


def import_file(store: Store, path: Path, *, format: str = "auto", name: str | None = None) -> str:
    """Import a preference file as a pool named after its content (re-imports reuse it)."""
    from hyre_engine.data import read_preferences

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]
    name = name or f"{Path(path).name.split('.')[0]}-{digest}"
    pools = store.list_pools()
    if len(pools) and name in set(pools["name"]):
        return store.get_pool(name).pool_id
    return store.add_pool(name, read_preferences(path, format=format), source=str(path))


@dataclass
class _Target:
    """What every target group is evaluated against: the target pool's cached arrays."""

    logits: np.ndarray  # (n_pairs, n_heads) the ensemble's Z on the target pool
    single: np.ndarray | None  # (n_pairs,) the one-head model's margins, if asked for
    model: ens.Ensemble | None  # the ensemble itself, for fine-tuning, if asked for
    xa: np.ndarray  # (n_pairs, dim) embeddings of response A
    xb: np.ndarray
    diffs: np.ndarray  # (n_pairs, dim) the stored D = xa - xb (pipeline.pool_differences)


def _beta_of(meta: EnsembleMeta, beta: float | None) -> tuple[float, str]:
    """The reweighting temperature to use and where it came from."""
    if beta is not None:
        return beta, "given"
    source = "calibrated" if (meta.calibration or {}).get("scores") else "default"
    return meta.beta, source


def _lam_of(meta: EnsembleMeta, lam: float | None) -> tuple[float, str]:
    """The personal head's prior precision: given, else the ensemble's stored one, else the default."""
    if lam is not None:
        return float(lam), "given"
    if meta.lam is not None:
        return meta.lam, "ensemble"
    return DEFAULT_LAMBDA, "default"


def _single_logits(store: Store, train_pool: str, target_pool: str, config: BuildConfig,
                   backbone: Backbone) -> np.ndarray:
    """The one-head baseline: the same settings with K = 1, no mask, no calibration."""
    single_config = replace(config, n_heads=1, annotator_fraction=None, calibrate=False)
    report = build_pool(store, train_pool, single_config, backbone=backbone)
    return predict_pool(store, report.ensemble_id, target_pool, backbone)[:, 0]


def _finetune_for(target: _Target, idx: np.ndarray, y: np.ndarray):
    """The protocol's fine-tuning callable for one group (rows ``idx`` of the target pool):
    every adaptation set of the group (all seeds and n) fine-tuned in one batched model."""

    def finetune(adapt_sets: list[np.ndarray]) -> np.ndarray:
        return training.finetune_heads_batched(
            target.model, task="preference", inputs=(target.xa[idx], target.xb[idx]), targets=y,
            adapt=adapt_sets,
        )

    return finetune if target.model is not None else None


def _evaluate_groups(store: Store, target_pool: str, target: _Target, names: Sequence[str] | None,
                     progress, **protocol) -> dict[str, GroupResult]:
    """Run the protocol on every target group with at least 2 labelled rows."""
    labels = store.pool_labels(target_pool)
    labels = labels[labels["label"].isin(PAIR_LABELS)]
    names = sorted(labels["group"].unique()) if names is None else list(names)
    groups: dict[str, GroupResult] = {}
    for i, name in enumerate(names):
        rows = labels[labels["group"] == name]
        if len(rows) >= 2:
            idx = rows["row_index"].to_numpy()
            y = label_targets(rows["label"].to_numpy())
            groups[name] = evaluate_group(
                target.logits[idx], y,
                single=None if target.single is None else target.single[idx],
                diffs=target.diffs[idx],
                finetune=_finetune_for(target, idx, y), **protocol,
            )
        if progress:
            progress(EVALUATE, i + 1, len(names))
    return groups


def evaluate_pools(
    store: Store,
    train_pool: str,
    target_pool: str,
    *,
    config: BuildConfig | None = None,
    n_values: Sequence[int] = DEFAULT_N,
    seeds: int = DEFAULT_SEEDS,
    strategy: str = "random",
    loss: str = "zero-one",
    beta: float | None = None,
    lam: float | None = None,
    methods: Sequence[str] = ALL_METHODS,
    target_groups: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    backbone: Backbone | None = None,
) -> dict:
    """Train (or reuse) the ensemble on ``train_pool``, then evaluate every target group.

    ``beta=None`` uses the ensemble's stored beta (calibrated on held-out training
    annotators when the build calibrated it); ``backbone`` defaults to ``config.backbone``.
    Returns the JSON contract of ``protocol.summarise`` plus what produced it.
    """
    config = config or BuildConfig()
    backbone = backbone or load_backbone(config.backbone)
    started = time.perf_counter()
    report = build_pool(store, train_pool, config, backbone=backbone, progress=progress)
    settings = config.ensemble_settings()
    if report.finetune_path is not None:
        # the ensemble's own backbone, fine-tuned with it, embeds the targets; the one-head
        # baseline trains on its frozen embeddings rather than fine-tuning a second time
        backbone = load_backbone(report.finetune_path, device=backbone.device)
        config = replace(config, finetune=None, backbone=report.finetune_path)
    meta = store.get_ensemble(report.ensemble_id, with_weights=False).meta
    beta, beta_source = _beta_of(meta, beta)
    lam, lam_source = _lam_of(meta, lam)
    # predict_pool embeds the target pool's texts, so it runs before reading its embeddings.
    logits = predict_pool(store, report.ensemble_id, target_pool, backbone, progress=progress)
    xa, xb = pair_embeddings(store, backbone.id, store.pool_pairs(target_pool))
    target = _Target(
        logits=logits,
        single=_single_logits(store, train_pool, target_pool, config, backbone) if "single" in methods else None,
        model=load_model(store, report.ensemble_id) if "finetune" in methods else None,
        xa=xa, xb=xb, diffs=pool_differences(store, target_pool, backbone.id),
    )
    groups = _evaluate_groups(store, target_pool, target, target_groups, progress, n_values=n_values,
                              seeds=seeds, strategy=strategy, loss=loss, beta=beta, lam=lam,
                              methods=methods)
    result = summarise(n_values, groups)
    result.update(
        {
            "ensemble_id": report.ensemble_id,
            "backbone_id": backbone.id,
            "strategy": strategy,
            "loss": loss,
            "beta": beta,
            "beta_source": beta_source,
            "lambda": lam,
            "lambda_source": lam_source,
            "calibration": meta.calibration,
            "seeds": seeds,
            "config": settings,
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return result
