"""The first launch: the shipped demo built by the server, started with the server.

A fresh install has no ensemble, so the Label page cannot open until the demo pool is
imported and built (its texts embedded, the heads trained, Z cached). That build is a
server job (hyre_engine.jobs, kind FIRST_LAUNCH): one per database, whoever asks first
(`python app.py` as the server starts, else the first page run); every tab, after a
reload too, follows the same job. Beta's calibration is deferred: the job ends once Z
is stored and leaves the calibration to a job of its own, after the Label page opens.

This module imports nothing heavy (no torch, duckdb or pandas): the app asks
`current` before its own heavy imports, so the first-launch screen is drawn at once,
and the job imports the build stack on its own thread. Started with the server, those
imports, the model load and the embedding overlap Streamlit's start and the browser's
first connection instead of following them.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from hyre_engine import jobs
from hyre_engine.demo import DEMO_POOL_NAME
from hyre_engine.jobs import FIRST_LAUNCH, IMPORT, LOAD, Job, JobRunner
from hyre_engine.locations import default_db_path
from hyre_engine.stages import EMBED, PREDICT, TRAIN

log = logging.getLogger(__name__)

# The first launch's stages: the demo pool imported, the model loaded, then the build
# with its calibration deferred.
STAGES = (IMPORT, LOAD, EMBED, TRAIN, PREDICT)


def latest(path: str | None = None, *, registry: jobs.JobRegistry | None = None) -> Job | None:
    """The newest first-launch job of the database at ``path`` (running or ended), or None."""
    return (registry or jobs.REGISTRY).latest(path or default_db_path(), FIRST_LAUNCH)


def start(path: str | None = None, *, backbone: Callable[[], object] | None = None, config=None,
          registry: jobs.JobRegistry | None = None) -> Job:
    """The running first-launch job of the database at ``path``, or a new one.

    ``backbone()`` (on the job's thread) gives the model to embed with, default the
    embedded MiniLM; ``config`` the demo's `pipeline.BuildConfig` (default
    `demo.ensure_demo`'s). Whatever is already stored is reused (an interrupted first
    launch picks up where it stopped).
    """
    path = path or default_db_path()
    job = Job(job_id=jobs.new_job_id(), db_path=path, pool_id="", pool_name=DEMO_POOL_NAME,
              settings={}, stages=STAGES, started_by="", started_at=time.time(), kind=FIRST_LAUNCH)
    return (registry or jobs.REGISTRY).submit(job, _work(path, backbone, config))


def current(path: str | None = None, *, registry: jobs.JobRegistry | None = None,
            backbone: Callable[[], object] | None = None, config=None) -> Job | None:
    """What the app shows instead of its pages, decided without the heavy imports: the
    first-launch job that runs or failed (a failure waits for a person to try again, it
    is not retried on every page run), or a new one when the database file does not exist
    yet (a fresh install; ``backbone`` and ``config`` as in `start`); None otherwise (the
    pages then look in the store)."""
    path = path or default_db_path()
    job = latest(path, registry=registry)
    if job is not None and job.status != jobs.DONE:
        return job
    if not os.path.exists(path):
        return start(path, registry=registry, backbone=backbone, config=config)
    return None


def warm_start(path: str | None = None, *, imports: Sequence[str] = ()) -> threading.Thread:
    """At the server's start: the first launch when the database file does not exist yet,
    then ``imports`` (the app's heavy modules) on a daemon thread, so the first page run
    finds them loaded. Returns that thread."""
    current(path)

    def load() -> None:
        for name in imports:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the page imports it again and shows the error there
                log.exception("warm start: importing %s failed", name)

    thread = threading.Thread(target=load, name="hyre-warm-imports", daemon=True)
    thread.start()
    return thread


def _work(path: str, backbone: Callable[[], object] | None, config) -> Callable[[JobRunner], dict]:
    def work(runner: JobRunner) -> dict:
        from hyre_engine.demo import ensure_demo, import_demo_pool
        from hyre_engine.store import shared_store

        runner.progress(IMPORT, 0, 1)
        store = shared_store(path)
        pool_id = import_demo_pool(store)
        runner.set(pool_id=pool_id)
        runner.progress(IMPORT, 1, 1)
        runner.progress(LOAD, 0, 1)
        model = backbone() if backbone is not None else _default_backbone(
            store, pool_id, None if config is None else config.backbone)
        runner.progress(LOAD, 1, 1)
        report = ensure_demo(store, config=config, backbone=model, progress=runner.progress,
                             defer_calibration=True)
        jobs.calibrate_in_background(store, report.ensemble_id, registry=runner.registry)
        return jobs.report_fields(report)

    return work


def _default_backbone(store, pool_id: str, name: str | None):
    """The model to build the demo with. With the default model, the demo's shipped vectors
    (`demo_embeddings`) go into the store first; when they cover every text, the model is
    only deferred (`backbone.DeferredBackbone`): nothing is embedded, so it never loads."""
    from hyre_engine import demo_embeddings
    from hyre_engine.backbone import DeferredBackbone, default_backbone_id, load_backbone

    backbone_id = default_backbone_id() if name is None else None
    if backbone_id is not None:
        try:
            demo_embeddings.seed(store, pool_id, backbone_id)
        except ValueError:  # a damaged file: the build embeds the texts itself
            log.exception("first launch: the shipped demo embeddings are not usable")
        if not store.missing_embeddings(backbone_id, store.pool_texts(pool_id)["text_hash"].tolist()):
            return DeferredBackbone(backbone_id, lambda: load_backbone(None))
    return load_backbone(name)

