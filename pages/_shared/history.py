"""The History page's parts: the list of a person's labels, one pair in full, and its controls.

Changing or deleting a label goes through the engine (live.change_label when this tab
holds the live session, else the store), and the live session is replayed from the
store: the weights are those of the labels as they now stand.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hyre_engine import live
from hyre_engine.live import LiveState
from hyre_engine.numerics import SESSION_LABELS
from hyre_engine.safe_text import escape_markdown, markdown_html
from pages._shared.context import Context
from pages._shared.labels import LABEL_TEXT, NO_PREFERENCE_HELP
from pages._shared.notes import note_form
from pages._shared.widgets import snippet

# pages/label.py keeps the tab's live session under this key.
LIVE_KEY = "label_live"
PICK_KEY = "history_pick"
TABLE_KEY = "history_table"
CONFIRM_KEY = "history_confirm_delete"
NOTICE_KEY = "history_notice"
NOTE_PICK_KEY = "history_note_pick"
# The table's row cut: enough to recognise a pair, short enough for one line.
TABLE_CHARS = 70
BUTTON_TEXT = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad",
               "cant_judge": "Can't judge", "skip": "Skip"}


def history_table(frame: pd.DataFrame) -> pd.DataFrame:
    """What the list shows per label: number, judgement, the start of the texts, the note."""
    return pd.DataFrame({
        "#": frame["seq"].to_numpy() + 1,
        "judgement": frame["label"].map(LABEL_TEXT),
        "flag": frame["flagged"].map({True: "⚑", False: ""}),
        "prompt": [snippet(t, TABLE_CHARS) for t in frame["prompt"]],
        "response A": [snippet(t, TABLE_CHARS) for t in frame["response_a"]],
        "response B": [snippet(t, TABLE_CHARS) for t in frame["response_b"]],
        "comment": [snippet(t, TABLE_CHARS) for t in frame["comment"]],
        "when": pd.to_datetime(frame["created_at"]).dt.strftime("%Y-%m-%d %H:%M"),
    })


def _on_table_select(seqs: list[int]) -> None:
    rows = st.session_state[TABLE_KEY].selection.rows
    if rows:
        st.session_state[PICK_KEY] = seqs[rows[0]]
        st.session_state[CONFIRM_KEY] = False


def label_list(frame: pd.DataFrame) -> int | None:
    """The table (click a row) and a picker (keyboard); returns the chosen label's seq."""
    seqs = frame["seq"].astype(int).tolist()
    st.dataframe(
        history_table(frame), hide_index=True, on_select=lambda: _on_table_select(seqs),
        selection_mode="single-row", key=TABLE_KEY, height=min(38 + 35 * len(frame), 320),
        column_config={"#": st.column_config.NumberColumn(width="small"),
                       "flag": st.column_config.TextColumn(width="small")},
    )
    texts = dict(zip(seqs, (f"#{s + 1} · {LABEL_TEXT[lab]} · {snippet(p, 60)}"
                            for s, lab, p in zip(seqs, frame["label"], frame["prompt"], strict=True)), strict=True))
    if st.session_state.get(PICK_KEY) not in texts:
        st.session_state[PICK_KEY] = seqs[0]
    return st.selectbox("Label to change", seqs, format_func=texts.get, key=PICK_KEY,
                        help="Click a row of the table, or pick it here.")


def pair_in_full(row: pd.Series, *, key: str = "history") -> None:
    """The prompt and both answers, whole, rendered as Markdown and sanitised (no images, no script)."""
    with st.container(border=True, key=f"{key}-prompt"):
        st.caption(f"PROMPT · pair id {escape_markdown(row['pair_id'])}")
        st.html(markdown_html(str(row["prompt"])) or "<p><em>(no prompt)</em></p>")
    cols = st.columns(2, gap="medium")
    for col, side in zip(cols, ("a", "b"), strict=True):
        with col, st.container(border=True, key=f"{key}-card-{side}"):
            mark = " · :orange[your choice]" if row.get("label") == side else ""
            st.markdown(f"**Response {side.upper()}**{mark}")
            st.html(markdown_html(str(row[f"response_{side}"])))


