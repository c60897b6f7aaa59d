"""The People page's management: rename, merge into another person, delete; each asks for a confirmation.

Every action calls hyre_engine.people with this tab's role, so the one permission
check (people.may_manage) decides, whatever the page shows.
"""

from __future__ import annotations

import streamlit as st

from hyre_engine import people
from hyre_engine.profiles import MAX_USER_CHARS, clean_user
from hyre_engine.safe_text import escape_markdown
from pages._shared.context import USER_INPUT_KEY, USER_PARAM, Context, forget_context
from pages._shared.permissions import current_role

PERSON_KEY = "people_person"
PENDING_KEY = "people_pending"
NOTICE_KEY = "people_notice"
LIVE_KEY = "label_live"  # pages/label.py's live session: a renamed or merged person's is rebuilt
OPS = {"rename": "Rename", "merge": "Merge into another person", "delete": "Delete"}


def _ask(op: str, person: str, other: str | None) -> None:
    st.session_state[PENDING_KEY] = (op, person, other)


def _cancel() -> None:
    st.session_state.pop(PENDING_KEY, None)


def _run(ctx: Context) -> None:
    op, person, other = st.session_state.pop(PENDING_KEY)
    role = current_role()
    who, to = escape_markdown(person), escape_markdown(other or "")  # names are shown as Markdown
    try:
        if op == "rename":
            people.rename_user(ctx.store, person, other, role=role, actor=ctx.user)
            text = f"Renamed {who} to {to}."
        elif op == "merge":
            out = people.merge_users(ctx.store, person, other, role=role, actor=ctx.user)
            text = (f"Merged {who} into {to}: {out['sessions_moved']} session(s) moved, "
                    f"{out['labels_moved']} label(s) added to {to}'s sessions"
                    + (f", {out['conflicts']} pair(s) {to} had already judged kept {to}'s answer." if
                       out["conflicts"] else "."))
        else:
            n = people.delete_user(ctx.store, person, role=role, actor=ctx.user)
            text = f"Deleted {who} and their {n} label(s) (kept in the audit trail)."
    except (ValueError, KeyError, PermissionError) as exc:
        st.session_state[NOTICE_KEY] = ("error", escape_markdown(str(exc).strip("'\"")))
        return
    st.session_state[NOTICE_KEY] = ("success", text)
    st.session_state.pop(PERSON_KEY, None)
    st.session_state.pop(LIVE_KEY, None)
    if person == ctx.user and op != "delete":
        # this tab's own name changed: keep labelling as the new one
        st.session_state[USER_INPUT_KEY] = other
        st.query_params[USER_PARAM] = other
    forget_context()


def _confirmation(ctx: Context) -> None:
    op, person, other = st.session_state[PENDING_KEY]
    who, to = escape_markdown(person), escape_markdown(other or "")
    what = {
        "rename": f"Rename **{who}** to **{to}**?",
        "merge": f"Merge **{who}** into **{to}**? Their labels join {to}'s and the name {who} is gone.",
        "delete": f"Delete **{who}** and all their labels? The audit trail keeps a copy, "
                  "but the labels leave every session and export.",
    }[op]
    with st.container(key="people-confirm"):
        st.warning(what)
        cols = st.columns([1, 1, 4])
        cols[0].button(f"Yes, {op}", key="people_confirm", type="primary", on_click=_run, args=(ctx,))
        cols[1].button("Cancel", key="people_cancel", on_click=_cancel)


def manage_people(ctx: Context, names: list[str]) -> None:
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        getattr(st, notice[0])(notice[1])
    pending = PENDING_KEY in st.session_state
    cols = st.columns([2, 2, 3, 1], vertical_alignment="bottom")
    person = cols[0].selectbox("Person", names, key=PERSON_KEY)
    op = cols[1].selectbox("Action", list(OPS), format_func=OPS.get, key="people_op")
    other = None
    if op == "rename":
        other = clean_user(cols[2].text_input("New name", key="people_new_name", max_chars=MAX_USER_CHARS))
        ready = bool((st.session_state.get("people_new_name") or "").strip()) and other != person
    elif op == "merge":
        others = [n for n in names if n != person]
        other = cols[2].selectbox("Into", others, key="people_into") if others else None
        ready = other is not None
    else:
        cols[2].caption("Removes the person's sessions, labels, notes and profiles.")
        ready = True
    cols[3].button(OPS[op].split()[0], key="people_go", disabled=pending or not ready, on_click=_ask,
                   args=(op, person, other), type="primary" if op != "delete" else "secondary")
    if pending:  # below the choices, which keep their values whatever the answer
        _confirmation(ctx)
