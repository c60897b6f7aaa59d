"""Long work that belongs to the process, not to whoever started it: one registry of server jobs.

The app starts work here and returns at once; it runs on a daemon thread of the server
process, so it goes on when the browser tab that started it closes or reloads, and
every tab reads its progress from the same registry (`REGISTRY.jobs`). Three kinds of
job share it: a **build** of a pool (the Data page, `start_build`), the **first
launch**'s demo build (hyre_engine.first_launch), and a **calibration** of beta and
lambda deferred by the first launch (`calibrate_in_background`). Each job reports what
it does now (stage, done / total), one overall fraction that only grows, and how it
ended: ``done`` with its report, or ``failed`` with a plain message (the traceback goes
to the server log, never to a page).

- One build per pool and database at a time: `start_build` refuses a second one with
  `BuildRunningError`, naming the running job. One first launch per database and one
  calibration per ensemble: asking again gives the job that runs (`submit`).
- The registry's module imports no build stack (torch, duckdb): a page can read the
  jobs before the heavy imports, and each job imports what it needs on its own thread.
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
from typing import TYPE_CHECKING, Any

from hyre_engine.stages import BUILD_STAGES, CALIBRATE, EMBED, FINETUNE, PREDICT, TRAIN

if TYPE_CHECKING:
    from hyre_engine.pipeline import BuildConfig

log = logging.getLogger(__name__)

# Before the pipeline's own stages: importing a shipped pool (the first launch's demo),
# then loading the backbone (seconds on a cold CPU).
IMPORT, LOAD = "import", "load"
JOB_STAGES = (IMPORT, LOAD, *BUILD_STAGES)
RUNNING, DONE, FAILED = "running", "done", "failed"
STATUSES = (RUNNING, DONE, FAILED)
BUILD, FIRST_LAUNCH, CALIBRATION = "build", "first-launch", "calibration"
KINDS = (BUILD, FIRST_LAUNCH, CALIBRATION)
# Share of the overall fraction per stage (renormalised over the stages a job has):
# embedding dominates a CPU build, then training; fine-tuning, when asked, most of all.
STAGE_WEIGHTS = {IMPORT: 0.02, LOAD: 0.05, EMBED: 0.4, CALIBRATE: 0.15, FINETUNE: 1.0, TRAIN: 0.3, PREDICT: 0.1}
# Finished jobs kept for the pages to show, newest first (running ones are always kept).
KEEP_FINISHED = 20


class BuildRunningError(RuntimeError):
    """A build of this pool is already running in this process."""


@dataclass(frozen=True)
class Job:
    """One job as the pages see it: an immutable snapshot (`JobRegistry.get` gives the latest)."""

    job_id: str
    db_path: str
    pool_id: str  # "" until known (a first launch imports its pool first)
    pool_name: str
    settings: dict  # the BuildConfig's ensemble_settings(): what is built
    stages: tuple[str, ...]  # the stages this job goes through, in order
    started_by: str
    started_at: float  # time.time()
    kind: str = BUILD  # one of KINDS
    stage: str = LOAD
    done: int = 0
    total: int = 0
    detail: str = ""  # more about the stage (a fine-tuning's epoch, step and time left)
    fraction: float = 0.0  # of the whole build, never decreasing
    status: str = RUNNING
    error: str = ""  # why a failed build stopped, in plain words
    finished_at: float | None = None
    ensemble_id: str = ""  # the ensemble built, or calibrated
    summary: str = ""  # BuildReport.summary() of a finished build, the calibration's result
    trained: bool = False  # a new ensemble was trained (else an identical one was reused)
    backbone_id: str = ""

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def seconds(self) -> float:
        """How long it ran (so far, while it runs)."""
        return (self.finished_at or time.time()) - self.started_at


def planned_stages(config: BuildConfig, *, defer_calibration: bool = False,
                   import_pool: bool = False) -> tuple[str, ...]:
    """The stages a build of ``config`` reports, in order (``import_pool``: it imports its pool first)."""
    skip = {CALIBRATE} if not config.calibrate or defer_calibration else set()
    if config.finetune is None:
        skip.add(FINETUNE)
    if not import_pool:
        skip.add(IMPORT)
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
    """The server jobs of this process, safe to share between threads (the server's sessions)."""

    def __init__(self, keep_finished: int = KEEP_FINISHED) -> None:
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # insertion order: oldest first
        self._ended: dict[str, threading.Event] = {}

    def jobs(self, db_path: str | None = None, *, kind: str | None = None) -> list[Job]:
        """Every job kept (of one database, of one kind, when given), newest first."""
        with self._lock:
            found = list(self._jobs.values())
        return [j for j in reversed(found)
                if (db_path is None or j.db_path == str(db_path)) and (kind is None or j.kind == kind)]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self, db_path: str, pool_id: str) -> Job | None:
        """The build (or first launch) of this pool that runs now, or None."""
        with self._lock:
            return self._busy(str(db_path), pool_id)

    def latest(self, db_path: str, kind: str, subject: str = "") -> Job | None:
        """The newest job of ``kind`` on this database (and on this ensemble, for a calibration)."""
        with self._lock:
            return next((j for j in reversed(self._jobs.values()) if j.db_path == str(db_path)
                         and j.kind == kind and (not subject or j.ensemble_id == subject)), None)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has ended (or as it is when ``timeout`` seconds pass)."""
        event = self._ended.get(job_id)
        if event is None:
            raise KeyError(f"no job {job_id!r}")
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
        job = Job(job_id=new_job_id(), db_path=str(store.path), pool_id=pool.pool_id,
                  pool_name=pool.name, settings=config.ensemble_settings(), stages=planned_stages(config),
                  started_by=started_by, started_at=time.time())
        with self._lock:
            busy = self._busy(job.db_path, job.pool_id)
            if busy is not None:
                raise BuildRunningError(
                    f"pool '{pool.name}' is being built already (started by {busy.started_by or 'someone'}, "
                    f"now at {busy.stage}): wait for it to finish, then build again")
            self._add(job)
        self._run(job, _build_work(store, pool.pool_id, config, backbone, after), on_update)
        return job

    def submit(self, job: Job, work: Callable[[JobRunner], dict], *,
               reuse: Callable[[Job], bool] = lambda j: j.running,
               on_update: Callable[[Job], None] | None = None) -> Job:
        """Run ``work(runner)`` on a daemon thread as ``job`` (its returned fields are set when
        it is done), unless the newest job of the same kind and subject (database, and
        ensemble) passes ``reuse`` (default: it runs): then that job, and nothing starts."""
        with self._lock:
            same = next((j for j in reversed(self._jobs.values()) if j.kind == job.kind
                         and j.db_path == job.db_path and j.ensemble_id == job.ensemble_id), None)
            if same is not None and reuse(same):
                return same
            self._add(job)
        self._run(job, work, on_update)
        return job

    # ------------------------------------------------------------ internals

    def _busy(self, db_path: str, pool_id: str) -> Job | None:
        """The running build or first launch of this pool (caller holds the lock)."""
        return next((j for j in self._jobs.values() if j.running and j.kind in (BUILD, FIRST_LAUNCH)
                     and j.db_path == db_path and j.pool_id == pool_id and pool_id), None)

    def _add(self, job: Job) -> None:
        """Keep ``job`` (caller holds the lock)."""
        self._jobs[job.job_id] = job
        self._ended[job.job_id] = threading.Event()
        self._forget_old()

    def _run(self, job: Job, work: Callable[[JobRunner], dict], on_update: Callable[[Job], None] | None) -> None:
        runner = JobRunner(self, job.job_id, on_update)
        threading.Thread(target=runner.run, args=(work,), name=f"hyre-{job.kind}-{job.job_id}",
                         daemon=True).start()

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


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


class JobRunner:
    """The thread's side of one job: progress in, the end (its result or an error) out."""

    def __init__(self, registry: JobRegistry, job_id: str, on_update: Callable[[Job], None] | None) -> None:
        self.registry = registry
        self.job_id = job_id
        self.on_update = on_update

    def set(self, **changes) -> None:
        """Change fields of the running job (a first launch names its pool once imported)."""
        job = self.registry._update(self.job_id, **changes)
        if self.on_update is not None:
            self.on_update(job)

    def progress(self, stage: str, done: int, total: int, detail: str = "") -> None:
        job = self.registry.get(self.job_id)
        fraction = max(job.fraction, overall_fraction(job.stages, stage, done, total))
        # a fine-tuning step is reported twice (count, then count and detail): keep the detail
        detail = detail or (job.detail if stage == job.stage else "")
        self.set(stage=stage, done=int(done), total=int(total), detail=detail, fraction=fraction)

    def finetune_progress(self, p) -> None:
        scored = "" if p.val_loss is None else f" · validation accuracy {p.val_accuracy:.3f}"
        self.progress(FINETUNE, (p.epoch - 1) * p.steps + p.step, p.epochs * p.steps,
                      detail=f"epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}{scored} · "
                      f"about {p.eta / 60:.0f} min left")

    def run(self, work: Callable[[JobRunner], dict]) -> None:
        try:
            result = work(self)
        except Exception as exc:  # every failure ends the job with its message; the log keeps the traceback
            log.exception("%s job %s failed", self.registry.get(self.job_id).kind, self.job_id)
            self.set(status=FAILED, error=plain_error(exc), finished_at=time.time())
            return
        self.set(status=DONE, fraction=1.0, finished_at=time.time(), **(result or {}))