def _change(ctx: Context, session_id: str, seq: int, label: str | None) -> None:
    state = st.session_state.get(LIVE_KEY)
    before = LABEL_TEXT[ctx.store.session_labels(session_id).set_index("seq").loc[seq, "label"]]
    if isinstance(state, LiveState) and state.session_id == session_id:
        st.session_state[LIVE_KEY] = live.change_label(ctx.store, state, seq, label)
    elif label is None:
        ctx.store.delete_session_label(session_id, seq)
    else:
        ctx.store.edit_session_label(session_id, seq, label=label)
    st.session_state[CONFIRM_KEY] = False
    st.session_state[NOTICE_KEY] = (
        f"Deleted label #{seq + 1} ({before}); the pair may be asked again." if label is None
        else f"Label #{seq + 1} changed from {before} to {LABEL_TEXT[label]}."
    ) + " Your weights are replayed from your labels as they now stand."
    if label is None:
        st.session_state.pop(PICK_KEY, None)


def _confirm(value: bool) -> None:
    st.session_state[CONFIRM_KEY] = value


def change_controls(ctx: Context, session_id: str, row: pd.Series) -> None:
    """One button per judgement (the current one disabled), and delete after a confirmation."""
    seq = int(row["seq"])
    buttons = st.container(horizontal=True, key="history-actions")
    for label in SESSION_LABELS:
        buttons.button(
            BUTTON_TEXT[label], key=f"hist_{label}", disabled=row["label"] == label,
            type="primary" if label in ("a", "b") else "secondary",
            on_click=_change, args=(ctx, session_id, seq, label),
            help=NO_PREFERENCE_HELP.get(label, f"Change this label to: response {label.upper()} is better."),
        )
    if not st.session_state.get(CONFIRM_KEY):
        buttons.button("Delete", key="hist_delete", icon=":material/delete:", on_click=_confirm, args=(True,),
                       help="Remove this label (kept in the audit trail); the pair may be asked again.")
        return
    with st.container(key="history-confirm"):
        st.warning(f"Delete label #{seq + 1}? It leaves your session (the audit trail keeps it).")
        cols = st.columns([1, 1, 4])
        cols[0].button("Yes, delete", key="hist_delete_confirm", type="primary", on_click=_change,
                       args=(ctx, session_id, seq, None))
        cols[1].button("Cancel", key="hist_delete_cancel", on_click=_confirm, args=(False,))


def unlabelled_notes(ctx: Context, session_id: str, notes: pd.DataFrame) -> None:
    """The comments and flags on pairs without a label: a list, the picked pair in full, its note."""
    st.markdown("### Notes on pairs you have not labelled")
    st.caption(f"{len(notes)} pair(s) with a comment or a flag but no judgement (not labelled yet, or the "
               "label deleted), newest first. They are exported too, in their own file.")
    st.dataframe(pd.DataFrame({
        "flag": notes["flagged"].map({True: "⚑", False: ""}),
        "prompt": [snippet(t, TABLE_CHARS) for t in notes["prompt"]],
        "response A": [snippet(t, TABLE_CHARS) for t in notes["response_a"]],
        "response B": [snippet(t, TABLE_CHARS) for t in notes["response_b"]],
        "comment": [snippet(t, TABLE_CHARS) for t in notes["comment"]],
        "when": pd.to_datetime(notes["updated_at"]).dt.strftime("%Y-%m-%d %H:%M"),
    }), hide_index=True, height=min(38 + 35 * len(notes), 250),
        column_config={"flag": st.column_config.TextColumn(width="small")})
    rows = notes["row_index"].astype(int).tolist()
    texts = dict(zip(rows, (snippet(p, 70) for p in notes["prompt"]), strict=True))
    if st.session_state.get(NOTE_PICK_KEY) not in texts:
        st.session_state[NOTE_PICK_KEY] = rows[0]
    picked = st.selectbox("Pair to see", rows, format_func=texts.get, key=NOTE_PICK_KEY)
    row = notes[notes["row_index"] == picked].iloc[0]
    left, right = st.columns([3, 1], gap="medium")
    with left:
        pair_in_full(row, key="history-noted")
    with right:
        st.markdown("**Comment and flag**")
        note_form(ctx, session_id, int(row["row_index"]), str(row["pair_id"]), prefix="history_unlabelled_note")
