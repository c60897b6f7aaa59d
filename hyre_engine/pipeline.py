"""Pool -> embeddings -> trained ensemble -> cached head predictions Z.

`build_pool` is incremental: embeddings are cached by backbone id and text
hash, an ensemble by its configuration and a fingerprint of its training rows,
and Z per ensemble. Building again with nothing new computes nothing; the
returned `BuildReport` counts what was computed and what was reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hyre_engine import ensemble as ens
from hyre_engine.backbone import Backbone, load_backbone
from hyre_engine.reweight import DEFAULT_BETA
from hyre_engine.store import Store

# Annotator-aware heads: each head trains on the rows of this fraction of the
# training annotators (at least one). None trains every head on every row.
# 0.2 measured on the demo (issue 7, docs/results.md): HyRe +10 points over uniform at
# n = 10 on held-out personas; the POPQUORN reference used 0.05 (the engine's
# POPQUORN sweep is bench/eval_popquorn.py).
DEFAULT_ANNOTATOR_FRACTION: float | None = 0.2

# Beta calibration (issue 7): hold out this fraction of the training annotators
# (at least CALIBRATION_MIN_HOLDOUT), train a calibration ensemble on the others
# with the same settings, and pick the beta whose HyRe accuracy after
# CALIBRATION_N labels is best on the held-out annotators' other rows.
DEFAULT_CALIBRATE = True
# Temperatures tried: 0.5-8 spans "one error barely moves a head" to "one error
# all but removes it" (exp(-8) = 3e-4) for the 0-1 loss.
DEFAULT_CALIBRATION_BETAS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
# The few-label regime HyRe is for, and the target n = 10.
DEFAULT_CALIBRATION_N = (5, 10)
DEFAULT_CALIBRATION_HOLDOUT = 0.15
CALIBRATION_MIN_HOLDOUT = 2
# Fewer annotators than this: too few to both hold some out and train on the rest.
CALIBRATION_MIN_ANNOTATORS = 5
# Adaptation draws per held-out annotator: the per-beta scores average over
# annotators x draws x n, which is plenty for choosing on a coarse grid.
DEFAULT_CALIBRATION_SEEDS = 5
# Offset of the holdout draw from the ensemble seed, so the held-out annotators
# are not tied to the head x annotator mask drawn from the same seed.
_HOLDOUT_SEED_OFFSET = 7919

# A progress callback receives (stage, done, total); stages are "embed",
# "calibrate", "train" and "predict".
Progress = Callable[[str, int, int], None]


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
    calibrate: bool = DEFAULT_CALIBRATE
    calibration_betas: tuple[float, ...] = DEFAULT_CALIBRATION_BETAS
    calibration_n: tuple[int, ...] = DEFAULT_CALIBRATION_N
    calibration_holdout: float = DEFAULT_CALIBRATION_HOLDOUT
    calibration_seeds: int = DEFAULT_CALIBRATION_SEEDS

    def ensemble_settings(self) -> dict:
        settings = {
            "kind": self.kind,
            "n_heads": self.n_heads,
            "hidden": self.hidden,
            "prior_scale": self.prior_scale,
            "annotator_fraction": self.annotator_fraction,
            "seed": self.seed,
        }
        if self.calibrate:
            settings["calibration"] = self.calibration_settings()
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
    calibration: dict | None = None
    seconds: dict[str, float] = field(default_factory=dict)

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
            "head predictions: "
            + ("computed" if self.predicted else "reused")
            + f" ({self.seconds.get('predict', 0.0):.1f} s)",
        ]
        return "\n".join(lines)


def training_rows(store: Store, pool_id: str, groups: list[str] | None):
    """The labelled rows an ensemble trains on, in a stable order."""
    labels = store.pool_labels(pool_id, groups=groups)
    labels = labels[labels["label"].isin(["a", "b"])]
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
) -> BuildReport:
    """Embed what is new, train (or reuse) the ensemble, and cache its Z for the pool."""
    config = config or BuildConfig()
    backbone = backbone or load_backbone(config.backbone)
    pairs = store.pool_pairs(pool_id)
    texts = store.pool_texts(pool_id)
    report = BuildReport(
        pool_id=pool_id,
        backbone_id=backbone.id,
        ensemble_id="",
        n_pairs=len(pairs),
        n_texts=len(texts),
        n_train_rows=0,
    )

    # 1. embeddings of the texts not seen by this backbone before
    start = time.perf_counter()
    report.embedded, report.embeddings_reused = ensure_embeddings(
        store, pool_id, backbone, progress=progress
    )
    report.seconds["embed"] = time.perf_counter() - start

    # 2. the ensemble, trained on the training rows unless an identical one exists
    start = time.perf_counter()
    labels = training_rows(store, pool_id, config.train_groups)
    report.n_train_rows = len(labels)
    fingerprint = train_fingerprint(labels, backbone.id)
    settings = config.ensemble_settings()
    ensemble_id = store.find_ensemble(pool_id, backbone.id, settings, fingerprint)
    if ensemble_id is None:
        calibration = None
        if config.calibrate:
            cal_start = time.perf_counter()
            calibration = calibrate_beta(store, backbone.id, pairs, labels, config, progress=progress)
            report.seconds["calibrate"] = time.perf_counter() - cal_start
        model = train_on_rows(store, backbone.id, pairs, labels, config, progress=progress)
        weights, config_json = ens.ensemble_to_bytes(model)
        ensemble_id = ensemble_record_id(model, settings)
        store.put_ensemble(
            ensemble_id=ensemble_id,
            pool_id=pool_id,
            backbone_id=backbone.id,
            config=settings,
            weights=weights,
            train_fingerprint=fingerprint,
            meta={
                "model_config": json.loads(config_json),
                "train_groups": config.train_groups,
                "beta": DEFAULT_BETA if calibration is None else calibration["beta"],
                "calibration": calibration,
            },
        )
        report.trained = True
    report.ensemble_id = ensemble_id
    meta = store.get_ensemble(ensemble_id)["meta"]
    report.beta = float(meta.get("beta", DEFAULT_BETA))
    report.calibration = meta.get("calibration")
    report.seconds["train"] = time.perf_counter() - start

    # 3. head predictions Z on every pair of the pool
    start = time.perf_counter()
    cached = store.get_head_predictions(ensemble_id, pool_id)
    if cached is None or cached.shape[0] != len(pairs):
        model = load_model(store, ensemble_id)
        xa, xb = pair_embeddings(store, backbone.id, pairs)
        if progress:
            progress("predict", 0, len(pairs))
        logits = ens.predict_pairs(model, xa, xb)
        store.put_head_predictions(ensemble_id, pool_id, logits)
        if progress:
            progress("predict", len(pairs), len(pairs))
        report.predicted = True
    report.seconds["predict"] = time.perf_counter() - start
    return report


def ensure_embeddings(store: Store, pool_id: str, backbone: Backbone, *, progress: Progress | None = None) -> tuple[int, int]:
    """Embed the pool's texts that this backbone has not embedded yet: (computed, reused)."""
    texts = store.pool_texts(pool_id)
    missing = set(store.missing_embeddings(backbone.id, texts["text_hash"].tolist()))
    todo = texts[texts["text_hash"].isin(missing)]
    if len(todo):
        vectors = backbone.embed(
            todo["prompt"].tolist(),
            todo["response"].tolist(),
            progress=(lambda done, total: progress("embed", done, total)) if progress else None,
        )
        store.put_embeddings(backbone.id, todo["text_hash"].tolist(), vectors)
    return len(todo), len(texts) - len(todo)


