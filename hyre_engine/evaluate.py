"""Evaluating pools and files: train (or reuse) an ensemble, then the accuracy-vs-n protocol.

`evaluate_pools` builds the ensemble on a training pool, predicts a target pool
and runs `protocol.evaluate_group` on every target group; `import_file` brings a
preference file into the store under a name derived from its content. The
`evaluate` command (cli.py) is these two functions, files in and JSON out.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hyre_engine import ensemble as ens
from hyre_engine import training
from hyre_engine.backbone import Backbone, auto_backend, load_backbone
from hyre_engine.numerics import PAIR_LABELS, label_targets
from hyre_engine.personal import DEFAULT_LAMBDA
from hyre_engine.pipeline import (
    BUILD_STAGES,
    BuildConfig,
    build_pool,
    ensemble_prior,
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

# The stages evaluate_pools reports: the build's, then fine-tuning the heads (TUNE_UNITS
# per target group, however many steps and chunks a group's fine-tuning takes) and the
# protocol itself (one step per target group and seed).
TUNE, EVALUATE = "tune", "evaluate"
EVALUATE_STAGES = (*BUILD_STAGES, TUNE, EVALUATE)
TUNE_UNITS = 100


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


@dataclass
class _Group:
    """One target group as the protocol sees it: all a worker process needs besides the model."""

    name: str
    logits: np.ndarray  # (n_rows, n_heads)
    y: np.ndarray  # (n_rows,)
    single: np.ndarray | None  # (n_rows,)
    xa: np.ndarray  # (n_rows, dim)
    xb: np.ndarray
    diffs: np.ndarray  # (n_rows, dim)


def _target_groups(store: Store, target_pool: str, target: _Target, names: Sequence[str] | None) -> list[_Group]:
    """Every target group (``names``, default all) with at least 2 labelled rows, by name."""
    labels = store.pool_labels(target_pool)
    labels = labels[labels["label"].isin(PAIR_LABELS)]
    names = sorted(labels["group"].unique()) if names is None else list(names)
    groups = []
    for name in names:
        rows = labels[labels["group"] == name]
        if len(rows) >= 2:
            idx = rows["row_index"].to_numpy()
            groups.append(_Group(name=name, logits=target.logits[idx], y=label_targets(rows["label"].to_numpy()),
                                 single=None if target.single is None else target.single[idx],
                                 xa=target.xa[idx], xb=target.xb[idx], diffs=target.diffs[idx]))
    return groups


def _run_group(group: _Group, model: ens.Ensemble | None, protocol: dict, *, stride: int, progress=None,
               tune_progress=None) -> GroupResult:
    """The protocol on one group; fine-tuning (when ``model``) batches all its seeds and n,
    on the time grid ``stride`` (training.coarse_adam)."""

    def finetune(adapt_sets: list[np.ndarray]) -> np.ndarray:
        return training.finetune_heads_batched(model, task="preference", inputs=(group.xa, group.xb),
                                               targets=group.y, adapt=adapt_sets, progress=tune_progress,
                                               stride=stride)

    return evaluate_group(group.logits, group.y, single=group.single, diffs=group.diffs,
                          finetune=finetune if model is not None else None, progress=progress, **protocol)


def _group_progress(progress, g: int, n_groups: int, seeds: int):
    """(per-seed, per-fine-tuning-step) callbacks placing group ``g`` in the whole run."""
    if progress is None:
        return None, None
    return (lambda done, _seeds: progress(EVALUATE, g * seeds + done, n_groups * seeds),
            lambda step, steps, _loss: progress(TUNE, g * TUNE_UNITS + step * TUNE_UNITS // steps,
                                                n_groups * TUNE_UNITS))


def _run_serial(groups: list[_Group], model, protocol: dict, progress, stride: int) -> dict[str, GroupResult]:
    """Group after group in this process: progress per seed, and per fine-tuning step."""
    results = {}
    for g, group in enumerate(groups):
        report, tune = _group_progress(progress, g, len(groups), protocol["seeds"])
        results[group.name] = _run_group(group, model, protocol, stride=stride, progress=report, tune_progress=tune)
        if progress is not None and model is not None:
            progress(TUNE, (g + 1) * TUNE_UNITS, len(groups) * TUNE_UNITS)  # also when no fold had labels
    return results


# A worker process's fine-tuning model, rebuilt once from safetensors bytes (no pickle of weights).
_WORKER: dict = {}


def _init_worker(state: tuple[bytes, str] | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["model"] = None if state is None else ens.ensemble_from_bytes(*state)


def _worker_group(group: _Group, protocol: dict, stride: int) -> GroupResult:
    return _run_group(group, _WORKER["model"], protocol, stride=stride)


@contextlib.contextmanager
def _bare_main():
    """Start spawned workers with an empty ``__main__``.

    A spawned process first re-runs the parent's main script when it is a file (not
    ``python -m``). Under Streamlit, or after a Streamlit AppTest in the same process,
    that file is app.py, whose top level builds the demo: two workers did so at once and
    died (PoolExistsError), breaking the pool. The workers need only this module.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _run_parallel(groups: list[_Group], model, protocol: dict, progress, stride: int,
                  jobs: int) -> dict[str, GroupResult]:
    """Groups on ``jobs`` spawned processes (torch threads split between them); progress per group."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    state = None if model is None else ens.ensemble_to_bytes(model)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    results, seeds = {}, protocol["seeds"]
    with ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(state, threads)) as pool:
        with _bare_main():  # the workers start as the tasks are submitted
            futures = {pool.submit(_worker_group, group, protocol, stride): group.name for group in groups}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                if model is not None:
                    progress(TUNE, done * TUNE_UNITS, len(groups) * TUNE_UNITS)
                progress(EVALUATE, done * seeds, len(groups) * seeds)
    return results


def _evaluate_groups(store: Store, target_pool: str, target: _Target, names: Sequence[str] | None,
                     progress, *, jobs: int = 1, stride: int = 1, **protocol) -> dict[str, GroupResult]:
    """Run the protocol on every target group with at least 2 labelled rows (by name)."""
    if jobs < 1 or stride < 1:
        raise ValueError(f"jobs and the fine-tuning stride must be >= 1, got {jobs} and {stride}")
    groups = _target_groups(store, target_pool, target, names)
    run = _run_parallel if jobs > 1 and len(groups) > 1 else _run_serial
    results = run(groups, target.model, protocol, progress, stride, *([jobs] if run is _run_parallel else []))
    return {group.name: results[group.name] for group in groups}


def _default_backbone(store: Store, train_pool: str, target_pool: str, config: BuildConfig) -> Backbone:
    """config.backbone, on the backend its build would pick for both pools' texts (auto_backend)."""
    n_texts = store.pool_text_count(train_pool) + store.pool_text_count(target_pool)
    return load_backbone(config.backbone, backend=auto_backend(n_texts, config.backbone))


