"""Sign-ins of the local users file that outlive a browser tab: one random token per sign-in.

The browser keeps the token in an HttpOnly cookie (pages/_shared/signin_routes.py); the
store keeps only its SHA-256, with whose it is, the role it was granted, a fingerprint of
the password hash it was checked against, and when it expires or was revoked. A stolen
copy of the database therefore signs nobody in, a sign-out revokes the token for every
tab that holds it, and a new password (which changes the fingerprint) ends every
sign-in made with the old one.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from hyre_engine.store.connection import StoreBase, _first, _now

# secrets.token_urlsafe(32): 43 characters; anything much longer is not one of ours.
MAX_TOKEN_CHARS = 128


def token_hash(token: str) -> str:
    """What the store keeps of a token (a 256-bit random value needs no slow hash)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SigninRecord:
    """A live sign-in: who, with which role at sign-in, against which password fingerprint."""

    user_name: str
    role: str
    credential: str
    expires_at: datetime


class SigninsMixin(StoreBase):
    """Store methods: open, look up and revoke users-file sign-ins."""

    def open_signin(self, user_name: str, *, role: str, credential: str, hours: float) -> str:
        """A new sign-in for ``user_name`` lasting ``hours``; returns the token (stored only hashed).

        Expired and revoked sign-ins are removed on the way, so the table stays small.
        """
        if not hours > 0:
            raise ValueError(f"a sign-in must last a positive number of hours, not {hours!r}")
        token = secrets.token_urlsafe(32)
        now = _now()
        with self._transaction() as (cur, _):
            cur.execute("DELETE FROM signins WHERE expires_at <= ? OR revoked_at IS NOT NULL", [now])
            cur.execute("INSERT INTO signins VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        [token_hash(token), str(user_name), str(role), str(credential), now,
                         now + timedelta(hours=hours)])
        return token

    def signin(self, token: object) -> SigninRecord | None:
        """The live sign-in of ``token``, or None: unknown, forged, expired or revoked."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            return None
        row = _first(self._cursor().execute(
            "SELECT user_name, role, credential, expires_at FROM signins "
            "WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?", [token_hash(token), _now()]))
        return None if row is None else SigninRecord(*row)

    def revoke_signin(self, token: object) -> bool:
        """End the sign-in of ``token`` (every tab holding it); whether there was a live one."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            return False
        with self._transaction() as (cur, _):
            live = _first(cur.execute(
                "SELECT 1 FROM signins WHERE token_hash = ? AND revoked_at IS NULL", [token_hash(token)]))
            cur.execute("UPDATE signins SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                        [_now(), token_hash(token)])
        return live is not None