def predict_pool(
    store: Store, ensemble_id: str, pool_id: str, backbone: Backbone, *, progress: Progress | None = None
) -> np.ndarray:
    """Z (n_pairs, n_heads) of an ensemble on any pool, embedding and caching as needed."""
    record = store.get_ensemble(ensemble_id)
    if record["backbone_id"] != backbone.id:
        raise ValueError(
            f"ensemble {ensemble_id} was trained on backbone {record['backbone_id']}, not {backbone.id}"
        )
    cached = store.get_head_predictions(ensemble_id, pool_id)
    pairs = store.pool_pairs(pool_id)
    if cached is not None and cached.shape[0] == len(pairs):
        return cached
    ensure_embeddings(store, pool_id, backbone, progress=progress)
    model = load_model(store, ensemble_id)
    xa, xb = pair_embeddings(store, backbone.id, pairs)
    logits = ens.predict_pairs(model, xa, xb)
    store.put_head_predictions(ensemble_id, pool_id, logits)
    return logits


def train_on_rows(store: Store, backbone_id: str, pairs, labels, config: BuildConfig, *, progress=None):
    """Build and fit an ensemble on labelled rows (annotator-aware when annotators are known)."""
    index = pd_index(pairs)
    rows = labels["pair_id"].map(index).to_numpy()
    xa_all, xb_all = pair_embeddings(store, backbone_id, pairs)
    xa, xb = xa_all[rows], xb_all[rows]
    y = (labels["label"] == "a").to_numpy().astype(np.float32)

    annotators = labels["annotator"].astype(str)
    names = sorted(annotators.unique())
    mask_groups = None
    row_groups = None
    if config.annotator_fraction is not None and len(names) > 1:
        mask_groups = names
        row_groups = np.array(annotators.map({name: i for i, name in enumerate(names)}), dtype=np.int64)
    model_config = ens.EnsembleConfig(
        kind=config.kind,
        input_dim=xa.shape[1],
        n_heads=config.n_heads,
        hidden=config.hidden,
        prior_scale=config.prior_scale,
        seed=config.seed,
        mask_groups=mask_groups,
    )
    model = ens.build_ensemble(model_config)
    if mask_groups is not None:
        mask = ens.make_head_mask(
            config.n_heads, len(names), fraction=config.annotator_fraction, seed=config.seed
        )
        ens.set_head_mask(model, mask)
    ens.fit_ensemble(
        model,
        task="preference",
        inputs=(xa, xb),
        targets=y,
        row_groups=row_groups,
        seed=config.seed,
        progress=(lambda step, total, loss: progress("train", step, total)) if progress else None,
    )
    return model


