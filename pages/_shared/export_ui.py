"""Download people's labels (hyre_engine.export) for one user, one pool, or all of them."""

from __future__ import annotations

import streamlit as st

from hyre_engine import export
from pages._shared.context import Context
from pages._shared.permissions import can

SCOPE_TEXT = {"me": "My labels", "pool": "This pool, everyone", "all": "Everything"}
FORMAT_TEXT = {
    "trl-jsonl": "TRL / RewardBench JSONL (prompt, chosen, rejected)",
    "trl-parquet": "TRL / RewardBench Parquet",
    "pairs-jsonl": "HyRe pair format JSONL (with group and annotator)",
    "dataset": "datasets.Dataset (save_to_disk folder, zipped)",
}


def export_section(ctx: Context, *, key: str, user: str | None = None) -> None:
    """Scope, format, then download buttons: the preferences, and the judgements without a side beside them.

    ``user``: whose labels "My labels" means (default: this tab's user). Other scopes need
    the export_all permission.
    """
    scopes = [s for s in SCOPE_TEXT if s == "me" or can("export_all")]
    cols = st.columns([2, 3, 2], vertical_alignment="bottom")
    scope = cols[0].selectbox("Whose labels", scopes, format_func=SCOPE_TEXT.get, key=f"{key}_scope")
    fmt = cols[1].selectbox("Format", list(FORMAT_TEXT), format_func=FORMAT_TEXT.get, key=f"{key}_format")
    personas = cols[2].checkbox("Include persona demos", key=f"{key}_personas",
                                help="Simulated labels replayed from a group of the pool; the persona is the annotator.")
    who = (user or ctx.user) if scope == "me" else None
    pool = None if scope == "all" else ctx.pool_id
    try:
        rows = export.judgements(ctx.store, user=who, pool=pool, include_personas=personas)
        notes = export.unlabelled_notes(ctx.store, user=who, pool=pool, include_personas=personas)
    except ValueError:
        rows = notes = None
    if rows is None or (rows.empty and notes.empty):
        st.caption("Nothing to export yet: no labels in this choice.")
        return
    prefs, other = export.split_judgements(rows)
    stem = export.export_name(user=who, pool=None if pool is None else ctx.pool_name)
    people = len(set(rows["annotator"]) | set(notes["annotator"]))
    noted = f", and {len(notes)} note(s) on pairs not labelled" if len(notes) else ""
    st.caption(f"{len(prefs)} preferences and {len(other)} judgements without a preferred side (ties, both "
               f"bad, can't judge, skips) from {people} person(s){noted}. Comments and flags are columns "
               "of every file.")
    buttons = st.container(horizontal=True, key=f"{key}-downloads")
    suffix, mime = export.FILE_TYPES[fmt]
    buttons.download_button(
        f"Download {len(prefs)} preferences", export.file_bytes(rows, fmt), file_name=stem + suffix,
        mime=mime, key=f"{key}_download", icon=":material/download:", type="primary", on_click="ignore",
    )
    if len(other) and fmt != "pairs-jsonl":  # the pair format already holds them
        suffix, mime = export.FILE_TYPES["no_preference"]
        buttons.download_button(
            f"Download {len(other)} without a preference", export.file_bytes(rows, "no_preference"),
            file_name=stem + suffix, mime=mime, key=f"{key}_download_other", icon=":material/download:",
            on_click="ignore",
        )
    if len(notes):  # comments and flags on pairs without a judgement: their own file, in every format
        suffix, mime = export.FILE_TYPES["unlabelled_notes"]
        buttons.download_button(
            f"Download {len(notes)} notes on pairs not labelled", export.file_bytes(notes, "unlabelled_notes"),
            file_name=stem + suffix, mime=mime, key=f"{key}_download_notes", icon=":material/download:",
            on_click="ignore",
        )
