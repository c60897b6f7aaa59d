"""Builds that belong to the process, not to whoever started them: a registry of jobs.

The app starts a build here (`start_build`) and returns at once; the build runs on a
daemon thread of the server process, so it goes on when the browser tab that started
it closes or reloads, and every tab reads its progress from the same registry
(`REGISTRY.jobs`). Each job reports what it does now (stage, done / total), one
overall fraction that only grows, and how it ended: ``done`` with the build's report,
or ``failed`` with a plain message (the traceback goes to the server log, never to a
page).

- One build per pool and database at a time: `start_build` refuses a second one with
  `BuildRunningError`, naming the running job.
- The store is shared as usual (store/lease.py): the build holds it only during each
  of its reads and writes (one transaction each), never across the embedding or the
  training, so people labelling in the same or another process take turns with it.
- A failed build writes nothing half: every write is one committed transaction, and
  what is complete (embeddings, a trained ensemble) is reused by the next build.
- The registry lives as long as the process: a server restart forgets finished jobs
  and ends running ones (a fine-tuning resumes from its last finished epoch).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from hyre_engine.pipeline import (
    BUILD_STAGES,
    CALIBRATE,
    EMBED,
    FINETUNE,
    PREDICT,
    TRAIN,
    BuildConfig,
    build_pool,
)

log = logging.getLogger(__name__)

# Before the pipeline's own stages: loading the backbone (tens of seconds on a cold CPU).
LOAD = "load"
JOB_STAGES = (LOAD, *BUILD_STAGES)
RUNNING, DONE, FAILED = "running", "done", "failed"
STATUSES = (RUNNING, DONE, FAILED)
# Share of the overall fraction per stage (renormalised over the stages a build has):
# embedding dominates a CPU build, then training; fine-tuning, when asked, most of all.
STAGE_WEIGHTS = {LOAD: 0.05, EMBED: 0.4, CALIBRATE: 0.15, FINETUNE: 1.0, TRAIN: 0.3, PREDICT: 0.1}
# Finished jobs kept for the pages to show, newest first (running ones are always kept).
KEEP_FINISHED = 20


class BuildRunningError(RuntimeError):
    """A build of this pool is already running in this process."""


@dataclass(frozen=True)
class Job:
    """One build as the pages see it: an immutable snapshot (`JobRegistry.get` gives the latest)."""

    job_id: str
    db_path: str
    pool_id: str
    pool_name: str
    settings: dict  # the BuildConfig's ensemble_settings(): what is built
    stages: tuple[str, ...]  # the stages this build goes through, in order
    started_by: str
    started_at: float  # time.time()
    stage: str = LOAD
    done: int = 0
    total: int = 0
    detail: str = ""  # more about the stage (a fine-tuning's epoch, step and time left)
    fraction: float = 0.0  # of the whole build, never decreasing
    status: str = RUNNING
    error: str = ""  # why a failed build stopped, in plain words
    finished_at: float | None = None
    ensemble_id: str = ""
    summary: str = ""  # BuildReport.summary() of a finished build
    trained: bool = False  # a new ensemble was trained (else an identical one was reused)
    backbone_id: str = ""

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def seconds(self) -> float:
        """How long it ran (so far, while it runs)."""
        return (self.finished_at or time.time()) - self.started_at


def planned_stages(config: BuildConfig) -> tuple[str, ...]:
    """The stages a build of ``config`` reports, in order."""
    skip = {CALIBRATE} if not config.calibrate else set()
    if config.finetune is None:
        skip.add(FINETUNE)
    return tuple(s for s in JOB_STAGES if s not in skip)


def overall_fraction(stages: tuple[str, ...], stage: str, done: int, total: int) -> float:
    """Where (stage, done / total) lies in the whole build, 0..1, by STAGE_WEIGHTS."""
    weights = [STAGE_WEIGHTS[s] for s in stages]
    if stage not in stages:
        return 0.0
    i = stages.index(stage)
    within = min(1.0, done / total) if total else 1.0
    return (sum(weights[:i]) + weights[i] * within) / sum(weights)


def plain_error(exc: BaseException) -> str:
    """What a page says about a build that stopped: the message, never a traceback."""
    # a KeyError's str() is the repr of its argument: quoted
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    if isinstance(exc, ValueError | LookupError | OSError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobRegistry:
    """The build jobs of this process, safe to share between threads (the server's sessions)."""

    def __init__(self, keep_finished: int = KEEP_FINISHED) -> None:
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # insertion order: oldest first
        self._ended: dict[str, threading.Event] = {}

    def jobs(self, db_path: str | None = None) -> list[Job]:
        """Every job kept (of one database when ``db_path`` is given), newest first."""
        with self._lock:
            found = list(self._jobs.values())
        return [j for j in reversed(found) if db_path is None or j.db_path == db_path]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self, db_path: str, pool_id: str) -> Job | None:
        """The build of this pool that runs now, or None."""
        with self._lock:
            return next((j for j in self._jobs.values()
                         if j.running and j.db_path == db_path and j.pool_id == pool_id), None)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has ended (or as it is when ``timeout`` seconds pass)."""
        event = self._ended.get(job_id)
        if event is None:
            raise KeyError(f"no build job {job_id!r}")
        event.wait(timeout)
        return self.get(job_id)

    def start(self, store, pool_id: str, config: BuildConfig, *,
              backbone: Callable[[], object] | None = None, started_by: str = "",
              after: Callable[[object], None] | None = None,
              on_update: Callable[[Job], None] | None = None) -> Job:
        """Start building ``pool_id`` of ``store`` with ``config`` on a daemon thread; the new job.

        ``backbone()``, called on that thread, gives the backbone to embed with (None:
        the pipeline loads ``config.backbone``); ``after(report)`` runs there once the
        build is stored (a failure in it fails the job); ``on_update(job)`` is called on
        that thread after every change. KeyError for an unknown pool; BuildRunningError while
        this pool builds already.
        """
        pool = store.get_pool(pool_id)  # KeyError before any thread starts
        job = Job(job_id=uuid.uuid4().hex[:12], db_path=str(store.path), pool_id=pool.pool_id,
                  pool_name=pool.name, settings=config.ensemble_settings(), stages=planned_stages(config),
                  started_by=started_by, started_at=time.time())
        with self._lock:
            busy = next((j for j in self._jobs.values()
                         if j.running and j.db_path == job.db_path and j.pool_id == job.pool_id), None)
            if busy is not None:
                raise BuildRunningError(
                    f"pool '{pool.name}' is being built already (started by {busy.started_by or 'someone'}, "
                    f"now at {busy.stage}): wait for it to finish, then build again")
            self._jobs[job.job_id] = job
            self._ended[job.job_id] = threading.Event()
            self._forget_old()
        runner = _Runner(self, job.job_id, on_update)
        threading.Thread(target=runner.run, args=(store, pool.pool_id, config, backbone, after),
                         name=f"hyre-build-{job.job_id}", daemon=True).start()
        return job

    # ------------------------------------------------------------ internals

    def _update(self, job_id: str, **changes) -> Job:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = job
            ended = self._ended[job_id]
            if job.status != RUNNING:
                self._forget_old()
        if job.status != RUNNING:
            ended.set()
        return job

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs past ``keep_finished`` (caller holds the lock)."""
        finished = [k for k, j in self._jobs.items() if not j.running]
        for key in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[key]
            self._ended.pop(key, None)