def ensemble_record_id(model, settings: dict) -> str:
    """The store id of a trained ensemble: its fingerprint (config, weights, head mask),
    mixed with the calibration settings when there are any, so a calibrated and an
    uncalibrated record of the same weights do not overwrite each other."""
    fp = ens.fingerprint(model)
    if "calibration" not in settings:
        return fp
    extra = json.dumps(settings["calibration"], sort_keys=True)
    return hashlib.sha256(f"{fp}\0{extra}".encode()).hexdigest()[:16]


def holdout_annotators(names: list[str], *, fraction: float, seed: int) -> list[str]:
    """The training annotators held out for calibration: a seeded subset, sorted.

    At least CALIBRATION_MIN_HOLDOUT, and at least two annotators are left to train on.
    """
    names = sorted(set(map(str, names)))
    if not 0 < fraction < 1:
        raise ValueError(f"calibration holdout must be in (0, 1), got {fraction}")
    if len(names) < CALIBRATION_MIN_ANNOTATORS:
        raise ValueError(
            f"calibration needs at least {CALIBRATION_MIN_ANNOTATORS} annotators, got {len(names)}"
        )
    count = min(max(CALIBRATION_MIN_HOLDOUT, round(fraction * len(names))), len(names) - 2)
    rng = np.random.default_rng(seed + _HOLDOUT_SEED_OFFSET)
    return sorted(names[i] for i in rng.choice(len(names), size=count, replace=False))


