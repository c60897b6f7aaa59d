"""Who may use the app and what they may do: users, roles, sign-in policy, data folders.

Two ways to sign in, both decided here and enforced by the app:

- **A local users file** (JSON, ``HYRE_USERS`` or ``data/users.json``): each user has
  a role and an argon2id password hash made by argon2-cffi (no hand-rolled crypto).
  Manage it with ``python -m hyre_engine users add|remove|list``.
- **OpenID Connect** through Streamlit's ``st.login``: configured by an ``[auth]``
  table in ``.streamlit/secrets.toml``; roles then come from ``HYRE_ADMINS`` (a
  comma-separated list of e-mail addresses or subjects), everyone else annotates.

Without either, the app serves only on a loopback address and every browser gets its
own anonymous identity (`anonymous_name`). `check_bind` refuses any other address
unless sign-in is configured.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# The two roles: an annotator labels as themselves; an admin also manages data.
ANNOTATOR = "annotator"
ADMIN = "admin"
ROLES = (ANNOTATOR, ADMIN)

# What each action needs. The pages ask `allowed(role, action)`; nothing else
# decides who may do what.
PERMISSIONS: dict[str, frozenset[str]] = {
    "label": frozenset({ANNOTATOR, ADMIN}),
    "view": frozenset({ANNOTATOR, ADMIN}),
    "label_as_other": frozenset({ADMIN}),
    "import": frozenset({ADMIN}),
    "import_path": frozenset({ADMIN}),
    "build": frozenset({ADMIN}),
    "delete": frozenset({ADMIN}),
    "export_all": frozenset({ADMIN}),
    "import_profile": frozenset({ADMIN}),
    "manage_users": frozenset({ADMIN}),  # rename, merge, delete people (hyre_engine.people)
    "edit_guidelines": frozenset({ADMIN}),  # a pool's labelling guidelines (Data page)
}

# Addresses that only this machine can reach.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
USERS_FILE_ENV = "HYRE_USERS"
ADMINS_ENV = "HYRE_ADMINS"
DATA_DIRS_ENV = "HYRE_DATA_DIRS"
MODEL_DIRS_ENV = "HYRE_MODEL_DIRS"
USERS_FILE_VERSION = 1
# Shorter passwords fall to an offline guess quickly even behind argon2.
MIN_PASSWORD_LENGTH = 10
MAX_NAME_LENGTH = 64
# Prefix of the per-browser identity given when nobody signs in.
ANONYMOUS_PREFIX = "anon-"
# A users-file sign-in lives in this HttpOnly cookie (a random token; the store keeps its
# SHA-256) for SIGNIN_HOURS, or $HYRE_SIGNIN_HOURS.
SESSION_COOKIE = "hyre_session"
SIGNIN_HOURS_ENV = "HYRE_SIGNIN_HOURS"
SIGNIN_HOURS = 12.0
# The one-time code that carries a new token from the sign-in form to the cookie route.
CODE_TTL_S = 60.0


class AuthError(ValueError):
    """A users file, a user name, a password or a bind address that cannot be used."""


@dataclass(frozen=True)
class User:
    """A signed-in (or anonymous) person: ``name`` labels as this user, ``role`` in ROLES."""

    name: str
    role: str
    anonymous: bool = False

    def can(self, action: str) -> bool:
        return allowed(self.role, action)


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (a key of PERMISSIONS)."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}: expected one of {', '.join(sorted(PERMISSIONS))}")
    return role in PERMISSIONS[action]


def anonymous_name() -> str:
    """A fresh identity for one browser: unguessable, so no two browsers share labels."""
    return ANONYMOUS_PREFIX + secrets.token_hex(6)


def check_name(name: object) -> str:
    """A user name as stored: printable, no surrounding space, at most MAX_NAME_LENGTH."""
    if not isinstance(name, str) or not name.strip():
        raise AuthError("a user name must be non-empty text")
    if name != name.strip():
        raise AuthError(f"user name {name!r} has leading or trailing space")
    if len(name) > MAX_NAME_LENGTH:
        raise AuthError(f"user name is {len(name)} characters, over the limit of {MAX_NAME_LENGTH}")
    bad = [c for c in name if unicodedata.category(c)[0] in "CZ" and c != " "]
    if bad:
        raise AuthError(f"user name {name!r} contains control or format character U+{ord(bad[0]):04X}")
    return name


def password_fingerprint(entry: Mapping[str, str]) -> str:
    """A fingerprint of a users-file entry's password hash: a sign-in made against one
    password ends when the password (hence its salted hash) changes."""
    return hashlib.sha256(entry["hash"].encode()).hexdigest()[:32]


def _hasher():
    from argon2 import PasswordHasher

    # argon2-cffi's defaults follow RFC 9106's second recommended option (argon2id).
    return PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted, with its parameters inside the string)."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher().hash(password)


def default_users_path() -> Path:
    env = os.environ.get(USERS_FILE_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data" / "users.json"


class UsersFile:
    """The local users file: ``{"version": 1, "users": {name: {"role", "hash"}}}``.

    Writes replace the file atomically with owner-only permissions; reading a file
    that is not of this shape is an `AuthError`, never a silent empty list.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_users_path()

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, dict[str, str]]:
        if not self.path.is_file():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise AuthError(f"{self.path}: not a readable users file ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or doc.get("version") != USERS_FILE_VERSION:
            raise AuthError(f"{self.path}: expected a users file of version {USERS_FILE_VERSION}")
        users = doc.get("users")
        if not isinstance(users, dict):
            raise AuthError(f"{self.path}: 'users' must be an object")
        for name, entry in users.items():
            if not (isinstance(entry, dict) and entry.get("role") in ROLES
                    and isinstance(entry.get("hash"), str) and entry["hash"].startswith("$argon2")):
                raise AuthError(f"{self.path}: user {name!r} needs a role in {ROLES} and an argon2 hash")
        return users

    def _save(self, users: Mapping[str, Mapping[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": USERS_FILE_VERSION, "users": dict(sorted(users.items()))}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-", suffix=".json")
        try:
            os.fchmod(fd, 0o600)  # hashes are offline-guessable: keep them private
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def users(self) -> list[User]:
        return [User(name, entry["role"]) for name, entry in sorted(self.load().items())]

    def add(self, name: str, password: str, *, role: str = ANNOTATOR, replace: bool = False) -> User:
        """Add (or with ``replace`` update) a user; the password is stored only as a hash."""
        name = check_name(name)
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        users = self.load()
        if name in users and not replace:
            raise AuthError(f"user {name!r} already exists (use --replace to change the password or role)")
        users[name] = {"role": role, "hash": hash_password(password)}
        self._save(users)
        return User(name, role)

    def remove(self, name: str) -> None:
        users = self.load()
        if name not in users:
            raise AuthError(f"no user {name!r} in {self.path}")
        del users[name]
        self._save(users)

    def credential(self, name: str) -> str | None:
        """`password_fingerprint` of ``name``'s entry, None if there is no such user."""
        entry = self.load().get(name)
        return None if entry is None else password_fingerprint(entry)

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (an unknown name costs the same time)."""
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        users = self.load()
        entry = users.get(name)
        hasher = _hasher()
        # An unknown name is checked against a dummy hash so the answer's timing does
        # not tell which names exist.
        stored = entry["hash"] if entry else _dummy_hash()
        try:
            hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if entry is None:
            return None
        if hasher.check_needs_rehash(stored):
            users[name] = {**entry, "hash": hasher.hash(password)}
            self._save(users)
        return User(name, entry["role"])


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


def signin_hours(value: str | None = None) -> float:
    """How long a users-file sign-in lasts: $HYRE_SIGNIN_HOURS, else SIGNIN_HOURS."""
    raw = os.environ.get(SIGNIN_HOURS_ENV, "") if value is None else value
    if not raw.strip():
        return SIGNIN_HOURS
    try:
        hours = float(raw)
    except ValueError:
        hours = float("nan")
    if not 0 < hours <= 24 * 90:
        raise AuthError(f"{SIGNIN_HOURS_ENV}={raw!r}: expected a number of hours above 0, at most 2160")
    return hours


class CodeExchange:
    """One-time codes that hand a new sign-in token from the sign-in form to the cookie route.

    The form (a Streamlit run) cannot set a cookie; it sends the browser to the route
    with a code instead of the token, and the route swaps it for the token once, within
    ``ttl_s``. Only the code's hash is kept, in this process's memory.
    """

    def __init__(self, ttl_s: float = CODE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self.enabled = False  # set when the server installs the cookie route
        self._pending: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, token: str) -> str:
        code = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._pending = {k: v for k, v in self._pending.items() if v[1] > now}
            self._pending[hashlib.sha256(code.encode()).hexdigest()] = (token, now + self.ttl_s)
        return code

    def redeem(self, code: object) -> str | None:
        """The token of ``code`` the first time it is asked within ``ttl_s``; else None."""
        if not isinstance(code, str) or not code or len(code) > 128:
            return None
        with self._lock:
            token, expires = self._pending.pop(hashlib.sha256(code.encode()).hexdigest(), (None, 0.0))
        return token if token is not None and time.monotonic() < expires else None


# The server's one exchange: the sign-in form and the cookie route share it.
SIGN_IN_CODES = CodeExchange()


def oidc_configured(secrets_map: Mapping | None) -> bool:
    """Whether Streamlit secrets hold an ``[auth]`` table that st.login can use."""
    auth = (secrets_map or {}).get("auth") if secrets_map is not None else None
    if not isinstance(auth, Mapping):
        return False
    shared = all(auth.get(k) for k in ("redirect_uri", "cookie_secret"))
    providers = [auth] + [v for v in auth.values() if isinstance(v, Mapping)]
    return shared and any(all(p.get(k) for k in ("client_id", "client_secret", "server_metadata_url"))
                          for p in providers)


def oidc_role(identity: Mapping, admins: Iterable[str] | None = None) -> str:
    """The role of an OIDC identity: admin when its e-mail or subject is in HYRE_ADMINS."""
    if admins is None:
        admins = [a.strip() for a in os.environ.get(ADMINS_ENV, "").split(",") if a.strip()]
    keys = {str(identity.get("email") or ""), str(identity.get("sub") or "")} - {""}
    return ADMIN if keys & set(admins) else ANNOTATOR


def read_secrets(paths: Iterable[str | os.PathLike] | None = None) -> dict:
    """Streamlit's secrets files merged (later files win), read before the server starts.

    ``paths`` defaults to where Streamlit looks: ~/.streamlit/secrets.toml, then
    .streamlit/secrets.toml in the working directory. A missing file is no secrets;
    a malformed one is an `AuthError` (a half-read [auth] table must not pass as none).
    """
    import tomllib

    if paths is None:
        paths = [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]
    merged: dict = {}
    for path in map(Path, paths):
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AuthError(f"{path}: not a readable secrets file ({type(exc).__name__})") from None
    return merged


# How people sign in: OpenID Connect through st.login, the local users file, or not at all.
OIDC = "oidc"
USERS = "users"


def sign_in_method(secrets_map: Mapping | None, users: UsersFile | None = None) -> str | None:
    """OIDC when the secrets hold a usable [auth] table, else USERS when the users file has
    anyone in it, else None (local use only). A malformed users file is an `AuthError`."""
    if oidc_configured(secrets_map):
        return OIDC
    return USERS if (users or UsersFile()).load() else None


def is_loopback(address: str | None) -> bool:
    """Whether a bind address is reachable only from this machine ("" means every interface)."""
    return (address or "").strip().lower().strip("[]") in LOOPBACK or (address or "").startswith("127.")


def check_bind(address: str | None, *, sign_in: bool) -> None:
    """Refuse to serve on a non-loopback address unless sign-in is configured."""
    if not is_loopback(address) and not sign_in:
        shown = address or "every interface"
        raise AuthError(
            f"refusing to serve on {shown}: without sign-in anyone who reaches the port could "
            "label, import and delete. Configure a users file (python -m hyre_engine users add) "
            "or OpenID Connect ([auth] in .streamlit/secrets.toml), or bind to 127.0.0.1."
        )


# -- folders the web UI may read: data files to import, model folders to load ----------


def _folders(env: str, value: str | None) -> list[Path]:
    raw = os.environ.get(env, "") if value is None else value
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def data_dirs(value: str | None = None) -> list[Path]:
    """The folders a path import may read: HYRE_DATA_DIRS (os.pathsep-separated), resolved."""
    return _folders(DATA_DIRS_ENV, value)


def model_dirs(value: str | None = None) -> list[Path]:
    """The folders the web UI may load model folders from: HYRE_MODEL_DIRS, resolved."""
    return _folders(MODEL_DIRS_ENV, value)


def _inside(path: str | os.PathLike, allowed_dirs: list[Path], what: str) -> Path:
    """``path`` resolved (symlinks, ``..``; relative to the first folder) if it lies in
    one of ``allowed_dirs`` (not empty), else one and the same `AuthError`, whether or
    not it exists."""
    dirs = [Path(d).resolve() for d in allowed_dirs]
    text = str(path)
    if not text.strip() or "\x00" in text:
        raise AuthError(f"give a path inside the configured {what}s")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = dirs[0] / candidate
    resolved = candidate.resolve()
    if not any(resolved.is_relative_to(d) for d in dirs):
        raise AuthError(f"that path is outside the configured {what}s")
    return resolved


def resolve_data_path(path: str | os.PathLike, allowed_dirs: Iterable[Path]) -> Path:
    """``path`` resolved (symlinks, ``..``) if it is a file inside one of ``allowed_dirs``.

    Anything else is one and the same `AuthError`, whether or not the file exists,
    so the answer tells nothing about files outside the folders.
    """
    dirs = list(allowed_dirs)
    if not dirs:
        raise AuthError(f"path import is off: no data folders are configured ({DATA_DIRS_ENV})")
    resolved = _inside(path, dirs, "data folder")
    if not resolved.is_file():
        raise AuthError(f"no file {resolved.name!r} in the configured data folders")
    return resolved


def resolve_model_path(path: str | os.PathLike, allowed_dirs: Iterable[Path]) -> Path:
    """A model folder typed in the web UI, resolved, if it lies inside one of ``allowed_dirs``
    (HYRE_MODEL_DIRS). Outside them: one and the same `AuthError` whether or not it exists."""
    dirs = list(allowed_dirs)
    if not dirs:
        raise AuthError(f"model folders are off: no model folders are configured ({MODEL_DIRS_ENV})")
    resolved = _inside(path, dirs, "model folder")
    if not resolved.is_dir():
        raise AuthError(f"no folder {resolved.name!r} in the configured model folders")
    return resolved
