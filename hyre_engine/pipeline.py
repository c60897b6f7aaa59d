"""Pool -> embeddings -> trained ensemble -> cached head predictions Z.

`build_pool` is incremental: embeddings are cached by backbone id and text
hash, an ensemble by its configuration and a fingerprint of its training rows,
and Z per ensemble. Building again with nothing new computes nothing; the
returned `BuildReport` counts what was computed and what was reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hyre_engine import ensemble as ens
from hyre_engine import reweight, training
from hyre_engine.backbone import Backbone, auto_backend, load_backbone
from hyre_engine.diversity import DEFAULT_DISTINCT_THRESHOLD, distinct_heads
from hyre_engine.joint_training import JointTrainingConfig
from hyre_engine.numerics import PAIR_LABELS, label_targets
from hyre_engine.personal import DEFAULT_LAMBDA, embedding_differences
from hyre_engine.personal_prior import (
    DEFAULT_CALIBRATION_RHOS,
    NoPriorDirection,
    PersonalPrior,
    annotator_basis,
    check_rho,
)
from hyre_engine.protocol import beta_scores, calibrate_prior
from hyre_engine.reweight import DEFAULT_BETA
from hyre_engine.stages import BUILD_STAGES, CALIBRATE, EMBED, FINETUNE, PREDICT, TRAIN  # noqa: F401 (the build's stages)
from hyre_engine.store import EnsembleMeta, Store

# Annotator-aware heads: each head trains on the rows of this fraction of the
# training annotators (at least one). None trains every head on every row.
# 0.2 measured on the demo (docs/results.md): HyRe +10 points over uniform at n = 10
# on held-out personas; on POPQUORN 0.05 did best (bench/eval_popquorn.py sweeps it).
DEFAULT_ANNOTATOR_FRACTION: float | None = 0.2


# Fine-tuned backbones live in this folder next to the DuckDB file (their weights are
# too large for a database row, and load_backbone reads folders).
FINETUNED_BACKBONES_DIR = "backbones"

# Pairs whose embedding differences are computed and stored per step: 65,536 x 384
# float32 is 100 MB for each side, so a pool of millions never holds all of them at once.
DIFFERENCES_CHUNK = 65_536

# A progress callback receives (stage, done, total), stage one of BUILD_STAGES.
Progress = Callable[[str, int, int], None]

# ensemble_settings() key of each calibration field of BuildConfig, and its JSON type.
_CALIBRATION_FIELDS = {
    "betas": ("calibration_betas", lambda v: tuple(float(b) for b in v)),
    "n": ("calibration_n", lambda v: tuple(int(n) for n in v)),
    "holdout": ("calibration_holdout", float),
    "seeds": ("calibration_seeds", int),
}


# The BuildConfig fields an ensemble's settings hold as they are (calibration and
# fine-tuning are nested under their own keys): one list for both directions.
MODEL_SETTINGS = ("kind", "n_heads", "hidden", "prior_scale", "annotator_fraction", "seed")


@dataclass
class BuildConfig:
    """What to build for a pool. Defaults follow the paper (K = 100, hidden = 128)."""

    backbone: str | None = None  # None: the embedded all-MiniLM-L6-v2
    kind: str = "shared"
    n_heads: int = ens.DEFAULT_HEADS
    hidden: int = ens.DEFAULT_HIDDEN
    prior_scale: float = ens.DEFAULT_PRIOR_SCALE
    train_groups: list[str] | None = None  # None: every labelled row trains
    annotator_fraction: float | None = DEFAULT_ANNOTATOR_FRACTION
    seed: int = 0
    # Choose beta on held-out training annotators (needs CALIBRATION_MIN_ANNOTATORS).
    calibrate: bool = reweight.DEFAULT_CALIBRATE
    calibration_betas: tuple[float, ...] = reweight.DEFAULT_CALIBRATION_BETAS
    calibration_n: tuple[int, ...] = reweight.DEFAULT_CALIBRATION_N
    calibration_holdout: float = reweight.DEFAULT_CALIBRATION_HOLDOUT
    calibration_seeds: int = reweight.DEFAULT_CALIBRATION_SEEDS
    # Train the backbone together with the heads (hyre_engine.joint_training) instead of
    # training the heads on frozen embeddings; the build then has a new backbone id.
    finetune: JointTrainingConfig | None = None

    @classmethod
    def from_settings(
        cls, settings: dict, *, backbone: str | None = None, train_groups: list[str] | None = None
    ) -> BuildConfig:
        """The config whose ``ensemble_settings()`` are ``settings`` (a stored ensemble's
        ``config``), for ``backbone`` and ``train_groups``: the inverse of
        ``ensemble_settings``. Keys this version does not know are ignored;
        ``reproduces`` tells whether the result gives back ``settings`` exactly."""
        kwargs = {k: v for k, v in settings.items() if k in MODEL_SETTINGS}
        if settings.get("finetune") is not None:
            kwargs["finetune"] = JointTrainingConfig.from_dict(settings["finetune"])
        calibration = settings.get("calibration")
        kwargs["calibrate"] = calibration is not None
        for key, (name, cast) in _CALIBRATION_FIELDS.items():
            if calibration and key in calibration:
                kwargs[name] = cast(calibration[key])
        return cls(backbone=backbone, train_groups=train_groups, **kwargs)

    def reproduces(self, settings: dict) -> bool:
        """Whether this config's ensemble settings are exactly ``settings``."""
        return json.dumps(self.ensemble_settings(), sort_keys=True) == json.dumps(settings, sort_keys=True)

    def ensemble_settings(self) -> dict:
        """What the trained ensemble depends on: the store's ``config`` of it, the key a rebuild finds it by."""
        settings = {name: getattr(self, name) for name in MODEL_SETTINGS}
        if self.calibrate:
            settings["calibration"] = self.calibration_settings()
        if self.finetune is not None:
            settings["finetune"] = self.finetune.to_dict()
        return settings

    def calibration_settings(self) -> dict:
        return {
            "betas": [float(b) for b in self.calibration_betas],
            "n": [int(n) for n in self.calibration_n],
            "holdout": float(self.calibration_holdout),
            "seeds": int(self.calibration_seeds),
        }