def calibrate_beta(store: Store, backbone_id: str, pairs, labels, config: BuildConfig, *,
                   progress: Progress | None = None) -> dict:
    """Choose beta by simulating adaptation on held-out *training* annotators.

    ``labels`` are the training rows only (``training_rows``): target rows never
    reach this function. A calibration ensemble with ``config``'s settings is
    trained on the other annotators; for each candidate beta, each held-out
    annotator adapts with n labels (n in ``config.calibration_n``, random draws)
    and HyRe's accuracy on its other rows is averaged. The best mean wins (ties:
    the smaller beta). Returns a JSON-safe dict with the chosen ``beta``, the
    per-beta ``scores`` and the held-out annotators; with too few annotators,
    ``beta`` is DEFAULT_BETA and ``skipped`` says why.
    """
    from hyre_engine.evaluate import evaluate_group

    betas = sorted({float(b) for b in config.calibration_betas})
    if not betas or min(betas) <= 0:
        raise ValueError(f"calibration betas must be positive, got {config.calibration_betas}")
    annotators = labels["annotator"].astype(str)
    names = sorted(annotators.unique())
    out: dict = {"betas": betas, "n": [int(n) for n in config.calibration_n],
                 "seeds": int(config.calibration_seeds)}
    if len(names) < CALIBRATION_MIN_ANNOTATORS:
        out.update(beta=DEFAULT_BETA, skipped=f"{len(names)} training annotators, "
                   f"calibration needs {CALIBRATION_MIN_ANNOTATORS}")
        return out
    held = holdout_annotators(names, fraction=config.calibration_holdout, seed=config.seed)
    is_held = annotators.isin(held).to_numpy()
    if progress:
        progress("calibrate", 0, len(held))
    model = train_on_rows(store, backbone_id, pairs, labels[~is_held], config)
    index = pd_index(pairs)
    xa_all, xb_all = pair_embeddings(store, backbone_id, pairs)
    scores = np.zeros((len(held), len(betas)))
    uniform = np.zeros(len(held))
    for i, name in enumerate(held):
        rows = labels[(annotators == name).to_numpy()]
        idx = rows["pair_id"].map(index).to_numpy()
        y = (rows["label"] == "a").to_numpy().astype(np.float64)
        logits = ens.predict_pairs(model, xa_all[idx], xb_all[idx])
        for j, beta in enumerate(betas):
            result = evaluate_group(logits, y, n_values=config.calibration_n,
                                    seeds=config.calibration_seeds, methods=["uniform", "hyre"], beta=beta)
            scores[i, j] = float(np.mean(result.methods["hyre"]["mean"]))
            uniform[i] = float(np.mean(result.methods["uniform"]["mean"]))
        if progress:
            progress("calibrate", i + 1, len(held))
    mean = scores.mean(axis=0)
    best = int(np.flatnonzero(mean >= mean.max() - 1e-12)[0])
    out.update(
        beta=betas[best],
        scores={f"{b:g}": round(float(v), 6) for b, v in zip(betas, mean, strict=True)},
        uniform=round(float(uniform.mean()), 6),
        holdout_annotators=held,
        n_train_annotators=len(names) - len(held),
    )
    return out


def _describe_calibration(calibration: dict | None) -> str:
    if not calibration:
        return "default (not calibrated)"
    if "skipped" in calibration:
        return f"default (calibration skipped: {calibration['skipped']})"
    return (f"calibrated on {len(calibration['holdout_annotators'])} held-out training annotators "
            f"(HyRe accuracy at n={calibration['n']} by beta: {calibration['scores']})")


def pd_index(pairs) -> dict[str, int]:
    return dict(zip(pairs["pair_id"], pairs["row_index"], strict=True))


def load_model(store: Store, ensemble_id: str):
    record = store.get_ensemble(ensemble_id)
    return ens.ensemble_from_bytes(record["weights"], json.dumps(record["meta"]["model_config"]))


