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
from hyre_engine.store import Store

# Annotator-aware heads: each head trains on the rows of this fraction of the
# training annotators (at least one). None trains every head on every row.
# Chosen by the POPQUORN / demo evaluation recorded in docs/results.md.
DEFAULT_ANNOTATOR_FRACTION: float | None = 0.2

# A progress callback receives (stage, done, total); stages are "embed",
# "train" and "predict".
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

    def ensemble_settings(self) -> dict:
        return {
            "kind": self.kind,
            "n_heads": self.n_heads,
            "hidden": self.hidden,
            "prior_scale": self.prior_scale,
            "annotator_fraction": self.annotator_fraction,
            "seed": self.seed,
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
        model = train_on_rows(store, backbone.id, pairs, labels, config, progress=progress)
        weights, config_json = ens.ensemble_to_bytes(model)
        ensemble_id = ens.fingerprint(model)
        store.put_ensemble(
            ensemble_id=ensemble_id,
            pool_id=pool_id,
            backbone_id=backbone.id,
            config=settings,
            weights=weights,
            train_fingerprint=fingerprint,
            meta={"model_config": json.loads(config_json), "train_groups": config.train_groups},
        )
        report.trained = True
    report.ensemble_id = ensemble_id
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
        row_groups = annotators.map({name: i for i, name in enumerate(names)}).to_numpy()
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


def pd_index(pairs) -> dict[str, int]:
    return dict(zip(pairs["pair_id"], pairs["row_index"], strict=True))


def load_model(store: Store, ensemble_id: str):
    record = store.get_ensemble(ensemble_id)
    return ens.ensemble_from_bytes(record["weights"], json.dumps(record["meta"]["model_config"]))


# -- command line ---------------------------------------------------------------


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
    parser.add_argument("--db", help="DuckDB file (default: $HYRE_DB or data/hyre.duckdb)")
    parser.add_argument("--backbone", help="local model folder (default: embedded all-MiniLM-L6-v2)")
    parser.add_argument("--kind", default="shared", choices=["shared", "epinet", "vanilla"])
    parser.add_argument("--heads", type=int, default=ens.DEFAULT_HEADS)
    parser.add_argument("--hidden", type=int, default=ens.DEFAULT_HIDDEN)
    parser.add_argument("--prior-scale", type=float, default=ens.DEFAULT_PRIOR_SCALE)
    parser.add_argument(
        "--train-groups", help="comma-separated groups whose rows train the ensemble (default: all)"
    )
    parser.add_argument(
        "--annotator-fraction",
        type=float,
        default=DEFAULT_ANNOTATOR_FRACTION,
        help="fraction of training annotators each head sees (0 or less: all rows for every head)",
    )
    parser.add_argument("--seed", type=int, default=0)
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
    fraction = args.annotator_fraction if args.annotator_fraction and args.annotator_fraction > 0 else None
    config = BuildConfig(
        backbone=args.backbone,
        kind=args.kind,
        n_heads=args.heads,
        hidden=args.hidden,
        prior_scale=args.prior_scale,
        train_groups=args.train_groups.split(",") if args.train_groups else None,
        annotator_fraction=fraction,
        seed=args.seed,
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
