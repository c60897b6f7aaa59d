"""HyRe Studio engine: hypothesis reweighting for personalised reward models.

A pure library: never imports streamlit. See docs/engine.md for the module map.

Every name is imported on first use, the numpy core (numerics, posterior, query
scorers, PCA, the live session) as much as what pulls torch, duckdb, pandas or scipy
(ensembles, training, backbone, store, pipeline, protocol, evaluation, data files),
so ``import hyre_engine`` (and ``python -m hyre_engine --help``) stays fast and light:

    import hyre_engine as he
    w = he.weights_from_losses(losses)   # numpy only
    store = he.Store("x.duckdb")         # imports duckdb now
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Never reach a model hub: every model this project loads is on disk. The one place
# these flags are set: every entry point (app, command line, benchmarks) imports the
# package first; an explicit setting in the environment wins.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"

# name -> module that defines it, imported on first access: nothing is imported with the
# package, so `python -m hyre_engine --help` pays for argparse only (numpy alone is ~0.1-1 s).
_LAZY: dict[str, str] = {
    # the numpy core
    "SCORERS": "hyre_engine.acquisition",
    "PoolScorer": "hyre_engine.acquisition",
    "get_scorer": "hyre_engine.acquisition",
    "select": "hyre_engine.acquisition",
    "LabelEvent": "hyre_engine.live",
    "LiveSession": "hyre_engine.live",
    "LiveSnapshot": "hyre_engine.live",
    "FunctionPCA": "hyre_engine.pca",
    "PersonalPrior": "hyre_engine.personal_prior",
    "DEFAULT_BETA": "hyre_engine.reweight",
    "Posterior": "hyre_engine.reweight",
    "effective_heads": "hyre_engine.reweight",
    "example_losses": "hyre_engine.reweight",
    "log_weights_from_losses": "hyre_engine.reweight",
    "validate_weights": "hyre_engine.reweight",
    "weight_entropy": "hyre_engine.reweight",
    "weighted_probability": "hyre_engine.reweight",
    "weighted_value": "hyre_engine.reweight",
    "weights_from_losses": "hyre_engine.reweight",
    # ensemble.py (torch)
    "Ensemble": "hyre_engine.ensemble",
    "EnsembleConfig": "hyre_engine.ensemble",
    "build_ensemble": "hyre_engine.ensemble",
    "predict_pairs": "hyre_engine.ensemble",
    "save_ensemble": "hyre_engine.ensemble",
    "load_ensemble": "hyre_engine.ensemble",
    "ensemble_to_bytes": "hyre_engine.ensemble",
    "ensemble_from_bytes": "hyre_engine.ensemble",
    "make_head_mask": "hyre_engine.ensemble",
    "set_head_mask": "hyre_engine.ensemble",
    # training.py (torch)
    "TrainReport": "hyre_engine.training",
    "fit_ensemble": "hyre_engine.training",
    "finetune_heads": "hyre_engine.training",
    "finetune_heads_batched": "hyre_engine.training",
    # device.py (torch)
    "pick_device": "hyre_engine.device",
    # backbone.py (torch, sentence-transformers on load)
    "Backbone": "hyre_engine.backbone",
    "BackboneNotFoundError": "hyre_engine.backbone",
    "load_backbone": "hyre_engine.backbone",
    # baselines.py (scipy)
    "fit_convex_weights": "hyre_engine.baselines",
    "best_head_oracle": "hyre_engine.baselines",
    # data.py (pandas, pyarrow)
    "DataError": "hyre_engine.data",
    "read_preferences": "hyre_engine.data",
    "read_preferences_bytes": "hyre_engine.data",
    "preferences_from_records": "hyre_engine.data",
    # store.py (duckdb)
    "Store": "hyre_engine.store",
    "StoreStats": "hyre_engine.store",
    "text_hash": "hyre_engine.store",
    # candidates.py (numpy): queries on pools too big to score whole
    "CandidateSampler": "hyre_engine.candidates",
    # distributed.py (ray, torch, duckdb): the ray build engine
    "RayOptions": "hyre_engine.distributed",
    "build_pool_ray": "hyre_engine.distributed",
    # pipeline.py (torch, duckdb)
    "BuildConfig": "hyre_engine.pipeline",
    "BuildReport": "hyre_engine.pipeline",
    "build_pool": "hyre_engine.pipeline",
    "ensure_embeddings": "hyre_engine.pipeline",
    "predict_pool": "hyre_engine.pipeline",
    # protocol.py (numpy, scipy)
    "METHODS": "hyre_engine.protocol",
    "GroupResult": "hyre_engine.protocol",
    "evaluate_group": "hyre_engine.protocol",
    "summarise": "hyre_engine.protocol",
    "format_table": "hyre_engine.protocol",
    # evaluate.py (torch, duckdb)
    "evaluate_pools": "hyre_engine.evaluate",
    "import_file": "hyre_engine.evaluate",
    # demo.py (numpy; ensure_demo imports the pipeline when called)
    "ensure_demo": "hyre_engine.demo",
    "Persona": "hyre_engine.demo",
    "load_personas": "hyre_engine.demo",
    "load_responses": "hyre_engine.demo",
    "generate_pairs": "hyre_engine.demo",
    # cli.py
    "main": "hyre_engine.cli",
}

# Submodules reachable as attributes (hyre_engine.store, ...) without an explicit import.
_SUBMODULES = frozenset(
    {
        "acquisition", "backbone", "baselines", "candidates", "cli", "data", "demo", "device",
        "distributed", "ensemble", "evaluate", "experiments", "live", "numerics", "pca", "pipeline", "profiles", "protocol",
        "reweight", "store", "training",
    }
)

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
