"""History page: my labels with the pair's texts; click one to change or delete it.

Every change is kept in the store's audit trail (who and when), and the live session
is replayed from the store, so the weights are exactly those of the labels as they
now stand (tests/test_live.py, tests/app/test_history_page.py, tests/e2e).
"""

from __future__ import annotations

import streamlit as st

from hyre_engine import people
from hyre_engine.safe_text import escape_markdown
from pages._shared.context import get_context
from pages._shared.history import (
    NOTICE_KEY,
    change_controls,
    label_list,
    pair_in_full,
    unlabelled_notes,
)
from pages._shared.notes import note_form


def _session_id(ctx) -> str | None:
    """This user's own labelling session on the pool and ensemble the pages work on (never created here)."""
    sessions = ctx.store.list_sessions(ctx.pool_id, user=ctx.user)
    mine = sessions[(sessions["ensemble_id"] == ctx.ensemble_id) & (sessions["mode"] == "human")]
    return None if mine.empty else str(mine["session_id"].iloc[0])


def main() -> None:
    ctx = get_context()
    if ctx is None:
        return
    st.markdown("### Your labels")
    st.caption(
        f"Every pair **{escape_markdown(ctx.user)}** judged on pool **{escape_markdown(ctx.pool_name)}**, "
        "newest first. Click a row (or pick it below) to see the pair in full, change your judgement, "
        "delete it, or add a comment and a flag. Changes are kept in the audit trail. Notes on pairs "
        "you have not labelled are listed after your labels."
    )
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice, icon=":material/history:")
    session_id = _session_id(ctx)
    frame = None if session_id is None else people.session_history(ctx.store, session_id, ctx.pairs())
    notes = None if session_id is None else people.unlabelled_notes(ctx.store, session_id, ctx.pairs())
    if (frame is None or frame.empty) and (notes is None or notes.empty):
        st.info("No labels yet: label a few pairs on the Label page and they appear here.",
                icon=":material/thumbs_up_down:")
        return
    if not frame.empty:
        _labels(ctx, session_id, frame, len(notes))
    if not notes.empty:
        unlabelled_notes(ctx, session_id, notes)


def _labels(ctx, session_id: str, frame, n_notes: int) -> None:
    counts = people.history_counts(frame)
    noted = f" · {n_notes} note(s) on pairs not labelled (below)" if n_notes else ""
    st.caption(f"{counts['labels']} labels · {counts['flagged']} flagged · {counts['commented']} with a comment"
               f"{noted}")
    seq = label_list(frame)
    row = frame[frame["seq"] == seq].iloc[0]
    left, right = st.columns([3, 1], gap="medium")
    with left:
        change_controls(ctx, session_id, row)
        pair_in_full(row)
    with right:
        st.markdown("**Comment and flag**")
        note_form(ctx, session_id, int(row["row_index"]), str(row["pair_id"]), prefix="history_note")

main()