def report_fields(report) -> dict[str, Any]:
    """What a finished build's job records of its `pipeline.BuildReport`."""
    return dict(ensemble_id=report.ensemble_id, summary=report.summary(), trained=report.trained,
                backbone_id=report.backbone_id)


def _build_work(store, pool_id: str, config: BuildConfig, backbone: Callable[[], object] | None,
                after: Callable[[object], None] | None) -> Callable[[JobRunner], dict]:
    def work(runner: JobRunner) -> dict:
        from hyre_engine.pipeline import build_pool

        runner.progress(LOAD, 0, 1)
        model = backbone() if backbone is not None else None
        runner.progress(LOAD, 1, 1)
        report = build_pool(store, pool_id, config, backbone=model, progress=runner.progress,
                            finetune_progress=runner.finetune_progress if config.finetune else None)
        if after is not None:
            after(report)
        return report_fields(report)

    return work


# The process's registry: the app's sessions (every browser tab) share it.
REGISTRY = JobRegistry()


def start_build(store, pool_id: str, config: BuildConfig, **kwargs) -> Job:
    """`JobRegistry.start` on the process's registry."""
    return REGISTRY.start(store, pool_id, config, **kwargs)


# ---------------------------------------------------------------- deferred calibration


def calibrate_in_background(store, ensemble_id: str, *, registry: JobRegistry | None = None) -> Job | None:
    """Run the ensemble's pending calibration (`pipeline.finish_calibration`) as a server job.

    The first launch opens the Label page with the default beta and starts this; the
    pages switch to the calibrated beta once it is stored. Whoever asks first starts it;
    later asks get the same job, running or ended: a failed one is kept (its error says
    why, the ensemble keeps the default beta) and not retried while the process keeps
    it. None when nothing is pending and no job ran.
    """
    from hyre_engine.pipeline import calibration_pending

    registry = registry or REGISTRY
    record = store.get_ensemble(ensemble_id, with_weights=False)
    if not calibration_pending(record.meta):
        return registry.latest(store.path, CALIBRATION, ensemble_id)
    pool = store.get_pool(record.pool_id)
    job = Job(job_id=new_job_id(), db_path=str(store.path), pool_id=pool.pool_id, pool_name=pool.name,
              settings=record.config or {}, stages=(CALIBRATE,), started_by="", started_at=time.time(),
              kind=CALIBRATION, ensemble_id=ensemble_id)
    return registry.submit(job, _calibration_work(store, ensemble_id), reuse=lambda j: j.status != DONE)


def _calibration_work(store, ensemble_id: str) -> Callable[[JobRunner], dict]:
    def work(runner: JobRunner) -> dict:
        from hyre_engine.pipeline import finish_calibration

        runner.progress(CALIBRATE, 0, 1)
        meta = finish_calibration(store, ensemble_id, progress=runner.progress)
        return dict(summary=f"beta {meta.beta:g}, lambda {meta.lam_or_default:g}")

    return work


def calibration_status(store, ensemble_id: str, *, registry: JobRegistry | None = None) -> str | None:
    """RUNNING, FAILED (``calibration_error`` says why), or None: nothing runs for this ensemble here."""
    job = (registry or REGISTRY).latest(store.path, CALIBRATION, ensemble_id)
    return None if job is None or job.status == DONE else job.status


def calibration_error(store, ensemble_id: str, *, registry: JobRegistry | None = None) -> str | None:
    """Why this ensemble's background calibration failed, or None."""
    job = (registry or REGISTRY).latest(store.path, CALIBRATION, ensemble_id)
    return job.error if job is not None and job.status == FAILED else None
