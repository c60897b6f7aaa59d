"""Sign-in in a real browser against the real server (`python app.py`).

- A users-file sign-in survives a reload and a new tab (an HttpOnly cookie holding a
  random token the store knows only hashed) until Sign out; after it, neither a reload
  nor the old token replayed, nor a forged one, signs anybody in.
  Signing out is a POST carrying the app's XSRF token: a GET or a POST without it is refused.
- st.login signs in through a real OpenID Connect provider on loopback
  (tests/e2e/oidc_provider.py): discovery, authorize with PKCE S256, token, JWKS; Sign out
  clears Streamlit's identity cookie, and a reload stays signed out.
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
from oidc_provider import CLIENT_ID, CLIENT_SECRET, oidc_provider

from hyre_engine import auth

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "browser-pass-123"
WAIT_MS = 60_000


def _signed_in(page, name: str, role: str) -> None:
    # names are escaped as Markdown: a word joiner (U+2060) before "@" stops autolinking
    shown = re.escape(f"Signed in as {name} · {role}").replace("@", "\u2060?@")
    page.get_by_text(re.compile(shown)).first.wait_for(timeout=WAIT_MS)


def _field(page, name: str):
    return page.get_by_role("textbox", name=name, exact=True)


def _sign_in_form(page) -> None:
    _field(page, "Password").wait_for(timeout=WAIT_MS)
    assert not page.get_by_text("Signed in as").count()


def _session_cookies(page) -> list[dict]:
    return [c for c in page.context.cookies() if c["name"] == auth.SESSION_COOKIE]


def _eventually(check, what: str) -> None:
    """The browser follows the sign-in and sign-out redirects a moment after the click."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_users_file_sign_in_survives_reloads_and_tabs_until_sign_out(serve_app, demo_db, tmp_path, browser_page):
    db, _ = demo_db
    users = auth.UsersFile(tmp_path / "users.json")
    users.add("ann", PASSWORD)
    page = browser_page
    with serve_app(db, tmp_path / "server.log", env={auth.USERS_FILE_ENV: str(users.path)}) as url:
        page.goto(url)
        _field(page, "Name").fill("ann")
        _field(page, "Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        _eventually(lambda: _session_cookies(page) and "hyre-auth" not in page.url, "no sign-in cookie")
        _signed_in(page, "ann", "annotator")
        [cookie] = _session_cookies(page)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert cookie["value"] not in page.url and "code=" not in page.url
        assert cookie["value"] not in page.evaluate("document.cookie")  # out of reach of scripts
        page.reload()
        _signed_in(page, "ann", "annotator")
        with page.expect_popup() as opened:  # a new tab of the same browser
            page.evaluate("(url) => window.open(url)", url)
        tab = opened.value
        _signed_in(tab, "ann", "annotator")
        tab.close()

        # signing out takes a POST with the app's XSRF token: a link (a GET, as another site's
        # link or image would send) and a POST without the token both leave the sign-in alone
        signout = f"{url}/hyre-auth/signout"
        assert page.goto(signout).status == 405
        assert page.request.post(signout).status == 403
        assert page.request.post(signout, headers={"X-Xsrftoken": "2|00000000|" + "00" * 16 + "|1"}).status == 403
        assert _session_cookies(page) == [cookie]
        page.goto(url)
        _signed_in(page, "ann", "annotator")

        page.get_by_role("button", name="Sign out").click()
        _eventually(lambda: not _session_cookies(page) and "hyre-auth" not in page.url, "cookie not cleared")
        _sign_in_form(page)
        page.reload()
        _sign_in_form(page)
        # the old token replayed (revoked at sign-out), then one made up: nobody signed in
        for value in (cookie["value"], secrets.token_urlsafe(32)):
            page.context.add_cookies([{"name": auth.SESSION_COOKIE, "value": value, "url": url}])
            page.reload()
            _sign_in_form(page)


def test_st_login_through_a_real_oidc_provider(serve_app, demo_db, app_port, tmp_path, browser_page):
    db, _ = demo_db
    port = app_port
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    page = browser_page
    with oidc_provider({"sub": "u-1", "email": "ada@example.org", "name": "Ada"}) as provider:
        (home / ".streamlit" / "secrets.toml").write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
            f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{provider.metadata_url}"\n')
        env = {"HOME": str(home), auth.ADMINS_ENV: "ada@example.org",
               auth.USERS_FILE_ENV: str(tmp_path / "no-users.json")}
        with serve_app(db, tmp_path / "server.log", env=env, port=port) as url:
            page.goto(url)
            page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
            assert not _field(page, "Password").count()
            page.get_by_role("button", name="Sign in").click()
            _signed_in(page, "ada@example.org", "admin")
            assert provider.tokens_issued == 1 and provider.refusals == []
            assert page.get_by_role("link", name="Data").count()  # an admin by HYRE_ADMINS
            page.reload()  # Streamlit's own signed identity cookie
            _signed_in(page, "ada@example.org", "admin")
            assert _oidc_cookies(page)

            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
            _eventually(lambda: not _oidc_cookies(page), "Streamlit's identity cookie not cleared")
            assert not page.get_by_text("Signed in as").count()
            page.reload()
            page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
            assert not page.get_by_text("Signed in as").count()
            assert provider.tokens_issued == 1  # nobody signed in again behind the scenes


def _oidc_cookies(page) -> list[dict]:
    """Streamlit's signed identity cookie of st.login (one or more chunks)."""
    return [c for c in page.context.cookies() if c["name"].startswith("_streamlit_user")]
