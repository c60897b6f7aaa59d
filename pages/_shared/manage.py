"""The Data page's last section: the pools and ensembles in the store, each deletable after a confirm."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import signin
from pages._shared.context import (
    ENSEMBLE_KEY,
    POOL_KEY,
    backbone_label,
    forget_context,
    get_context,
    store,
)
from pages._shared.widgets import escape_markdown

NOTICE_KEY = "data_notice_manage"


def _delete_pool(pool_id: str) -> None:
    if not signin.can("delete"):  # the page is admins' only; a stale button stays inert too
        return
    db = store()
    name = db.get_pool(pool_id).name
    db.delete_pool(pool_id)
    _forget(pool_id=pool_id)
    st.session_state[NOTICE_KEY] = f"Deleted pool '{name}' with its ensembles and sessions."


def _delete_ensemble(ensemble_id: str) -> None:
    if not signin.can("delete"):
        return
    store().delete_ensemble(ensemble_id)
    _forget(ensemble_id=ensemble_id)
    st.session_state[NOTICE_KEY] = f"Deleted ensemble {ensemble_id}."


def _forget(*, pool_id: str | None = None, ensemble_id: str | None = None) -> None:
    """Drop UI state that points at what was deleted, so the app picks something that exists."""
    state = st.session_state
    if pool_id is not None and state.get(POOL_KEY) == pool_id:
        state.pop(POOL_KEY, None)
        state.pop(ENSEMBLE_KEY, None)
    if ensemble_id is not None and state.get(ENSEMBLE_KEY) == ensemble_id:
        state.pop(ENSEMBLE_KEY, None)
    forget_context()


def _row(key: str):
    """One listed pool or ensemble: (its four detail columns, the row its Delete goes in).

    The Delete is beside the columns at its label's own width: as a fifth column it was cut
    to "D…" on a 1280 px screen."""
    row = st.container(horizontal=True, vertical_alignment="center", key=key)
    with row.container():
        cols = st.columns([3, 2, 2, 2], vertical_alignment="center")
    return cols, row


def manage_section(db) -> None:
    st.subheader("3 · Pools and ensembles")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice, icon=":material/delete:")
    ctx = get_context()
    pools = db.list_pools()
    ensembles = db.list_ensembles()
    if pools.empty:
        st.info("The store is empty.")
        return
    names = dict(zip(pools["pool_id"], pools["name"], strict=True))
    st.markdown("**Pools**")
    per_pool = ensembles["pool_id"].value_counts().to_dict() if not ensembles.empty else {}
    for row in pools.itertuples():
        n_ens = int(per_pool.get(row.pool_id, 0))
        cols, line = _row(f"data_pool_row_{row.pool_id}")
        current = " · in use" if ctx is not None and ctx.pool_id == row.pool_id else ""
        cols[0].markdown(f"**{escape_markdown(str(row.name))}**{current}")
        cols[1].caption(f"{row.n_pairs:,} pairs · {row.n_labels:,} labels")
        cols[2].caption(f"{n_ens} ensemble{'s' if n_ens != 1 else ''}")
        cols[3].caption(f"added {pd.Timestamp(row.created_at):%Y-%m-%d %H:%M}")
        with line.popover("Delete", icon=":material/delete:", width="content", key=f"data_del_pool_{row.pool_id}"):
            st.markdown(f"Delete pool **{escape_markdown(str(row.name))}** with its "
                        f"{n_ens} ensemble(s), sessions and profiles? This cannot be undone.")
            st.button("Delete pool", type="primary", key=f"data_del_pool_ok_{row.pool_id}",
                      on_click=_delete_pool, args=(row.pool_id,))
    st.markdown("**Ensembles**")
    if ensembles.empty:
        st.caption("No ensembles yet: build one above.")
        return
    for row in ensembles.itertuples():
        cfg, meta = row.config, row.meta
        cols, line = _row(f"data_ensemble_row_{row.ensemble_id}")
        current = " · in use" if ctx is not None and ctx.ensemble_id == row.ensemble_id else ""
        what = "single model (baseline)" if cfg.get("n_heads") == 1 else cfg.get("kind", "?")
        cols[0].markdown(f"**{what} · K = {cfg.get('n_heads')}**{current}  \n"
                         f"`{row.ensemble_id}` on {escape_markdown(str(names.get(row.pool_id, '?')))}")
        cols[1].caption(f"hidden {cfg.get('hidden')} · prior {cfg.get('prior_scale')} · "
                        f"beta {float(meta.get('beta', 1.0)):g}")
        cols[2].caption(f"{backbone_label(row.backbone_id)} · "
                        f"trained on {', '.join(meta.get('train_groups') or ['all groups'])}")
        cols[3].caption(f"{row.n_bytes / 2**20:.1f} MB · {pd.Timestamp(row.created_at):%Y-%m-%d %H:%M}")
        with line.popover("Delete", icon=":material/delete:", width="content", key=f"data_del_ens_{row.ensemble_id}"):
            st.markdown(f"Delete ensemble `{row.ensemble_id}` with its cached predictions, sessions "
                        "and profiles? This cannot be undone.")
            st.button("Delete ensemble", type="primary", key=f"data_del_ens_ok_{row.ensemble_id}",
                      on_click=_delete_ensemble, args=(row.ensemble_id,))
