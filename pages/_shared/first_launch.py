"""First launch: build the demo pool's ensemble and Z with a visible progress bar."""

from __future__ import annotations

import threading
from collections.abc import Callable

import streamlit as st

from hyre_engine import background
from hyre_engine.demo import ensure_demo
from hyre_engine.store import Store
from pages._shared.labels import STAGE_TEXT

# Share of the first-launch progress bar given to each build stage (embedding
# dominates on a CPU, training second; caching Z is a single forward pass).
STAGE_SPANS = {"embed": (0.0, 0.45), "train": (0.45, 0.95), "predict": (0.95, 1.0)}


@st.cache_resource(show_spinner=False)
def _build_lock(path: str) -> threading.Lock:
    # Two tabs opening a fresh install must not build the demo twice at once.
    return threading.Lock()


def build_demo_with_progress(db: Store, path: str, *, needs_build: Callable[[], bool]) -> None:
    """First launch: build the demo pool's ensemble and Z with a visible progress bar, then rerun."""
    st.title("HyRe Studio")
    st.markdown(
        "**Getting the demo ready.** This happens once: the demo answers are embedded, "
        "an ensemble of reward heads is trained on the crowd's labels, and its "
        "predictions are cached (β is calibrated in the background afterwards). "
        "Later launches open in seconds."
    )
    bar = st.progress(0.0, text="Loading the embedding model…")

    def progress(stage: str, done: int, total: int) -> None:
        start, end = STAGE_SPANS.get(stage, (0.0, 1.0))
        frac = done / total if total else 1.0
        bar.progress(
            min(1.0, start + (end - start) * frac),
            text=f"{STAGE_TEXT.get(stage, stage)} ({done}/{total})",
        )

    with _build_lock(path):
        if needs_build():  # another tab may have built it while this one waited
            # beta's calibration (a second ensemble) waits: the Label page opens with the
            # default beta and switches once the server thread has stored the calibrated one
            report = ensure_demo(db, progress=progress, defer_calibration=True)
            background.calibrate_in_background(db, report.ensemble_id)
            bar.progress(1.0, text=f"Ready: ensemble {report.ensemble_id} on {report.n_pairs} pairs")
    st.rerun()
