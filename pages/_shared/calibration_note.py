"""The sidebar's note on a calibration that runs in the background after the first launch.

The first launch opens the Label page before beta and lambda are calibrated; the pages
use the default beta until the calibration is stored, then switch on the next run (the
note's fragment polls, so a page nobody touches switches too) and say so once.
"""

from __future__ import annotations

import streamlit as st

from hyre_engine import jobs
from hyre_engine.pipeline import calibration_pending
from pages._shared.context import Context

# How often the pending note looks whether the calibration is stored (seconds).
POLL_S = 2.0
# st.session_state key: the ensembles this tab saw with a calibration pending.
SEEN_PENDING_KEY = "hyre_calibration_seen_pending"
# st.session_state key: the ensemble whose beta switched in this tab (the note stays for it).
SWITCHED_KEY = "hyre_calibration_switched"


def _pending(ctx: Context) -> bool:
    return calibration_pending(ctx.store.get_ensemble(ctx.ensemble_id, with_weights=False).meta)


@st.fragment(run_every=POLL_S)
def _pending_note(ctx: Context) -> None:
    if not _pending(ctx) or jobs.calibration_status(ctx.store, ctx.ensemble_id) == jobs.FAILED:
        st.rerun(scope="app")  # stored (or failed): every part of the page takes the new beta
    st.caption(
        f":material/hourglass_top: β = {ctx.beta:g} (the default) for now: β and λ are being calibrated "
        "on held-out annotators in the background. The page switches to them when they are ready; "
        "your labels stay."
    )


def calibration_note(ctx: Context) -> None:
    """In the sidebar: the pending note (starting the calibration if nothing runs it, e.g.
    after a restart), a failure, or once, that beta switched."""
    seen = st.session_state.setdefault(SEEN_PENDING_KEY, set())
    if calibration_pending(ctx.ensemble.meta):
        seen.add(ctx.ensemble_id)
        if jobs.calibration_status(ctx.store, ctx.ensemble_id) is None:
            jobs.calibrate_in_background(ctx.store, ctx.ensemble_id)
        error = jobs.calibration_error(ctx.store, ctx.ensemble_id)
        if error is None:
            _pending_note(ctx)
        else:
            st.warning(f"The background calibration of β failed, so β stays at the default {ctx.beta:g}. "
                       "Rebuild with `python -m hyre_engine build` to calibrate it.", icon=":material/warning:")
    elif ctx.ensemble_id in seen:
        seen.discard(ctx.ensemble_id)
        st.toast(f"β switched to the calibrated {ctx.beta:g} (λ {ctx.lam:g}{_rho_text(ctx)}).", icon=":material/tune:")
        st.session_state[SWITCHED_KEY] = ctx.ensemble_id
    if st.session_state.get(SWITCHED_KEY) == ctx.ensemble_id and not calibration_pending(ctx.ensemble.meta):
        st.caption(f":material/tune: β = {ctx.beta:g}, λ = {ctx.lam:g}{_rho_text(ctx)}: calibrated in the background "
                   "after the page opened.")


def _rho_text(ctx: Context) -> str:
    """The personal head's structured prior, when the calibration chose one."""
    rho = ctx.ensemble.meta.rho
    return f", ρ {rho:g}" if rho else ""
