"""The paper's experiments, reproduced: ``python -m hyre_engine repro NAME``.

- ``finetune``: HyRe vs fine-tuning vs the uniform ensemble as target labels grow.
- ``labelers``: a crowd of conflicting labelers; prior scale vs coverage; held-out labelers.
- ``gp``: 1-D GP regression; the principal components of the heads' functions; RMSE vs n.
- ``uci``: Energy, Kin8nm and CCPP with the OOD split (data folder: --data or $HYRE_UCI_DIR).

Every ``run_*`` returns a JSON-safe dict; experiments without groups put their
methods under ``summary`` as ``{"method": {"mean": [...], "std": [...]}}`` aligned
with ``n``, the shape of the ``evaluate`` command's summary. Standard deviations are
over seeds. Importing this package is light; each experiment imports torch when run.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hyre_engine.experiments.common import (
    DEFAULT_SEEDS,
    EXPERIMENTS,
    REPRO_THREADS,
    UCI_DEFAULT_SEEDS,
    UCI_DIR_ENV_VAR,
    Log,
    quiet,
)

__all__ = [
    "DEFAULT_SEEDS",
    "EXPERIMENTS",
    "REPRO_THREADS",
    "UCI_DEFAULT_SEEDS",
    "UCI_DIR_ENV_VAR",
    "format_table",
    "run_experiment",
]


def run_experiment(name: str, *, seeds: int | None = None, quick: bool = False,
                   data_dir: str | Path | None = None, html_path: str | Path | None = None,
                   log: Log | None = None) -> dict:
    """Run one experiment by name (``EXPERIMENTS``); ``data_dir`` is uci's data folder."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    log = log or quiet
    module = importlib.import_module(f"hyre_engine.experiments.{name}")
    if name == "uci":
        return module.run_uci(data_dir, seeds=seeds or UCI_DEFAULT_SEEDS, quick=quick, log=log)
    seeds = seeds or DEFAULT_SEEDS
    if name == "gp":
        return module.run_gp(seeds=seeds, quick=quick, html_path=html_path, log=log)
    return getattr(module, f"run_{name}")(seeds=seeds, quick=quick, log=log)


def format_table(result: dict) -> str:
    """A readable text table of any experiment's result."""
    from hyre_engine.experiments.report import format_table as table

    return table(result)