@dataclass
class BuildReport:
    pool_id: str
    backbone_id: str
    ensemble_id: str
    n_pairs: int
    n_texts: int
    n_train_rows: int
    embedded: int = 0
    embeddings_reused: int = 0
    trained: bool = False
    predicted: bool = False
    beta: float = DEFAULT_BETA  # the ensemble's reweighting temperature (calibrated or default)
    # The personal head's prior precision (calibrated with beta, or the default).
    lam: float = DEFAULT_LAMBDA
    # The structured prior's strength (calibrated with lambda; 0: the isotropic head).
    rho: float = 0.0
    calibration: dict | None = None
    # Distinct head functions on this pool: clusters of heads correlating > 0.98.
    distinct_heads: int = 0
    # Rows of the pool's embedding differences D computed in this build (the rest were stored).
    differences: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    finetuned: bool = False  # the backbone was fine-tuned with the heads in this build
    finetune_path: str | None = None  # the fine-tuned backbone's folder (load_backbone reads it)

    def summary(self) -> str:
        lines = [
            f"pool {self.pool_id}: {self.n_pairs} pairs, {self.n_texts} texts, "
            f"{self.n_train_rows} training rows",
            f"embeddings: {self.embedded} computed, {self.embeddings_reused} reused "
            f"({self.seconds.get('embed', 0.0):.1f} s)",
            f"ensemble {self.ensemble_id}: "
            + ("trained" if self.trained else "reused")
            + f" ({self.seconds.get('train', 0.0):.1f} s)",
            f"beta {self.beta:g}: " + _describe_calibration(self.calibration),
            f"lambda {self.lam:g} (personal head prior precision): "
            + _describe_lambda(self.calibration),
            "head predictions: "
            + ("computed" if self.predicted else "reused")
            + f" ({self.seconds.get('predict', 0.0):.1f} s)",
            f"embedding differences: {self.differences} rows computed, "
            f"{self.n_pairs - self.differences} reused",
            f"distinct head functions: {self.distinct_heads} "
            f"(heads whose predictions on the pool correlate > {DEFAULT_DISTINCT_THRESHOLD:g} count once)",
        ]
        return "\n".join(lines)


def training_rows(store: Store, pool_id: str, groups: list[str] | None):
    """The labelled rows an ensemble trains on, in a stable order."""
    labels = store.pool_labels(pool_id, groups=groups)
    labels = labels[labels["label"].isin(PAIR_LABELS)]
    if labels.empty:
        wanted = "any group" if groups is None else f"groups {groups}"
        raise ValueError(f"pool {pool_id} has no labelled rows for {wanted} to train on")
    return labels.sort_values(["row_index", "group", "annotator"], kind="stable").reset_index(
        drop=True
    )


