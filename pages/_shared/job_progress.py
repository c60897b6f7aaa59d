"""A server job's progress bar line, for every page that shows one (the Data page's builds,
the first-launch screen). Light on purpose: the first-launch screen draws it before the
app's heavy imports."""

from __future__ import annotations

from hyre_engine import jobs
from pages._shared.labels import STAGE_TEXT, STAGE_UNITS


def progress_text(job: jobs.Job) -> str:
    """The bar's line: the stage in words and its count (or a fine-tuning's epoch and step)."""
    stage = STAGE_TEXT.get(job.stage, job.stage)
    if job.stage in (jobs.LOAD, jobs.IMPORT):
        return f"{stage}…"
    if job.detail:
        return f"{stage}: {job.detail}"
    unit = STAGE_UNITS.get(job.stage, "")
    return f"{stage}: {job.done:,} / {job.total:,}{' ' + unit if unit else ''}" if job.total else stage
