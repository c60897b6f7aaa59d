"""People page: who labels, how much, when last, how often they agree; rename, merge, delete; export.

Rename, merge and delete go through hyre_engine.people, which asks one permission
check (auth.allowed(role, "manage_users")); the role is this tab's
(pages/_shared/permissions.py: the signed-in one, else admin on a loopback-only server).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hyre_engine import export, people
from pages._shared.context import get_context
from pages._shared.export_ui import export_section
from pages._shared.people_ui import manage_people
from pages._shared.permissions import can
from pages._shared.widgets import escape_markdown


def _users_table(users: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "person": users["user"],
        "labels": users["n_labels"].astype(int),
        "persona demo labels": users["n_persona_labels"].astype(int),
        "sessions": users["n_sessions"].astype(int),
        "pools": users["n_pools"].astype(int),
        "last active (UTC)": pd.to_datetime(users["last_active"]).dt.strftime("%Y-%m-%d %H:%M"),
    })


def _agreement_table(agree: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "person": agree["user_a"], "and": agree["user_b"], "pairs both judged": agree["n_both"],
        "same choice": agree["agreement"], "kappa": agree["kappa"],
    })


def main() -> None:
    ctx = get_context()
    if ctx is None:
        return
    st.markdown("### People")
    st.caption("Everyone who labelled in this store: how much, when last, and how often two people chose the "
               "same answer on the pairs both judged.")
    users = ctx.store.list_users()
    if users.empty:
        st.info("Nobody has labelled yet.", icon=":material/group:")
        return
    # one above the other: side by side, a 1280 px screen cut their last columns
    with st.container():
        st.markdown("**Who labels**")
        st.dataframe(_users_table(users), hide_index=True, key="people_table",
                     column_config={"labels": st.column_config.NumberColumn(help="Their own labels, all pools.")})
    with st.container():
        st.markdown(f"**Agreement on pool {escape_markdown(ctx.pool_name)}**",
                    help="Same choice: the share of the pairs both judged A or B where they picked the same "
                    "answer. Kappa: agreement beyond what two people with their habits would reach by chance "
                    "(1 = always agree, 0 = chance level, blank when chance explains everything).")
        agree = people.label_agreement(export.judgements(ctx.store, pool=ctx.pool_id))
        if agree.empty:
            st.caption("No two people judged the same pair of this pool yet.")
        else:
            st.dataframe(_agreement_table(agree), hide_index=True, key="agreement_table", column_config={
                "same choice": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
                "kappa": st.column_config.NumberColumn(format="%.2f")})
    st.divider()
    st.markdown("**Export labels**")
    export_section(ctx, key="people_export")
    st.divider()
    st.markdown("**Rename, merge or delete**")
    if not can(people.MANAGE_USERS):
        st.caption("Only an admin can rename, merge or delete people.")
        return
    manage_people(ctx, users["user"].tolist())


main()