def train_fingerprint(labels, backbone_id: str) -> str:
    """A hash of exactly what the ensemble learns from: rows, labels, annotators, backbone."""
    digest = hashlib.sha256(backbone_id.encode())
    for row in labels[["pair_id", "group", "annotator", "label"]].itertuples(index=False):
        digest.update("\x1f".join(map(str, row)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def pair_embeddings(store: Store, backbone_id: str, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of responses A and B of each pair, (n_pairs, dim) each."""
    xa = store.get_embeddings(backbone_id, pairs["hash_a"].tolist())
    xb = store.get_embeddings(backbone_id, pairs["hash_b"].tolist())
    return xa, xb


def build_pool(
    store: Store,
    pool_id: str,
    config: BuildConfig | None = None,
    *,
    backbone: Backbone | None = None,
    progress: Progress | None = None,
    finetune_progress: Callable | None = None,
    show_progress_bar: bool = False,
    defer_calibration: bool = False,
) -> BuildReport:
    """Embed what is new, train (or reuse) the ensemble, and cache its Z for the pool.

    With ``config.finetune`` the backbone trains with the heads first (resumed from the
    last finished epoch of an interrupted build); ``finetune_progress`` receives its
    per-step `joint_training.EpochProgress` and ``show_progress_bar`` draws one tqdm bar
    per epoch on stderr. ``defer_calibration``: a new ensemble is stored with the
    default beta and lambda and its calibration marked pending (``calibration_pending``),
    for ``finish_calibration`` to run later (the app does, in the background).
    """
    config = config or BuildConfig()
    if config.finetune is not None:
        return _build_finetuned(store, pool_id, config, backbone, progress, finetune_progress,
                                show_progress_bar)
    # Many texts with the embedded model on a CPU: ONNX Runtime int8 (backbone.auto_backend).
    backbone = backbone or load_backbone(
        config.backbone, backend=auto_backend(store.pool_text_count(pool_id), config.backbone))
    pairs = store.pool_pairs(pool_id)
    report = _new_report(store, pool_id, pairs, backbone.id)
    _embed_step(store, pool_id, backbone, report, progress)
    ensure_ensemble(store, pool_id, pairs, config, backbone.id, report, progress, defer_calibration=defer_calibration)
    _predict_step(store, pool_id, pairs, backbone.id, report, progress)
    return report


def _new_report(store: Store, pool_id: str, pairs, backbone_id: str) -> BuildReport:
    return BuildReport(pool_id=pool_id, backbone_id=backbone_id, ensemble_id="", n_pairs=len(pairs),
                       n_texts=len(store.pool_texts(pool_id)), n_train_rows=0)


def _embed_step(store: Store, pool_id: str, backbone: Backbone, report: BuildReport,
                progress: Progress | None) -> None:
    """Embed the pool's texts new to ``backbone``; counts and seconds add up over a build's steps."""
    start = time.perf_counter()
    computed, reused = ensure_embeddings(store, pool_id, backbone, progress=progress)
    report.embedded += computed
    report.embeddings_reused += reused
    report.seconds[EMBED] = report.seconds.get(EMBED, 0.0) + time.perf_counter() - start


def _predict_step(store: Store, pool_id: str, pairs, backbone_id: str, report: BuildReport,
                  progress: Progress | None) -> None:
    """Cache the report's ensemble's Z and the backbone's D on the pool; count its distinct head functions."""
    start = time.perf_counter()
    report.predicted = _ensure_predictions(store, report.ensemble_id, pool_id, pairs, backbone_id, progress)
    report.seconds[PREDICT] = time.perf_counter() - start
    finish_pool(store, pool_id, pairs, backbone_id, report)


def finish_pool(store: Store, pool_id: str, pairs, backbone_id: str, report: BuildReport) -> None:
    """After Z: store the pool's D next to it and count the distinct head functions (both engines)."""
    report.differences, _ = ensure_differences(store, pool_id, backbone_id, pairs)
    report.distinct_heads = distinct_heads(store.get_head_predictions(report.ensemble_id, pool_id)).n_distinct


def ensure_ensemble(store: Store, pool_id: str, pairs, config: BuildConfig, backbone_id: str,
                     report: BuildReport, progress: Progress | None, *,
                     trained: Callable[[], ens.Ensemble] | None = None, meta: dict | None = None,
                     defer_calibration: bool = False) -> None:
    """Find the ensemble ``config`` describes on the pool's training rows, or calibrate and
    train it; fills the report's ensemble id, beta, lambda, calibration and counters.

    ``trained()`` gives the model to store when none is found (default: heads trained on
    the frozen embeddings of ``backbone_id``); ``meta``: more to record with it.
    ``defer_calibration``: store a new ensemble with its calibration pending (see
    ``build_pool``); without it, a found ensemble whose calibration is pending is
    calibrated now.
    """
    start = time.perf_counter()
    labels = training_rows(store, pool_id, config.train_groups)
    report.n_train_rows = len(labels)
    fingerprint = train_fingerprint(labels, backbone_id)
    settings = config.ensemble_settings()
    ensemble_id = store.find_ensemble(pool_id, backbone_id, settings, fingerprint)
    if ensemble_id is not None and not defer_calibration:
        _calibrate_now(store, ensemble_id, report, progress)
    if ensemble_id is None:
        calibration = None
        if config.calibrate and defer_calibration:
            calibration = dict(PENDING_CALIBRATION)
        elif config.calibrate:
            cal_start = time.perf_counter()
            calibration = calibrate_beta(store, backbone_id, pairs, labels, config, progress=progress,
                                         pool_id=pool_id)
            report.seconds[CALIBRATE] = time.perf_counter() - cal_start
        model = trained() if trained is not None else train_on_rows(
            store, backbone_id, pairs, labels, config, progress=progress)
        weights, config_json = ens.ensemble_to_bytes(model)
        ensemble_id = ensemble_record_id(model, settings, pool_id)
        store.put_ensemble(
            ensemble_id=ensemble_id, pool_id=pool_id, backbone_id=backbone_id, config=settings,
            weights=weights, train_fingerprint=fingerprint,
            meta=EnsembleMeta.from_json({
                **(meta or {}), "model_config": json.loads(config_json), "train_groups": config.train_groups,
                "beta": (calibration or {}).get("beta", DEFAULT_BETA),
                "lambda": (calibration or {}).get("lambda", DEFAULT_LAMBDA), "calibration": calibration,
            }),
        )
        _store_training_prior(store, ensemble_id, backbone_id, pairs, labels, model, calibration, pool_id=pool_id)
        report.trained = True
    report.ensemble_id = ensemble_id
    stored = store.get_ensemble(ensemble_id, with_weights=False).meta
    report.beta, report.lam, report.calibration = stored.beta, stored.lam_or_default, stored.calibration
    report.rho = stored.rho or 0.0
    report.seconds[TRAIN] = time.perf_counter() - start


# What a deferred calibration records until finish_calibration replaces it.
PENDING_CALIBRATION = {"pending": True}


def calibration_pending(meta: EnsembleMeta | None) -> bool:
    """Whether the ensemble's beta and lambda still wait for a deferred calibration."""
    return meta is not None and bool((meta.calibration or {}).get("pending"))


def finish_calibration(store: Store, ensemble_id: str, *, progress: Progress | None = None) -> EnsembleMeta:
    """Run the calibration a build deferred and store its beta, lambda and scores.

    The same calibration as a build's (``calibrate_beta`` with the ensemble's own
    settings and training rows); an ensemble with nothing pending is left as it is.
    Returns the ensemble's meta afterwards.
    """
    record = store.get_ensemble(ensemble_id, with_weights=False)
    if not calibration_pending(record.meta):
        return record.meta
    groups = None if record.meta.train_groups is None else list(record.meta.train_groups)
    config = BuildConfig.from_settings(record.config, train_groups=groups)
    labels = training_rows(store, record.pool_id, config.train_groups)
    calibration = calibrate_beta(store, record.backbone_id, store.pool_pairs(record.pool_id), labels, config,
                                 progress=progress, pool_id=record.pool_id)
    meta = replace(record.meta, beta=calibration["beta"], lam=calibration.get("lambda", DEFAULT_LAMBDA),
                   calibration=calibration)
    if not calibration_pending(store.get_ensemble(ensemble_id, with_weights=False).meta):
        return store.get_ensemble(ensemble_id, with_weights=False).meta  # another process finished first
    store.set_ensemble_meta(ensemble_id, meta)
    _store_training_prior(store, ensemble_id, record.backbone_id, store.pool_pairs(record.pool_id), labels,
                          load_model(store, ensemble_id), calibration, pool_id=record.pool_id)
    return store.get_ensemble(ensemble_id, with_weights=False).meta


def _calibrate_now(store: Store, ensemble_id: str, report: BuildReport, progress: Progress | None) -> None:
    """A found ensemble whose calibration was deferred: calibrate it in this build."""
    if calibration_pending(store.get_ensemble(ensemble_id, with_weights=False).meta):
        cal_start = time.perf_counter()
        finish_calibration(store, ensemble_id, progress=progress)
        report.seconds[CALIBRATE] = time.perf_counter() - cal_start


def _ensure_predictions(store: Store, ensemble_id: str, pool_id: str, pairs, backbone_id: str,
                        progress: Progress | None) -> bool:
    """Cache the ensemble's Z on every pair of the pool unless it is there; whether it computed."""
    cached = store.get_head_predictions(ensemble_id, pool_id)
    if cached is not None and cached.shape[0] == len(pairs):
        return False
    model = load_model(store, ensemble_id)
    xa, xb = pair_embeddings(store, backbone_id, pairs)
    if progress:
        progress(PREDICT, 0, len(pairs))
    store.put_head_predictions(ensemble_id, pool_id, ens.predict_pairs(model, xa, xb))
    if progress:
        progress(PREDICT, len(pairs), len(pairs))
    return True


def ensure_embeddings(store: Store, pool_id: str, backbone: Backbone, *, progress: Progress | None = None) -> tuple[int, int]:
    """Embed the pool's texts that this backbone has not embedded yet: (computed, reused)."""
    texts = store.pool_texts(pool_id)
    missing = set(store.missing_embeddings(backbone.id, texts["text_hash"].tolist()))
    todo = texts[texts["text_hash"].isin(missing)]
    if len(todo):
        vectors = backbone.embed(
            todo["prompt"].tolist(),
            todo["response"].tolist(),
            progress=(lambda done, total: progress(EMBED, done, total)) if progress else None,
        )
        store.put_embeddings(backbone.id, todo["text_hash"].tolist(), vectors)
    return len(todo), len(texts) - len(todo)


def ensure_differences(store: Store, pool_id: str, backbone_id: str, pairs=None) -> tuple[int, int]:
    """Store D = phi(a) - phi(b) for the pool's pairs that have none yet (the pool only grows,
    so only its new rows are computed): (computed, reused). Needs the pairs' embeddings."""
    pairs = store.pool_pairs(pool_id, with_meta=False) if pairs is None else pairs
    stored = store.n_pair_differences(backbone_id, pool_id)
    if stored >= len(pairs):
        return 0, stored
    # In chunks: a big pool's embeddings of both sides need not be in memory at once.
    for start in range(stored, len(pairs), DIFFERENCES_CHUNK):
        xa, xb = pair_embeddings(store, backbone_id, pairs.iloc[start : start + DIFFERENCES_CHUNK])
        store.append_pair_differences(backbone_id, pool_id, embedding_differences(xa, xb), start=start)
    return len(pairs) - stored, stored


def pool_differences(store: Store, pool_id: str, backbone_id: str) -> np.ndarray:
    """The pool's D (n_pairs, dim) float32 from the store, storing the rows it lacks first."""
    ensure_differences(store, pool_id, backbone_id)
    return store.get_pair_differences(backbone_id, pool_id)


def predict_pool(
    store: Store, ensemble_id: str, pool_id: str, backbone: Backbone, *, progress: Progress | None = None
) -> np.ndarray:
    """Z (n_pairs, n_heads) of an ensemble on any pool, embedding and caching as needed."""
    record = store.get_ensemble(ensemble_id, with_weights=False)
    if record.backbone_id != backbone.id:
        raise ValueError(
            f"ensemble {ensemble_id} was trained on backbone {record.backbone_id}, not {backbone.id}"
        )
    pairs = store.pool_pairs(pool_id)
    cached = store.get_head_predictions(ensemble_id, pool_id)
    if cached is not None and cached.shape[0] == len(pairs):
        return cached
    ensure_embeddings(store, pool_id, backbone, progress=progress)
    _ensure_predictions(store, ensemble_id, pool_id, pairs, backbone.id, None)
    return store.get_head_predictions(ensemble_id, pool_id)


def train_on_rows(store: Store, backbone_id: str, pairs, labels, config: BuildConfig, *, progress=None):
    """Build and fit an ensemble on labelled rows (annotator-aware when annotators are known)."""
    rows = labels["pair_id"].map(pair_rows(pairs)).to_numpy()
    xa_all, xb_all = pair_embeddings(store, backbone_id, pairs)
    xa, xb = xa_all[rows], xb_all[rows]
    y = label_targets(labels["label"].to_numpy()).astype(np.float32)
    model, row_groups = new_ensemble(labels, config, xa.shape[1])
    training.fit_ensemble(
        model,
        task="preference",
        inputs=(xa, xb),
        targets=y,
        row_groups=row_groups,
        seed=config.seed,
        progress=(lambda step, total, loss: progress(TRAIN, step, total)) if progress else None,
    )
    return model


def new_ensemble(labels, config: BuildConfig, input_dim: int):
    """(untrained ensemble, row groups or None) for training rows ``labels``: annotator-aware
    (head x annotator mask) when the config asks for it and there are several annotators."""
    annotators = labels["annotator"].astype(str)
    names = sorted(annotators.unique())
    mask_groups = None
    row_groups = None
    if config.annotator_fraction is not None and len(names) > 1:
        mask_groups = names
        row_groups = np.array(annotators.map({name: i for i, name in enumerate(names)}), dtype=np.int64)
    model = ens.build_ensemble(ens.EnsembleConfig(
        kind=config.kind,
        input_dim=input_dim,
        n_heads=config.n_heads,
        hidden=config.hidden,
        prior_scale=config.prior_scale,
        seed=config.seed,
        mask_groups=mask_groups,
    ))
    if mask_groups is not None:
        mask = ens.make_head_mask(
            config.n_heads, len(names), fraction=config.annotator_fraction, seed=config.seed
        )
        ens.set_head_mask(model, mask)
    return model, row_groups


def ensemble_record_id(model, settings: dict, pool_id: str) -> str:
    """The store id of a trained ensemble: its fingerprint (config, weights, head mask)
    mixed with the pool it belongs to, and with the calibration settings when there
    are any. The pool is part of the id because two pools imported from the same file
    train bit-identical weights: with one shared id the second build would take the
    first pool's ensemble over, and deleting either pool would delete both pools'
    sessions and predictions. A calibrated and an uncalibrated record of the same
    weights do not overwrite each other either."""
    fp = ens.fingerprint(model)
    extra = json.dumps(settings.get("calibration"), sort_keys=True)
    return hashlib.sha256(f"{fp}\0{pool_id}\0{extra}".encode()).hexdigest()[:16]


def calibrate_beta(store: Store, backbone_id: str, pairs, labels, config: BuildConfig, *,
                   progress: Progress | None = None, pool_id: str | None = None) -> dict:
    """Choose beta by simulating adaptation on held-out *training* annotators.

    ``labels`` are the training rows only (``training_rows``): target rows never
    reach this function. A calibration ensemble with ``config``'s settings is
    trained on the other annotators; for each candidate beta, each held-out
    annotator adapts with n labels (n in ``config.calibration_n``, random draws)
    and HyRe's accuracy on its other rows is averaged (``protocol.beta_scores``).
    The best mean wins (ties: the smaller beta; ``reweight.choose_beta``). Returns
    a JSON-safe dict with the chosen ``beta``, the per-beta ``scores`` and the
    held-out annotators; with too few annotators, ``beta`` is DEFAULT_BETA and
    ``skipped`` says why. With ``pool_id`` the personal head's differences are the
    pool's stored D where the store holds it (else they are computed from the embeddings).
    """
    betas = reweight.check_betas(config.calibration_betas)
    annotators = labels["annotator"].astype(str)
    names = sorted(annotators.unique())
    out: dict = {"betas": betas, "n": [int(n) for n in config.calibration_n],
                 "seeds": int(config.calibration_seeds)}
    if len(names) < reweight.CALIBRATION_MIN_ANNOTATORS:
        out.update(beta=DEFAULT_BETA, skipped=f"{len(names)} training annotators, "
                   f"calibration needs {reweight.CALIBRATION_MIN_ANNOTATORS}")
        return out
    held = reweight.holdout_annotators(names, fraction=config.calibration_holdout, seed=config.seed)
    is_held = annotators.isin(held).to_numpy()
    if progress:
        progress(CALIBRATE, 0, len(held))
    model = train_on_rows(store, backbone_id, pairs, labels[~is_held], config)
    index = pair_rows(pairs)
    xa_all, xb_all = pair_embeddings(store, backbone_id, pairs)
    stored = _stored_differences(store, pool_id, backbone_id, len(pairs))
    held_groups = annotator_groups(labels, held, index, model, xa_all, xb_all, stored)
    scores, uniform = beta_scores([(z, y) for z, _, y in held_groups], betas, n_values=config.calibration_n,
                                  seeds=config.calibration_seeds)
    beta = betas[reweight.choose_beta(betas, scores)]
    # lambda and the structured prior's rho at the chosen beta, on the same held-out training
    # annotators, the prior's basis from the other training annotators (never a held-out one).
    others = sorted(set(names) - set(held))
    basis = _basis_or_none(annotator_groups(labels, others, index, model, xa_all, xb_all, stored))
    lam_cal = calibrate_prior(held_groups, beta=beta, basis=basis, rhos=DEFAULT_CALIBRATION_RHOS,
                              n_values=config.calibration_n, seeds=config.calibration_seeds)
    if progress:
        progress(CALIBRATE, len(held), len(held))
    mean = scores.mean(axis=0)
    out.update(
        beta=beta,
        **{"lambda": lam_cal["lam"], "lambda_scores": lam_cal["scores"]},
        rho=lam_cal["rho"],
        rho_scores={r: max(c["scores"].values()) for r, c in lam_cal["by_rho"].items()},
        rho_lambdas={r: c["lam"] for r, c in lam_cal["by_rho"].items()},
        prior_rank=lam_cal["prior_rank"],
        scores={f"{b:g}": round(float(v), 6) for b, v in zip(betas, mean, strict=True)},
        uniform=round(float(uniform.mean()), 6),
        holdout_annotators=held,
        n_train_annotators=len(names) - len(held),
    )
    return out


def annotator_groups(labels, names, index: dict[str, int], model, xa, xb, stored=None) -> list:
    """(Z (n, K), D (n, dim), y (n,)) of each named annotator's rows of ``labels``: Z from
    ``model`` on the pairs' embeddings ``xa``, ``xb`` (n_pairs, dim); D the pool's ``stored``
    differences where given, else computed. ``index`` maps pair_id -> pool row."""
    annotators = labels["annotator"].astype(str).to_numpy()
    groups = []
    for name in names:
        rows = labels[annotators == name]
        idx = rows["pair_id"].map(index).to_numpy()
        groups.append((ens.predict_pairs(model, xa[idx], xb[idx]),
                       embedding_differences(xa[idx], xb[idx]) if stored is None else stored[idx],
                       label_targets(rows["label"].to_numpy())))
    return groups


def _basis_or_none(groups: list) -> tuple[np.ndarray, np.ndarray] | None:
    """The structured prior's basis of these annotators, None with fewer than two of them
    or when their heads span no direction: then only the isotropic head is calibrated."""
    if len(groups) < 2:
        return None
    try:
        return annotator_basis(groups)
    except NoPriorDirection:
        return None


def _store_training_prior(store: Store, ensemble_id: str, backbone_id: str, pairs, labels, model,
                          calibration: dict | None, *, pool_id: str) -> None:
    """When the calibration chose a structured prior (rho > 0), store the prior from *every*
    training annotator over the stored ensemble, then rho in its meta (basis first, so a meta
    with a rho always has its basis); an isotropic choice stores nothing."""
    rho = float((calibration or {}).get("rho") or 0.0)
    if rho == 0.0:
        return
    store.put_prior_basis(ensemble_id, *_training_basis(store, backbone_id, pool_id, pairs, labels, model))
    meta = store.get_ensemble(ensemble_id, with_weights=False).meta
    store.set_ensemble_meta(ensemble_id, replace(meta, rho=rho))


def _training_basis(store: Store, backbone_id: str, pool_id: str, pairs, labels, model):
    """The structured prior's basis (U, e) from every training annotator in ``labels``, over ``model``."""
    names = sorted(labels["annotator"].astype(str).unique())
    xa, xb = pair_embeddings(store, backbone_id, pairs)
    stored = _stored_differences(store, pool_id, backbone_id, len(pairs))
    return annotator_basis(annotator_groups(labels, names, pair_rows(pairs), model, xa, xb, stored))


def ensemble_prior(store: Store, ensemble_id: str, *, rho: float | None = None) -> PersonalPrior | None:
    """The personal head's prior of an ensemble: None for the isotropic head.

    ``rho=None``: the one stored with the ensemble (its calibrated rho and basis; an
    ensemble without, e.g. from before structured priors, is isotropic). A given ``rho``
    overrides it (0: isotropic); an ensemble with no stored basis then gets one from every
    one of its training annotators (stored for next time; its meta's rho is left alone).
    """
    if rho is None:
        return store.personal_prior(ensemble_id)
    rho = check_rho(rho)
    if rho == 0.0:
        return None
    basis = store.get_prior_basis(ensemble_id)
    if basis is None:
        record = store.get_ensemble(ensemble_id, with_weights=False)
        groups = None if record.meta.train_groups is None else list(record.meta.train_groups)
        basis = _training_basis(store, record.backbone_id, record.pool_id, store.pool_pairs(record.pool_id),
                                training_rows(store, record.pool_id, groups), load_model(store, ensemble_id))
        store.put_prior_basis(ensemble_id, *basis)
    return PersonalPrior(basis[0], basis[1], rho)


def _stored_differences(store: Store, pool_id: str | None, backbone_id: str, n_pairs: int) -> np.ndarray | None:
    """The pool's stored D when it covers every pair, else None."""
    if pool_id is None or store.n_pair_differences(backbone_id, pool_id) < n_pairs:
        return None
    return store.get_pair_differences(backbone_id, pool_id)


def _describe_calibration(calibration: dict | None) -> str:
    if not calibration:
        return "default (not calibrated)"
    if calibration.get("pending"):
        return "default for now (calibration pending)"
    if "skipped" in calibration:
        return f"default (calibration skipped: {calibration['skipped']})"
    return (f"calibrated on {len(calibration['holdout_annotators'])} held-out training annotators "
            f"(HyRe accuracy at n={calibration['n']} by beta: {calibration['scores']})")


def same_content(store: Store, pool_id: str, frame) -> bool:
    """Whether a stored pool holds exactly the pairs and judgements of ``frame``.

    Compares texts per pair_id and the multiset of (pair_id, group, annotator,
    label); metadata columns are not compared.
    """
    pairs = store.pool_pairs(pool_id, with_meta=False)
    texts = ["pair_id", "prompt", "response_a", "response_b"]
    new_pairs = frame[texts].drop_duplicates("pair_id")
    if len(pairs) != len(new_pairs):
        return False
    stored = set(map(tuple, pairs[texts].itertuples(index=False, name=None)))
    if stored != set(new_pairs.itertuples(index=False, name=None)):
        return False
    keys = ["pair_id", "group", "annotator", "label"]
    labels = store.pool_labels(pool_id)[keys]
    new_labels = frame[frame["label"].notna()][keys]
    return sorted(labels.itertuples(index=False, name=None)) == sorted(
        new_labels.itertuples(index=False, name=None)
    )


def _describe_lambda(calibration: dict | None) -> str:
    if not calibration or "lambda_scores" not in calibration:
        return "default (not calibrated)"
    text = (f"calibrated at beta {calibration['beta']:g} (personal accuracy by lambda: "
            f"{calibration['lambda_scores']})")
    if "rho_scores" in calibration:
        text += (f"; structured prior rho {calibration['rho']:g} (best accuracy by rho: "
                 f"{calibration['rho_scores']})")
    return text


def pair_rows(pairs) -> dict[str, int]:
    """pair_id -> row index in the pool (the row of Z and of the embeddings)."""
    return dict(zip(pairs["pair_id"], pairs["row_index"], strict=True))


def load_model(store: Store, ensemble_id: str):
    """The stored ensemble, rebuilt from its safetensors weights and JSON config."""
    record = store.get_ensemble(ensemble_id)
    return ens.ensemble_from_bytes(record.weights, json.dumps(record.meta.model_config))


# -- joint fine-tuning of the backbone ---------------------------------------------------


def finetune_folder(store: Store, pool_id: str, base_id: str, settings: dict, fingerprint: str) -> Path:
    """Where the fine-tuned backbone of this build lives: next to the DuckDB file, named by
    what it is trained from, so a rebuild finds it and an interrupted build resumes in it."""
    if store.path == ":memory:":
        raise ValueError("fine-tuning the backbone needs a store in a file: its weights are saved next to it")
    key = hashlib.sha256(
        json.dumps([pool_id, base_id, settings, fingerprint], sort_keys=True).encode()
    ).hexdigest()[:16]
    return Path(store.path).resolve().parent / FINETUNED_BACKBONES_DIR / key


def _build_finetuned(store: Store, pool_id: str, config: BuildConfig, backbone: Backbone | None,
                     progress: Progress | None, finetune_progress, show_progress_bar: bool) -> BuildReport:
    """`build_pool` with the backbone trained jointly with the heads (``config.finetune``)."""
    from hyre_engine import joint_training as jt

    base = _finetune_base(config, backbone)
    pairs = store.pool_pairs(pool_id)
    report = _new_report(store, pool_id, pairs, base.id)
    # 1. the base model's embeddings (cached as for any build): they set the heads' input
    #    statistics and their warm start
    _embed_step(store, pool_id, base, report, progress)
    labels = training_rows(store, pool_id, config.train_groups)
    folder = finetune_folder(store, pool_id, base.id, config.ensemble_settings(),
                             train_fingerprint(labels, base.id))
    report.finetune_path = str(folder)
    # 2. the backbone and heads, trained together (resumed from the last finished epoch)
    start = time.perf_counter()
    if not (folder / jt.FINETUNED_MANIFEST).is_file():
        _finetune(store, pairs, labels, config, base, folder, progress, finetune_progress, show_progress_bar)
        report.finetuned = True
    report.seconds[FINETUNE] = time.perf_counter() - start
    tuned = load_backbone(folder, device=base.device)
    report.backbone_id = tuned.id
    # 3. embeddings under the new backbone id, the jointly trained heads as the ensemble, Z;
    #    beta is calibrated as for a frozen build, with heads trained on the tuned embeddings
    #    of the other annotators: re-running the fine-tuning for it would double the cost
    _embed_step(store, pool_id, tuned, report, progress)
    ensure_ensemble(store, pool_id, pairs, config, tuned.id, report, progress,
                    trained=lambda: jt.load_finetuned_heads(folder),
                    meta={"backbone_path": str(folder), "base_backbone_id": base.id})
    _predict_step(store, pool_id, pairs, tuned.id, report, progress)
    return report


def _finetune_base(config: BuildConfig, backbone: Backbone | None) -> Backbone:
    """The backbone a fine-tuned build starts from; ValueError before anything is embedded
    when it cannot be fine-tuned with ``config.finetune``."""
    from hyre_engine import joint_training as jt

    ft = config.finetune
    base = backbone or load_backbone(config.backbone, max_length=ft.max_length)
    if ft.max_length is not None and base.max_length != ft.max_length:
        raise ValueError(f"the backbone given has a {base.max_length}-token window, the build asks for {ft.max_length}")
    if base.variant:
        raise ValueError(f"{base.id} is already fine-tuned: fine-tune from its base model instead")
    if jt.resolve_mode(base, ft.mode) == "lora":
        jt.lora_targets_for(base, ft.lora_targets)  # a bad target fails before anything is embedded
    return base


def _finetune(store: Store, pairs, labels, config: BuildConfig, base: Backbone, folder: Path,
              progress: Progress | None, finetune_progress, show_progress_bar: bool) -> None:
    """Train a fresh copy of the base backbone with new heads into ``folder`` (`joint_training`)."""
    from hyre_engine import joint_training as jt

    model, row_groups = new_ensemble(labels, config, base.dim)
    rows = labels["pair_id"].map(pair_rows(pairs)).to_numpy()
    xa, xb = pair_embeddings(store, base.id, pairs)
    trainee = load_backbone(config.backbone, max_length=base.max_length, device=base.device)
    data = jt.preference_texts(trainee, pairs, labels, row_groups=row_groups)

    def on_step(p: jt.EpochProgress) -> None:
        if progress:
            progress(FINETUNE, (p.epoch - 1) * p.steps + p.step, p.epochs * p.steps)
        if finetune_progress:
            finetune_progress(p)

    jt.finetune_backbone(trainee, model, data, folder, config.finetune, initial_embeddings=(xa[rows], xb[rows]),
                         progress=on_step, show_progress_bar=show_progress_bar)