# -- command line ---------------------------------------------------------------


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which store and which ensemble (shared by `build` and `evaluate`)."""
    parser.add_argument("--db", help="DuckDB file (default: $HYRE_DB or data/hyre.duckdb)")
    parser.add_argument("--backbone", help="local model folder (default: embedded all-MiniLM-L6-v2)")
    parser.add_argument("--kind", default="shared", choices=list(ens.KINDS))
    parser.add_argument("--heads", type=int, default=ens.DEFAULT_HEADS)
    parser.add_argument("--hidden", type=int, default=ens.DEFAULT_HIDDEN)
    parser.add_argument("--prior-scale", type=float, default=ens.DEFAULT_PRIOR_SCALE)
    parser.add_argument(
        "--annotator-fraction",
        type=float,
        default=DEFAULT_ANNOTATOR_FRACTION,
        help="fraction of training annotators each head sees (0 or less: all rows for every head)",
    )
    parser.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep beta at its default instead of calibrating it on held-out training annotators",
    )
    parser.add_argument("--seed", type=int, default=0)


def config_from_args(args: argparse.Namespace, *, train_groups: list[str] | None = None) -> BuildConfig:
    """The BuildConfig that `add_ensemble_arguments`' options describe."""
    fraction = args.annotator_fraction
    return BuildConfig(
        backbone=args.backbone,
        kind=args.kind,
        n_heads=args.heads,
        hidden=args.hidden,
        prior_scale=args.prior_scale,
        train_groups=train_groups,
        annotator_fraction=fraction if fraction and fraction > 0 else None,
        seed=args.seed,
        calibrate=not args.no_calibrate,
    )


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="import a preference file, embed it, train the ensemble and cache its predictions",
        description="Import a preference file into the store (or reuse it), embed its texts, "
        "train the ensemble on its training rows and cache the head predictions Z.",
    )
    parser.add_argument("--pool", required=True, type=Path, help="preference file (JSONL/CSV/Parquet)")
    parser.add_argument("--name", help="pool name in the store (default: the file's stem)")
    parser.add_argument("--format", default="auto", help="auto, design, hh-rlhf, llmbar, ratings")
    parser.add_argument(
        "--train-groups", help="comma-separated groups whose rows train the ensemble (default: all)"
    )
    add_ensemble_arguments(parser)
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyre_engine.data import read_preferences
    from hyre_engine.store import DEFAULT_DB_PATH

    store = Store(args.db or DEFAULT_DB_PATH)
    name = args.name or args.pool.stem.split(".")[0]
    existing = store.list_pools()
    if name in set(existing["name"]):
        pool_id = store.get_pool(name)["pool_id"]
        print(f"pool '{name}' already in the store: reusing it")
    else:
        frame = read_preferences(args.pool, format=args.format)
        pool_id = store.add_pool(name, frame, source=str(args.pool))
        print(f"imported {len(frame)} rows from {args.pool} as pool '{name}'")
    config = config_from_args(
        args, train_groups=args.train_groups.split(",") if args.train_groups else None
    )
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="it", leave=True)
        bar.n = done
        bar.refresh()

    report = build_pool(store, pool_id, config, progress=progress)
    for bar in bars.values():
        bar.close()
    print(report.summary())
    print(json.dumps({k: v for k, v in asdict(report).items() if k != "seconds"}))
    return 0


# -- the demo pool: what a fresh clone opens on --------------------------------------

DEMO_POOL_NAME = "demo"
# The demo ensemble trains on the crowd's labels only: the personas held out of
# the crowd are users it never saw on their own.
DEMO_TRAIN_GROUPS = ["crowd"]


def ensure_demo(
    store: Store,
    *,
    config: BuildConfig | None = None,
    backbone: Backbone | None = None,
    pairs_path: Path | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Import the shipped demo pool if needed and build its ensemble and Z (cached)."""
    from hyre_engine.data import read_preferences
    from hyre_engine.demo import DEMO_DIR

    pools = store.list_pools()
    if len(pools) and DEMO_POOL_NAME in set(pools["name"]):
        pool_id = store.get_pool(DEMO_POOL_NAME)["pool_id"]
    else:
        path = pairs_path or DEMO_DIR / "pairs.jsonl"
        pool_id = store.add_pool(DEMO_POOL_NAME, read_preferences(path), source=str(path))
    config = config or BuildConfig(train_groups=DEMO_TRAIN_GROUPS)
    return build_pool(store, pool_id, config, backbone=backbone, progress=progress)
