"""The HTTP side of a users-file sign-in that outlives a tab: two routes, served by serve.py.

A Streamlit run talks over a WebSocket and cannot set a cookie, and st.context.cookies
is read-only. So the sign-in form (pages/_shared/signin.py), once the password is
right, opens a sign-in in the store (a random token, kept there only hashed) and sends
the browser to ``/hyre-auth/session?code=…`` with a one-time code (auth.SIGN_IN_CODES:
single use, 60 s, only its hash in memory). That route swaps the code for the token,
sets it as an HttpOnly, SameSite=Strict cookie and redirects home: the token never
appears in an address, and the code is spent by the time the page is back. Every new
session (a reload, another tab) reads the cookie and looks the token up in the store.

``/hyre-auth/signout`` clears the cookie; the Sign out button has already revoked the
token in the store, so a copy of the cookie kept elsewhere signs nobody in either. It takes
only a POST carrying the app's XSRF token in an ``X-Xsrftoken`` header, checked against
Streamlit's ``_streamlit_xsrf`` cookie exactly as Streamlit checks its own uploads (the
double-submit check): a GET is refused (405), so a link or an image on another site cannot
sign anybody out, and a cross-site form can neither set the header nor read the cookie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyre_engine import auth

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

SESSION_PATH = "hyre-auth/session"
SIGNOUT_PATH = "hyre-auth/signout"


def _base() -> str:
    from streamlit import config

    return config.get_option("server.baseUrlPath") or ""


def url(path: str) -> str:
    """The browser's address of one of these routes (under server.baseUrlPath)."""
    from streamlit.url_util import make_url_path

    return make_url_path(_base(), path)


def _home() -> Response:
    from starlette.responses import RedirectResponse

    # 303: the browser comes back with a GET; the redirect itself is never cached or referred.
    return RedirectResponse(url("/"), status_code=303,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _cookie_options(request: Request) -> dict:
    # Secure over HTTPS (directly, or behind the reverse proxy of docs/deploy.md).
    https = request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"
    return {"path": "/" + _base().strip("/") if _base().strip("/") else "/",
            "httponly": True, "samesite": "strict", "secure": https}


async def session(request: Request) -> Response:
    """Swap a one-time code for the sign-in cookie; a spent, expired or forged code sets nothing."""
    response = _home()
    token = auth.SIGN_IN_CODES.redeem(request.query_params.get("code"))
    if token is not None:
        response.set_cookie(auth.SESSION_COOKIE, token, max_age=int(auth.signin_hours() * 3600),
                            **_cookie_options(request))
    return response


def xsrf_ok(request: Request) -> bool:
    """The request carries this browser's XSRF token: Streamlit's own check of its uploads."""
    from streamlit.web.server.starlette.starlette_app_utils import validate_xsrf_token
    from streamlit.web.server.starlette.starlette_server_config import XSRF_COOKIE_NAME

    return validate_xsrf_token(request.headers.get("X-Xsrftoken"), request.cookies.get(XSRF_COOKIE_NAME))


async def signout(request: Request) -> Response:
    """Clear the sign-in cookie (a POST with the XSRF token; the page then goes home itself)."""
    from starlette.responses import PlainTextResponse, Response

    headers = {"Cache-Control": "no-store"}
    if request.method != "POST":
        # The route takes GET too only to answer it here: left to Starlette, a GET would fall
        # through to Streamlit's page route and come back 200 with the app's HTML.
        return PlainTextResponse("Sign-out takes a POST from the app's Sign out button.",
                                 status_code=405, headers={**headers, "Allow": "POST"})
    if not xsrf_ok(request):
        return PlainTextResponse("Sign-out refused: the request does not carry this app's XSRF token.",
                                 status_code=403, headers=headers)
    response = Response(status_code=204, headers=headers)
    response.delete_cookie(auth.SESSION_COOKIE, **_cookie_options(request))
    return response


def routes() -> list[Route]:
    """The two routes, for st.App (serve.py)."""
    from starlette.routing import Route

    return [Route(url(SESSION_PATH), session, methods=["GET"]),
            Route(url(SIGNOUT_PATH), signout, methods=["GET", "POST"])]