def _prepare(store: Store, train_pool: str, target_pool: str, config: BuildConfig, backbone: Backbone,
             methods: Sequence[str], progress):
    """Build (or reuse) the ensemble and cache what the groups need: (report, backbone, target)."""
    report = build_pool(store, train_pool, config, backbone=backbone, progress=progress)
    if report.finetune_path is not None:
        # the ensemble's own backbone, fine-tuned with it, embeds the targets; the one-head
        # baseline trains on its frozen embeddings rather than fine-tuning a second time
        backbone = load_backbone(report.finetune_path, device=backbone.device)
        config = replace(config, finetune=None, backbone=report.finetune_path)
    # predict_pool embeds the target pool's texts, so it runs before reading its embeddings.
    logits = predict_pool(store, report.ensemble_id, target_pool, backbone, progress=progress)
    xa, xb = pair_embeddings(store, backbone.id, store.pool_pairs(target_pool))
    target = _Target(
        logits=logits,
        single=_single_logits(store, train_pool, target_pool, config, backbone) if "single" in methods else None,
        model=load_model(store, report.ensemble_id) if "finetune" in methods else None,
        xa=xa, xb=xb, diffs=pool_differences(store, target_pool, backbone.id),
    )
    return report, backbone, target


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
    rho: float | None = None,
    methods: Sequence[str] = ALL_METHODS,
    target_groups: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    backbone: Backbone | None = None,
    jobs: int = 1,
    finetune_stride: int = training.DEFAULT_FINETUNE_STRIDE,
) -> dict:
    """Train (or reuse) the ensemble on ``train_pool``, then evaluate every target group.

    ``beta=None`` uses the ensemble's stored beta (calibrated on held-out training
    annotators when the build calibrated it), ``lam=None`` and ``rho=None`` its personal
    head's stored prior (``pipeline.ensemble_prior``; a given rho overrides it); ``backbone`` defaults to ``config.backbone``.
    ``jobs`` > 1 evaluates groups on that many processes (the same results).
    ``finetune_stride``: the fine-tuning baseline's Adam time grid (``training.coarse_adam``;
    1 runs its 100 steps one by one).
    ``progress(stage, done, total)``: the build's stages, then TUNE (fine-tuning,
    TUNE_UNITS per group) and EVALUATE (groups x seeds). Returns the JSON contract of
    ``protocol.summarise`` plus what produced it.
    """
    config = config or BuildConfig()
    settings = config.ensemble_settings()
    started = time.perf_counter()
    report, backbone, target = _prepare(store, train_pool, target_pool, config,
                                        backbone or _default_backbone(store, train_pool, target_pool, config),
                                        methods, progress)
    meta = store.get_ensemble(report.ensemble_id, with_weights=False).meta
    beta, beta_source = _beta_of(meta, beta)
    lam, lam_source = _lam_of(meta, lam)
    prior = ensemble_prior(store, report.ensemble_id, rho=rho)
    rho_source = "given" if rho is not None else ("ensemble" if meta.rho is not None else "default")
    groups = _evaluate_groups(store, target_pool, target, target_groups, progress, jobs=jobs, stride=finetune_stride,
                              n_values=n_values, seeds=seeds, strategy=strategy, loss=loss, beta=beta, lam=lam,
                              methods=methods, prior=prior)
    result = summarise(n_values, groups)
    result.update({
        "ensemble_id": report.ensemble_id, "backbone_id": backbone.id, "strategy": strategy, "loss": loss,
        "beta": beta, "beta_source": beta_source, "lambda": lam, "lambda_source": lam_source,
        "rho": 0.0 if prior is None else prior.rho, "rho_source": rho_source,
        "prior_rank": 0 if prior is None else prior.rank,
        "calibration": meta.calibration, "seeds": seeds, "config": settings,
        "finetune": {"steps": training.DEFAULT_FINETUNE_STEPS, "lr": training.DEFAULT_FINETUNE_LR,
                     "stride": finetune_stride} if "finetune" in methods else None,
        "seconds": round(time.perf_counter() - started, 2),
    })
    return result
