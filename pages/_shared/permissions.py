"""Who may do what in this tab: the one place the pages ask (hyre_engine.auth decides).

Sign-in (hyre_engine.auth, the Data page's users file or OpenID Connect) puts the
signed-in role under `ROLE_KEY`. Without sign-in the app serves only on a loopback
address (auth.check_bind), so the one person at this machine is its admin.
"""

from __future__ import annotations

import streamlit as st

from hyre_engine import auth

# st.session_state key of this tab's role (one of auth.ROLES), set by sign-in.
ROLE_KEY = "hyre_role"


def current_role() -> str:
    """This tab's role: the signed-in one, else admin (no sign-in: loopback only)."""
    role = st.session_state.get(ROLE_KEY)
    return role if role in auth.ROLES else auth.ADMIN


def can(action: str) -> bool:
    """Whether this tab may do ``action`` (a key of auth.PERMISSIONS)."""
    return auth.allowed(current_role(), action)