class _Runner:
    """The thread's side of one job: progress in, the end (report or error) out."""

    def __init__(self, registry: JobRegistry, job_id: str, on_update: Callable[[Job], None] | None) -> None:
        self.registry = registry
        self.job_id = job_id
        self.on_update = on_update

    def _set(self, **changes) -> None:
        job = self.registry._update(self.job_id, **changes)
        if self.on_update is not None:
            self.on_update(job)

    def progress(self, stage: str, done: int, total: int, detail: str = "") -> None:
        job = self.registry.get(self.job_id)
        fraction = max(job.fraction, overall_fraction(job.stages, stage, done, total))
        # a fine-tuning step is reported twice (count, then count and detail): keep the detail
        detail = detail or (job.detail if stage == job.stage else "")
        self._set(stage=stage, done=int(done), total=int(total), detail=detail, fraction=fraction)

    def finetune_progress(self, p) -> None:
        scored = "" if p.val_loss is None else f" · validation accuracy {p.val_accuracy:.3f}"
        self.progress(FINETUNE, (p.epoch - 1) * p.steps + p.step, p.epochs * p.steps,
                      detail=f"epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}{scored} · "
                      f"about {p.eta / 60:.0f} min left")

    def run(self, store, pool_id: str, config: BuildConfig, backbone: Callable[[], object] | None,
            after: Callable[[object], None] | None) -> None:
        try:
            self.progress(LOAD, 0, 1)
            model = backbone() if backbone is not None else None
            self.progress(LOAD, 1, 1)
            report = build_pool(store, pool_id, config, backbone=model, progress=self.progress,
                                finetune_progress=self.finetune_progress if config.finetune else None)
            if after is not None:
                after(report)
        except Exception as exc:  # every failure ends the job with its message; the log keeps the traceback
            log.exception("build job %s of pool %s failed", self.job_id, pool_id)
            self._set(status=FAILED, error=plain_error(exc), finished_at=time.time())
            return
        self._set(status=DONE, fraction=1.0, finished_at=time.time(), ensemble_id=report.ensemble_id,
                  summary=report.summary(), trained=report.trained, backbone_id=report.backbone_id)


# The process's registry: the app's sessions (every browser tab) share it.
REGISTRY = JobRegistry()


def start_build(store, pool_id: str, config: BuildConfig, **kwargs) -> Job:
    """`JobRegistry.start` on the process's registry."""
    return REGISTRY.start(store, pool_id, config, **kwargs)
