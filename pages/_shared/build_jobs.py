"""The Data page's builds: run by the server (hyre_engine.jobs), followed from any tab.

A build started here runs on a thread of the server process, not in this tab's script
run: closing or reloading the tab does not stop it, and every tab that opens the Data
page shows it at the top of the page. The running builds redraw in a fragment every second
(`st.fragment(run_every=...)`); when one starts or ends the whole page reruns, so the
finished build's notice shows and its pool and ensemble appear in the sidebar's
pickers (which read the store on every run: no cache holds the list of ensembles).
"""

from __future__ import annotations

import time

import streamlit as st

from hyre_engine import jobs
from hyre_engine.safe_text import escape_markdown
from pages._shared.context import ENSEMBLE_KEY, POOL_KEY, forget_context, get_context
from pages._shared.evaluation import BACKBONE_PATH_PREFIX
from pages._shared.job_progress import progress_text

# Seconds between two redraws of the running builds, and between two looks for a build
# another tab started while none runs (a fragment rerun reads the registry only).
REFRESH_RUNNING_S = 1.0
REFRESH_IDLE_S = 5.0
# The running builds the last full run of this tab showed (a change reruns the page).
SEEN_KEY = "data_jobs_seen"
# Finished builds shown under the running ones, newest first, for an hour after they end.
SHOWN_FINISHED = 3
SHOWN_FINISHED_S = 3600
# The job this tab has just started (for the notice under the Build button).
STARTED_KEY = "data_job_started"


def start(db, pool_id: str, config, *, backbone, user: str) -> None:
    """Start the build on the server's registry; a build of the pool already running is a warning."""
    folder = config.backbone

    def record_folder(report) -> None:
        if folder is not None:  # the Evaluate page needs the folder again to embed with this backbone
            db.put_result(BACKBONE_PATH_PREFIX + report.backbone_id, {"path": str(folder)})

    try:
        job = jobs.start_build(db, pool_id, config, backbone=backbone, started_by=user, after=record_folder)
    except jobs.BuildRunningError as exc:
        st.warning(f"**Not started.** {escape_markdown(str(exc))}.", icon=":material/hourglass_top:")
        return
    st.session_state[STARTED_KEY] = job.job_id
    st.rerun()  # the panel at the top of the page shows it from this run on


def started_notice() -> None:
    """Under the Build button, once: where the build that was just started shows."""
    job = jobs.REGISTRY.get(st.session_state.pop(STARTED_KEY, "") or "")
    if job is not None:
        st.info(f"**Started** {describe(job)}: it runs on the server, and its progress shows at the top "
                "of this page (in any tab, after a reload too). You can close this tab.",
                icon=":material/rocket_launch:")


def describe(job: jobs.Job) -> str:
    """What a job does, in a line: 'shared · K = 100 on pool 'x'', the first launch, a calibration."""
    pool = f"**{escape_markdown(job.pool_name)}**"
    if job.kind == jobs.FIRST_LAUNCH:
        return f"the first launch's demo ensemble on pool {pool}"
    if job.kind == jobs.CALIBRATION:
        return f"the calibration of β and λ for ensemble {job.ensemble_id} on pool {pool}"
    s = job.settings
    tuned = " · fine-tuned backbone" if s.get("finetune") else ""
    return f"{s.get('kind', '?')} · K = {s.get('n_heads', '?')}{tuned} on pool {pool}"


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _running(job: jobs.Job) -> None:
    with st.container(border=True, key=f"data-job-{job.job_id}"):
        who = f" by {escape_markdown(job.started_by)}" if job.started_by else ""
        verb = "Running" if job.kind == jobs.CALIBRATION else "Building"
        st.markdown(f"**{verb}** {describe(job)} · started{who} {_ago(job.seconds)} ago")
        st.progress(min(1.0, job.fraction), text=progress_text(job))


def _live(path: str) -> None:
    """The running builds of this database (the fragment's body)."""
    running = [j for j in jobs.REGISTRY.jobs(path) if j.running]
    if {j.job_id for j in running} != st.session_state.get(SEEN_KEY, set()):
        st.rerun()  # a build started or ended: the notices and the pickers follow
    for job in running:
        _running(job)
    if running:
        st.caption("Builds run on the server: close or reload this tab and they go on; "
                   "any tab shows their progress here.")


def _use(pool_id: str, ensemble_id: str) -> None:
    st.session_state[POOL_KEY] = pool_id
    st.session_state[ENSEMBLE_KEY] = ensemble_id
    forget_context()  # the context of this run was resolved before the switch


def _finished(job: jobs.Job, existing: set[str]) -> None:
    ended = _ago(time.time() - (job.finished_at or job.started_at))
    if job.status == jobs.FAILED:
        st.error(f"**The build stopped** ({describe(job)}, {ended} ago). {escape_markdown(job.error)}",
                 icon=":material/error:")
        return
    if job.kind == jobs.CALIBRATION:
        st.success(f"Done: {describe(job)} in {job.seconds:.0f} s ({ended} ago): "
                   f"{escape_markdown(job.summary)}.", icon=":material/tune:")
        return
    verb = "Built" if job.trained else "Already built (reused)"
    st.success(f"{verb}: ensemble {job.ensemble_id} for pool '{escape_markdown(job.pool_name)}' "
               f"in {job.seconds:.0f} s ({ended} ago).", icon=":material/check_circle:")
    with st.expander("Build report"):
        st.code(job.summary, language=None)
    ctx = get_context()
    if job.ensemble_id not in existing:
        st.caption("This ensemble has been deleted since.")
    elif ctx is not None and ctx.ensemble_id == job.ensemble_id and ctx.pool_id == job.pool_id:
        st.caption("The pages work on this ensemble now: open Label or Explore.")
    else:
        st.button("Work on this ensemble", icon=":material/arrow_forward:", key=f"data_use_{job.job_id}",
                  on_click=_use, args=(job.pool_id, job.ensemble_id),
                  help="Makes it the pool and ensemble the Label, Explore and Evaluate pages use.")


def jobs_panel(db) -> None:
    """The server jobs of this store (builds, the first launch, calibrations): the running ones
    live (a fragment), then the last finished ones."""
    every = jobs.REGISTRY.jobs(db.path)
    running = {j.job_id for j in every if j.running}
    st.session_state[SEEN_KEY] = running
    st.fragment(run_every=REFRESH_RUNNING_S if running else REFRESH_IDLE_S)(_live)(db.path)
    recent = time.time() - SHOWN_FINISHED_S
    finished = [j for j in every if not j.running and (j.finished_at or 0) > recent][:SHOWN_FINISHED]
    if finished:
        existing = set(db.list_ensembles()["ensemble_id"])
        for job in finished:
            _finished(job, existing)
