"""A small but real OpenID Connect provider on loopback, for testing st.login end to end.

It serves what st.login's client (Authlib's Starlette integration) asks of a provider:
discovery (/.well-known/openid-configuration), /authorize (the authorisation-code flow
with PKCE S256; it signs in one configured person at once, as a provider with a live
session would), /token (client_secret_basic, the code's redirect_uri and PKCE verifier
checked, single-use codes) and /jwks (the public half of a fresh RSA key). ID tokens are
RS256 JWTs made with joserfc, the JOSE library Authlib itself verifies them with.

Every refusal is an OAuth error response, and `refusals` records each, so a test can
show that the client really sent the secret and the verifier.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

CLIENT_ID = "hyre-studio-test"
CLIENT_SECRET = secrets.token_urlsafe(24)


@dataclass
class Provider:
    """The provider's state: its URL, the person it signs in, issued codes, what it refused."""

    url: str
    person: dict
    key: object
    codes: dict[str, dict] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    tokens_issued: int = 0

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _routes(p: Provider):
    from joserfc import jwt
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import Route

    def refuse(error: str, why: str, status: int = 400) -> JSONResponse:
        p.refusals.append(why)
        return JSONResponse({"error": error, "error_description": why}, status_code=status)

    async def discovery(request):
        return JSONResponse({
            "issuer": p.url, "authorization_endpoint": f"{p.url}/authorize",
            "token_endpoint": f"{p.url}/token", "jwks_uri": f"{p.url}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"], "scopes_supported": ["openid", "email", "profile"],
        })

    async def jwks(request):
        return JSONResponse({"keys": [p.key.as_dict(private=False)]})

    async def authorize(request):
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return refuse("unauthorized_client", "unknown client or response type")
        if "openid" not in q.get("scope", "").split() or q.get("code_challenge_method") != "S256":
            return refuse("invalid_request", "openid scope and a PKCE S256 challenge are required")
        code = secrets.token_urlsafe(24)
        p.codes[code] = {"redirect_uri": q["redirect_uri"], "nonce": q.get("nonce"),
                         "challenge": q.get("code_challenge"), "issued": time.time()}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}",
                                status_code=302)

    async def token(request):
        auth = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if auth != f"Basic {expected}":
            return refuse("invalid_client", "wrong client credentials", 401)
        form = await request.form()
        grant = p.codes.pop(str(form.get("code")), None)  # a code is spent on its first use
        if form.get("grant_type") != "authorization_code" or grant is None:
            return refuse("invalid_grant", "unknown or spent code")
        if form.get("redirect_uri") != grant["redirect_uri"] or time.time() - grant["issued"] > 60:
            return refuse("invalid_grant", "redirect_uri differs or the code expired")
        if _s256(str(form.get("code_verifier", ""))) != grant["challenge"]:
            return refuse("invalid_grant", "PKCE verifier does not match")
        now = int(time.time())
        claims = {"iss": p.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300, **p.person}
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        id_token = jwt.encode({"alg": "RS256", "kid": p.key.kid}, claims, p.key)
        p.tokens_issued += 1
        return JSONResponse({"access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
                             "expires_in": 300, "id_token": id_token, "scope": "openid email profile"},
                            headers={"Cache-Control": "no-store"})

    return [Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks),
            Route("/authorize", authorize), Route("/token", token, methods=["POST"])]


@contextlib.contextmanager
def oidc_provider(person: dict) -> Iterator[Provider]:
    """The provider on a free loopback port (uvicorn in a thread, the port the OS gives),
    signing in ``person`` (claims such as sub, email, name); stopped on exit."""
    import uvicorn
    from joserfc.jwk import RSAKey
    from starlette.applications import Starlette

    key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig", "alg": "RS256"})
    provider = Provider(url="", person=person, key=key)
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=_routes(provider)), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test OIDC provider did not start")
        time.sleep(0.02)
    provider.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)
