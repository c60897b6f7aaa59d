"""A comment and a flag on a pair: one small form, on the Label page (in a popover) and in History."""

from __future__ import annotations

import streamlit as st

from hyre_engine.store.annotations import MAX_COMMENT_CHARS, NoteRecord
from pages._shared.context import Context

SAVED_KEY = "notes_saved"
# The Label page's Note popover: its open state (a widget key).
POPOVER_KEY = "label_note_open"


def _save(ctx: Context, session_id: str, row_index: int, pair_id: str, prefix: str) -> None:
    comment = st.session_state.get(f"{prefix}_comment", "") or ""
    flagged = bool(st.session_state.get(f"{prefix}_flag", False))
    ctx.store.set_note(session_id, row_index=row_index, pair_id=pair_id, comment=comment, flagged=flagged,
                       actor=ctx.user)
    st.session_state[SAVED_KEY] = (session_id, row_index)
    if prefix.startswith("label_note"):
        # the button's mark (• a note, ⚑ flagged) may change, which makes it a new popover:
        # it stays open on "Saved."
        st.session_state[POPOVER_KEY] = True


def note_form(ctx: Context, session_id: str, row_index: int, pair_id: str, *, prefix: str) -> None:
    """The pair's comment and flag, saved with the button (an empty, unflagged note removes it)."""
    note = ctx.store.get_note(session_id, row_index) or NoteRecord(comment="", flagged=False)
    # widget keys carry the pair: another pair starts from its own stored note
    prefix = f"{prefix}_{row_index}"
    with st.form(key=f"{prefix}_form", border=False):
        st.text_area(
            "Comment (optional)", value=note.comment, key=f"{prefix}_comment", max_chars=MAX_COMMENT_CHARS,
            height=90, placeholder="Why this choice, or what is wrong with the pair",
        )
        st.checkbox("Flag this pair for review", value=note.flagged, key=f"{prefix}_flag",
                    help="Flagged pairs are marked in History and in every export (column 'flagged').")
        st.form_submit_button("Save note", on_click=_save, args=(ctx, session_id, row_index, pair_id, prefix))
    if st.session_state.get(SAVED_KEY) == (session_id, row_index):
        st.caption(":green[Saved.]")


def note_popover(where, ctx: Context, session_id: str, row_index: int | None, pair_id: str | None) -> None:
    """A "Note" button in ``where`` (the Label page's action row) that opens the form for the pair shown."""
    if row_index is None:
        return
    note = ctx.store.get_note(session_id, row_index)
    mark = " ⚑" if note and note.flagged else (" •" if note else "")
    # The form is built only while the popover is open: the Label page's fragment reruns on
    # every label for every labeller, and a closed form (a text area, a checkbox and a button
    # keyed by the pair, so new widgets each label) cost each browser about a tenth of its
    # CPU per label (bench/bench_load.py). Opening it reruns the fragment once.
    popover = where.popover(f"Note{mark}", icon=":material/edit_note:", key=POPOVER_KEY, on_change="rerun",
                            help="An optional comment and a flag on this pair: stored, exported, shown in History.")
    if popover.open:
        with popover:
            note_form(ctx, session_id, row_index, str(pair_id), prefix="label_note")
