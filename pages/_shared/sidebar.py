"""The shared sidebar: the user's name, and what the pages work on."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hyre_engine.profiles import MAX_USER_CHARS
from pages._shared import signin
from pages._shared.calibration_note import calibration_note
from pages._shared.context import (
    ENSEMBLE_KEY,
    POOL_KEY,
    USER_INPUT_KEY,
    USER_PARAM,
    Context,
    backbone_label,
    device_name,
)
from pages._shared.keyboard import install_keyboard
from pages._shared.widgets import escape_markdown


def _on_user_change() -> None:
    # a cleared field goes back to this tab's anonymous name, never to a shared one
    name = signin.local_name(st.session_state.get(USER_INPUT_KEY))
    st.session_state[USER_INPUT_KEY] = name
    st.query_params[USER_PARAM] = name


def _name_field(ctx: Context) -> None:
    """Local use: the name labels are saved under (this tab's anonymous one until typed)."""
    if st.session_state.get(USER_INPUT_KEY) is None:
        st.session_state[USER_INPUT_KEY] = ctx.user
    st.text_input(
        "Your name",
        key=USER_INPUT_KEY,
        on_change=_on_user_change,
        max_chars=MAX_USER_CHARS,
        help="Your labels are saved under this name once you press Enter or leave the field; "
        "shortcut keys never type into it. It is kept in the address (?user=...), so a "
        "reload or a bookmark brings you back to them. Until you type one, this tab has "
        "its own anonymous name.",
    )


def render_sidebar(ctx: Context) -> None:
    """The user's name, and what the pages work on: pool, ensemble, backbone, device."""
    db = ctx.store
    install_keyboard()  # every page: Enter in the name field hands the keys back to the page
    with st.sidebar:
        if not signin.sidebar_identity():
            _name_field(ctx)
        pools = db.list_pools()
        ensembles = db.reweightable_ensembles()
        usable = pools[pools["pool_id"].isin(set(ensembles["pool_id"]))]
        if len(usable) > 1:
            names = dict(zip(usable["pool_id"], usable["name"], strict=True))
            st.selectbox(
                "Pool",
                list(names),
                format_func=lambda pid: names[pid],
                key=POOL_KEY,
                help="The preference pairs to label. Add pools on the Data page.",
            )
        own = ensembles[ensembles["pool_id"] == ctx.pool_id]
        if len(own) > 1:
            labels = {
                row.ensemble_id: f"{row.config.get('kind')} · K={row.config.get('n_heads')} · "
                f"{pd.Timestamp(row.created_at):%Y-%m-%d %H:%M}"
                for row in own.iloc[::-1].itertuples()
            }
            st.selectbox("Ensemble", list(labels), format_func=lambda eid: labels[eid], key=ENSEMBLE_KEY)
        cfg = ctx.config
        prior = cfg.get("prior_scale")
        st.caption("Working on")
        st.markdown(
            "\n".join(
                [
                    f"- **Pool** {escape_markdown(ctx.pool_name)} · {ctx.n_pairs:,} pairs",
                    f"- **Ensemble** {cfg.get('kind', '?')} · K = {cfg.get('n_heads', '?')} · "
                    f"prior scale {prior if prior is not None else '–'}",
                    f"- **Distinct head functions** {ctx.distinct_heads} of {cfg.get('n_heads', '?')} "
                    "(heads correlating above 0.98 count once)",
                    f"- **Backbone** {escape_markdown(backbone_label(ctx.backbone_id))}",
                    f"- **Device** {device_name()}",
                    f"- **User** {escape_markdown(ctx.user)}",
                ]
            )
        )
        calibration_note(ctx)
