"""The Label page's safety nets: a reset that can be undone, and one-off notices (a click on a
pair another tab of the same session answered first)."""

from __future__ import annotations

import streamlit as st

from pages._shared.context import Context

UNDO_RESET_KEY = "label_undo_reset"  # (session_id, answers removed) of the last reset, while undoable
NOTICE_KEY = "label_notice"  # a sentence the labelling area shows once
ANSWERED_ELSEWHERE = ("That pair was already answered in another tab of this session, so this click "
                      "was not counted. The page now shows what is stored.")


def tell(note: str) -> None:
    """Show ``note`` once, above the pair, on the next run."""
    st.session_state[NOTICE_KEY] = note


def notice() -> None:
    note = st.session_state.pop(NOTICE_KEY, None)
    if note:
        st.warning(note, icon=":material/info:")


def remember_reset(session_id: str, removed: int) -> None:
    st.session_state[UNDO_RESET_KEY] = (session_id, removed)


def forget_reset() -> None:
    """A label since the reset: the reset stays (the store refuses to undo it now)."""
    st.session_state.pop(UNDO_RESET_KEY, None)


def _undo_reset(ctx: Context, session_id: str, live_key: str) -> None:
    forget_reset()
    st.session_state.pop(live_key, None)
    try:
        n = ctx.store.undo_reset(session_id, actor=ctx.user)
    except ValueError as exc:  # labels were added since (in another tab)
        tell(f"The reset could not be undone: {exc}.")
    else:
        tell(f"Reset undone: the {n} answers are back.")


def undo_reset_button(ctx: Context, session_id: str, where, *, live_key: str) -> bool:
    """An "Undo reset" button in ``where`` while this session's last reset is undoable; whether shown."""
    pending = st.session_state.get(UNDO_RESET_KEY)
    if not pending or pending[0] != session_id:
        return False
    where.button(
        f"Undo reset ({pending[1]})", key="btn_undo_reset", icon=":material/undo:", on_click=_undo_reset,
        args=(ctx, session_id, live_key), help="Put back the answers the reset removed.",
    )
    return True
