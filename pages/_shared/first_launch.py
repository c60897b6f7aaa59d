"""The first-launch screen: the server's demo build (hyre_engine.first_launch), followed live.

The build is a server job, so this screen only reads it: a reload or a second tab shows
the same job at the same point, and closing the tab does not stop it. The bar redraws in
a fragment; when the job ends the whole app reruns and opens the Label page (or shows why
the build failed, with a button to try again). This module is light (streamlit and the
job registry): the app draws it before its heavy imports.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from hyre_engine import first_launch, jobs
from pages._shared.job_progress import progress_text

# Seconds between two redraws of the bar (each reads the registry only).
REFRESH_S = 0.5


def first_launch_screen(path: str, *, needs_build: Callable[[], bool] | None = None) -> None:
    """The whole page while the demo is built: what happens, the bar, or the failure.

    ``needs_build()`` is asked when the last first launch has ended well: a tab that
    decided to come here just before it ended reruns instead of building again.
    """
    st.title("HyRe Studio")
    st.markdown(
        "**Getting the demo ready.** This happens once: the demo answers are embedded, "
        "an ensemble of reward heads is trained on the crowd's labels, and its "
        "predictions are cached (β is calibrated in the background afterwards). "
        "Later launches open in seconds."
    )
    job = first_launch.latest(path)
    if job is not None and job.status == jobs.DONE and needs_build is not None and not needs_build():
        st.rerun(scope="app")  # it has just been built
    if job is None or job.status == jobs.DONE:  # nothing ran, or the demo went since: build it
        job = first_launch.start(path)
    if job.status == jobs.FAILED:
        from hyre_engine.safe_text import escape_markdown

        st.error(f"**The demo could not be built.** {escape_markdown(job.error)}", icon=":material/error:")
        if st.button("Try again", icon=":material/refresh:", key="first_launch_retry"):
            first_launch.start(path)
            st.rerun()
        return
    st.fragment(run_every=REFRESH_S)(_progress)(job.job_id)


def _progress(job_id: str) -> None:
    job = jobs.REGISTRY.get(job_id)
    if job is None or not job.running:
        st.rerun(scope="app")  # ended: the Label page (or the failure) takes the whole page
    with st.container(key="first-launch-progress"):
        st.progress(min(1.0, job.fraction), text=progress_text(job))
        st.caption(f"Started {job.seconds:.0f} s ago on the server: reloading this page or opening "
                   "another tab shows this same build, and closing the tab does not stop it.")


