"""Who is using this browser tab: sign-in, the acting user's name and role.

hyre_engine.auth decides the policy (users file, OIDC, roles, bind address); this
module asks Streamlit who is there and draws the sign-in page.

- No sign-in configured (local use, loopback only): everyone may do everything, and
  each tab gets its own anonymous name (``anon-…``) kept in the address (``?user=``),
  so a reload continues the same session and no two browsers ever share one.
- A users file: a sign-in form checked against its argon2 hashes; the signed-in
  name is the one labels are stored under, whatever the address says. Served by
  ``python app.py`` (serve.py), the sign-in is kept in an HttpOnly cookie holding a
  random token that the store knows only hashed (signin_routes.py), so a reload or a
  new tab stays signed in until Sign out, expiry or a new password.
- OpenID Connect: ``st.login``; the e-mail (else the subject) is the name, the role
  comes from HYRE_ADMINS.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import streamlit as st

from hyre_engine import auth
from hyre_engine.profiles import clean_user
from hyre_engine.store import StoreLockedError
from pages._shared import permissions, signin_routes
from pages._shared.permissions import ROLE_KEY

# The user name travels in the URL (?user=...) so a reload or a bookmark keeps it (local use).
USER_PARAM = "user"
USER_INPUT_KEY = "hyre_user_input"
# This tab's anonymous name, made once per session.
ANON_KEY = "hyre_anonymous_name"
# The users-file sign-in of this session (a SignIn).
SIGNED_IN_KEY = "hyre_signed_in"
# The cookie token this session has already looked up (a reload brings a new session).
COOKIE_TRIED_KEY = "hyre_cookie_tried"
# How often a session asks the store again whether its token was revoked (another tab
# signed out) or expired.
RECHECK_S = 30.0
# The identity of the current run (an auth.User), set by app.py for the pages.
IDENTITY_KEY = "hyre_identity"
SIGN_IN_FORM = "hyre_sign_in"
# Set by Sign out when this browser's sign-in cookie is still to be cleared (by the page).
CLEAR_COOKIE_KEY = "hyre_clear_cookie"
# The page clears the cookie with a POST carrying Streamlit's XSRF token (the header its
# uploads carry; signin_routes.signout checks it), then goes home: a fresh session.
_CLEAR_COOKIE_JS = """<script>
(function () {
  var m = document.cookie.match(/(?:^|;\\s*)_streamlit_xsrf=([^;]*)/);
  fetch(%(url)s, {method: "POST", credentials: "same-origin", cache: "no-store",
                  headers: {"X-Xsrftoken": m ? decodeURIComponent(m[1]) : ""}})
    .finally(function () { window.location.replace(%(home)s); });
})();
</script>"""


def _secrets() -> dict:
    """st.secrets as a dict; {} without a secrets file."""
    try:
        return st.secrets.to_dict()
    except (FileNotFoundError, KeyError, ValueError):
        return {}


def method() -> str | None:
    """auth.OIDC, auth.USERS or None (local use); AuthError for a malformed users file."""
    return auth.sign_in_method(_secrets())


def refusal() -> str | None:
    """Why this server must not serve anyone, or None: a non-loopback bind without sign-in."""
    address = st.get_option("server.address")
    try:
        auth.check_bind(address, sign_in=method() is not None)
    except auth.AuthError as exc:
        return str(exc)
    return None


def _anonymous() -> str:
    if not st.session_state.get(ANON_KEY):
        st.session_state[ANON_KEY] = auth.anonymous_name()
    return st.session_state[ANON_KEY]


def local_name(raw: str | None) -> str:
    """A typed or URL name cleaned for the store; blank means this tab's anonymous name."""
    if raw is None or not " ".join(str(raw).split()):
        return _anonymous()
    return clean_user(raw)


def _local_user() -> auth.User:
    raw = st.query_params.get(USER_PARAM)
    if raw is None:
        # Switching pages clears the query string: this tab's name is still in its
        # session state, so keep labelling as the same person.
        raw = st.session_state.get(USER_INPUT_KEY)
    name = local_name(raw)
    if st.query_params.get(USER_PARAM) != name:
        st.query_params[USER_PARAM] = name
    return auth.User(name, auth.ADMIN, anonymous=name.startswith(auth.ANONYMOUS_PREFIX))


