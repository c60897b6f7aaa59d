"""Labelling guidelines per pool: edited on the Data page (admin), shown above the pair on the Label page.

The Markdown is sanitised before it reaches the browser (safe_text.markdown_html: no
images, no raw HTML, only http(s) links), whoever wrote it.
"""

from __future__ import annotations

import streamlit as st

from hyre_engine.safe_text import escape_markdown, markdown_html
from hyre_engine.store.annotations import MAX_GUIDELINES_CHARS
from pages._shared.permissions import can

EDIT_KEY = "guidelines_text"
POOL_PICK_KEY = "guidelines_pool"
NOTICE_KEY = "guidelines_notice"
EXAMPLE = ("## What makes an answer better\n- **Correct** before **complete**: a wrong fact loses.\n"
           "- Prefer the answer that says when it is unsure.\n- Length is not quality.\n\n"
           "Use **Tie** when both are equally good, **Both bad** when neither is acceptable.")


def guidelines_panel(store, pool_id: str, *, first_visit: bool) -> None:
    """The pool's guidelines in a collapsible panel above the pair; open on a person's first visit."""
    found = store.get_guidelines(pool_id)
    if found is None:
        return
    # no key: the panel is made anew when ``first_visit`` turns False, so it folds away (on the
    # next full run) once the person has started and the pair gets the room
    with st.expander("Labelling guidelines", expanded=first_visit, icon=":material/menu_book:"):
        st.html(markdown_html(found.markdown))


def _save(store, pool_id: str, actor: str) -> None:
    text = st.session_state.get(f"{EDIT_KEY}_{pool_id}", "") or ""
    try:
        store.set_guidelines(pool_id, text, actor=actor)
    except ValueError as exc:
        st.session_state[NOTICE_KEY] = ("error", str(exc))
        return
    st.session_state[NOTICE_KEY] = ("success", "Guidelines saved: labellers see them above the pair."
                                    if text.strip() else "Guidelines removed.")


def guidelines_section(store, actor: str) -> None:
    """The Data page's section: pick a pool, write its guidelines in Markdown, see them as labellers will."""
    st.subheader("Labelling guidelines")
    pools = store.list_pools()
    if pools.empty:
        st.info("Import a pool first.")
        return
    names = dict(zip(pools["pool_id"], pools["name"], strict=True))
    pool_id = st.selectbox("Pool", list(names), format_func=lambda p: names[p], key=POOL_PICK_KEY)
    found = store.get_guidelines(pool_id)
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        getattr(st, notice[0])(notice[1])
    if not can("edit_guidelines"):
        st.caption("Only an admin can change the guidelines.")
        if found:
            st.html(markdown_html(found.markdown))
        return
    left, right = st.columns(2, gap="medium")
    with left:
        st.text_area(
            "Guidelines (Markdown)", value=found.markdown if found else "", key=f"{EDIT_KEY}_{pool_id}",
            height=220, max_chars=MAX_GUIDELINES_CHARS, placeholder=EXAMPLE,
            help="Shown collapsible above the pair on the Label page, open on a person's first visit. "
            "Images and raw HTML are not shown; links must be http(s).",
        )
        st.button("Save guidelines", key="guidelines_save", on_click=_save, args=(store, pool_id, actor))
        if found:
            st.caption(f"Last saved by {escape_markdown(found.actor or 'someone')} "
                       f"at {found.updated_at:%Y-%m-%d %H:%M} UTC.")
    with right:
        st.caption("Preview, as labellers see it")
        text = st.session_state.get(f"{EDIT_KEY}_{pool_id}") or (found.markdown if found else "")
        with st.container(border=True):
            st.html(markdown_html(text) if text.strip() else "<p><em>(no guidelines yet)</em></p>")