def _oidc_user() -> auth.User | None:
    if not st.user.is_logged_in:
        return None
    name = str(st.user.get("email") or st.user.get("sub") or "")
    if not name:
        return None
    return auth.User(clean_user(name), auth.oidc_role(st.user.to_dict()))


@dataclass(frozen=True)
class SignIn:
    """A users-file sign-in: who, the password fingerprint it was checked against, and its
    token (None when it lasts for this tab only), last confirmed at ``checked`` (monotonic)."""

    name: str
    credential: str
    token: str | None = None
    checked: float = 0.0


def _store():
    from pages._shared import context

    return context.store()


def _redirect(url: str) -> None:
    """Send this tab's browser to ``url`` (the way st.login and st.logout do)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        msg = ForwardMsg()
        msg.auth_redirect.url = url
        ctx.enqueue(msg)


def _from_cookie() -> SignIn | None:
    """The sign-in of this browser's cookie, looked up once per session; None if it has
    none, or a token the store does not know (forged), or one expired or revoked."""
    token = st.context.cookies.get(auth.SESSION_COOKIE)
    if not token or st.session_state.get(COOKIE_TRIED_KEY) == token:
        return None
    try:
        record = _store().signin(token)
    except StoreLockedError:
        return None  # asked again on the next run
    st.session_state[COOKIE_TRIED_KEY] = token
    if record is None:
        return None
    return SignIn(record.user_name, record.credential, token, time.monotonic())


def _still_live(signed: SignIn) -> bool:
    if signed.token is None or time.monotonic() - signed.checked < RECHECK_S:
        return True
    try:
        record = _store().signin(signed.token)
    except StoreLockedError:
        return True  # asked again on the next run
    if record is None or record.user_name != signed.name:
        return False
    st.session_state[SIGNED_IN_KEY] = SignIn(signed.name, signed.credential, signed.token, time.monotonic())
    return True


def _file_user() -> auth.User | None:
    signed = st.session_state.get(SIGNED_IN_KEY)
    if not isinstance(signed, SignIn):
        signed = _from_cookie()
        if signed is None:
            return None
        st.session_state[SIGNED_IN_KEY] = signed
    entry = auth.UsersFile().load().get(signed.name)
    # removed from the file, a new password, or the token revoked or expired: signed out
    if entry is None or auth.password_fingerprint(entry) != signed.credential or not _still_live(signed):
        st.session_state.pop(SIGNED_IN_KEY, None)
        return None
    return auth.User(signed.name, entry["role"])  # a changed role applies at once


def current_identity() -> auth.User | None:
    """Who uses this tab, or None when they must sign in first (raises AuthError on a bad users file)."""
    how = method()
    if how is None:
        return _local_user()
    user = _oidc_user() if how == auth.OIDC else _file_user()
    if user is None:
        st.session_state.pop(ROLE_KEY, None)
        return None
    # the role every page asks (pages/_shared/permissions.py) is the signed-in one
    st.session_state[ROLE_KEY] = user.role
    if st.query_params.get(USER_PARAM) is not None:
        # signed in: the address never chooses whose labels these are
        del st.query_params[USER_PARAM]
    return user


def identity() -> auth.User | None:
    """The identity app.py resolved for this run (None before it ran, or when signed out)."""
    user = st.session_state.get(IDENTITY_KEY)
    return user if isinstance(user, auth.User) else None


def can(action: str) -> bool:
    """Whether this tab's user may do ``action`` (auth.PERMISSIONS, asked through
    permissions.can); no identity may do nothing."""
    return identity() is not None and permissions.can(action)


def refuse(what: str) -> None:
    """The plain message a page shows instead of an action this role may not take."""
    st.info(f"{what} is for admins. Ask an admin of this HyRe Studio if you need it.",
            icon=":material/lock:")


def _check_password() -> None:
    name = (st.session_state.get("signin_name") or "").strip()
    password = st.session_state.get("signin_password") or ""
    st.session_state["signin_password"] = ""
    users = auth.UsersFile()
    try:
        user = users.verify(name, password) if name and password else None
        credential = users.credential(name) if user is not None else None
    except auth.AuthError:
        user = credential = None
    if user is None or credential is None:
        st.session_state["signin_failed"] = True
        return
    st.session_state.pop("signin_failed", None)
    token = None
    if auth.SIGN_IN_CODES.enabled:  # served by serve.py: keep the sign-in in a cookie
        try:
            token = _store().open_signin(user.name, role=user.role, credential=credential,
                                         hours=auth.signin_hours())
        except (auth.AuthError, StoreLockedError):
            token = None  # this tab stays signed in; a reload asks again
    st.session_state[SIGNED_IN_KEY] = SignIn(user.name, credential, token, time.monotonic())
    if token is not None:
        _redirect(signin_routes.url(signin_routes.SESSION_PATH) + "?code=" + auth.SIGN_IN_CODES.issue(token))


def _oidc_provider(secrets: dict) -> str | None:
    table = secrets.get("auth") or {}
    if table.get("client_id"):
        return None
    return next((k for k, v in table.items() if isinstance(v, dict) and v.get("client_id")), None)


def _clear_cookie() -> None:
    """After Sign out: the browser clears its sign-in cookie (a POST, signin_routes.signout)."""
    if not st.session_state.pop(CLEAR_COOKIE_KEY, False):
        return
    import json

    st.html(_CLEAR_COOKIE_JS % {"url": json.dumps(signin_routes.url(signin_routes.SIGNOUT_PATH)),
                                "home": json.dumps(signin_routes.url("/"))}, unsafe_allow_javascript=True)


def sign_in_page() -> None:
    """The page every visitor sees until signed in."""
    _clear_cookie()
    st.title("HyRe Studio")
    st.caption("Personalise a reward model from a handful of your choices.")
    if method() == auth.OIDC:
        st.markdown("Sign in with your organisation's account to label and see your profile.")
        provider = _oidc_provider(_secrets())
        if st.button("Sign in", type="primary", icon=":material/login:", key="signin_oidc"):
            st.login(provider) if provider else st.login()
        return
    with st.form(SIGN_IN_FORM, width=420):
        st.markdown("**Sign in**")
        st.text_input("Name", key="signin_name", autocomplete="username")
        st.text_input("Password", type="password", key="signin_password", autocomplete="current-password")
        st.form_submit_button("Sign in", type="primary", on_click=_check_password)
    if st.session_state.get("signin_failed"):
        st.error("Wrong name or password.", icon=":material/block:")
    kept = (f"A sign-in lasts {auth.signin_hours():g} hours in this browser, reloads and new tabs included, "
            "until you sign out." if auth.SIGN_IN_CODES.enabled else "A sign-in lasts for this tab.")
    st.caption(f"{kept} No account yet? An admin adds one with `python -m hyre_engine users add NAME`.")


def refused_page(message: str) -> None:
    st.title("HyRe Studio is not serving")
    st.error(message, icon=":material/lock:")


def sign_out() -> None:
    if method() == auth.OIDC:
        st.logout()
        return
    signed = st.session_state.pop(SIGNED_IN_KEY, None)
    st.session_state.pop(IDENTITY_KEY, None)
    st.session_state.pop(ROLE_KEY, None)
    if isinstance(signed, SignIn) and signed.token is not None:
        # revoked for every tab that holds the cookie, then the cookie itself is cleared
        with contextlib.suppress(StoreLockedError):  # the cookie is cleared all the same
            _store().revoke_signin(signed.token)
        st.session_state[CLEAR_COOKIE_KEY] = True  # the sign-in page the next run draws clears it


def sidebar_identity() -> bool:
    """The signed-in user and a sign-out button in the sidebar; False when nobody signs in here."""
    user = identity()
    if user is None or method() is None:
        return False
    from hyre_engine.safe_text import escape_markdown

    st.markdown(f"Signed in as **{escape_markdown(user.name)}** · {user.role}")
    st.button("Sign out", icon=":material/logout:", key="signout", on_click=sign_out)
    return True
