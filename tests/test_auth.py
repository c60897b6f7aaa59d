"""Users file, roles, the bind policy and the data-folder check."""

import json
import os
import stat

import pytest

from hyre_engine import auth
from hyre_engine.auth import ADMIN, ANNOTATOR, AuthError, UsersFile
from hyre_engine.cli import main

PASSWORD = "correct horse battery"


def test_add_verify_remove_round_trip(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD, role=ADMIN)
    users.add("bob", PASSWORD + "!")
    assert users.verify("alice", PASSWORD) == auth.User("alice", ADMIN)
    assert users.verify("bob", PASSWORD + "!").role == ANNOTATOR
    assert users.verify("alice", "wrong password!") is None
    assert users.verify("nobody", PASSWORD) is None
    users.remove("bob")
    assert [u.name for u in users.users()] == ["alice"]


def test_file_holds_hashes_only_and_is_private(tmp_path):
    path = tmp_path / "users.json"
    UsersFile(path).add("alice", PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text
    assert json.loads(text)["users"]["alice"]["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_add_refuses_duplicates_short_passwords_bad_names_and_roles(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD)
    with pytest.raises(AuthError, match="already exists"):
        users.add("alice", PASSWORD)
    users.add("alice", PASSWORD + "2", role=ADMIN, replace=True)
    assert users.verify("alice", PASSWORD + "2").role == ADMIN
    with pytest.raises(AuthError, match="at least"):
        users.add("carol", "short")
    with pytest.raises(AuthError, match="control or format"):
        users.add("ev\u202eil", PASSWORD)
    with pytest.raises(AuthError, match="unknown role"):
        users.add("dave", PASSWORD, role="root")
    with pytest.raises(AuthError, match="no user"):
        users.remove("zed")


@pytest.mark.parametrize("content", ["", "[]", '{"version": 1, "users": {"a": {"role": "admin", "hash": "x"}}}',
                                     "[" * 5000, '{"version": 2, "users": {}}'])
def test_malformed_users_file_is_an_error_not_an_empty_list(tmp_path, content):
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(AuthError, match="users file|argon2"):
        UsersFile(path).load()


def test_permissions():
    assert auth.allowed(ANNOTATOR, "label") and auth.allowed(ADMIN, "label")
    for action in ("import", "import_path", "build", "delete", "export_all", "label_as_other"):
        assert not auth.allowed(ANNOTATOR, action)
        assert auth.allowed(ADMIN, action)
    with pytest.raises(ValueError, match="unknown action"):
        auth.allowed(ADMIN, "sudo")


def test_anonymous_names_are_distinct():
    names = {auth.anonymous_name() for _ in range(100)}
    assert len(names) == 100 and all(n.startswith(auth.ANONYMOUS_PREFIX) for n in names)


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_needs_no_sign_in(address):
    auth.check_bind(address, sign_in=False)


@pytest.mark.parametrize("address", ["", "0.0.0.0", "192.168.1.4", "::", None])
def test_other_addresses_need_sign_in(address):
    with pytest.raises(AuthError, match="refusing to serve"):
        auth.check_bind(address, sign_in=False)
    auth.check_bind(address, sign_in=True)


def test_oidc_configured_needs_the_whole_auth_table():
    full = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
            "client_id": "id", "client_secret": "secret", "server_metadata_url": "https://idp/.well-known"}
    assert auth.oidc_configured({"auth": full})
    named = {k: full[k] for k in ("redirect_uri", "cookie_secret")}
    named["corp"] = {k: full[k] for k in ("client_id", "client_secret", "server_metadata_url")}
    assert auth.oidc_configured({"auth": named})
    assert not auth.oidc_configured({"auth": {k: v for k, v in full.items() if k != "cookie_secret"}})
    assert not auth.oidc_configured({})
    assert not auth.oidc_configured(None)


def test_oidc_role_from_admin_list():
    assert auth.oidc_role({"email": "a@x.org"}, ["a@x.org"]) == ADMIN
    assert auth.oidc_role({"email": "b@x.org", "sub": "123"}, ["a@x.org"]) == ANNOTATOR
    assert auth.oidc_role({"sub": "123"}, ["123"]) == ADMIN


def test_resolve_data_path_inside_and_outside(tmp_path):
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "pool.jsonl").write_text("{}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    (inside / "link.jsonl").symlink_to(secret)
    assert auth.resolve_data_path("pool.jsonl", [inside]) == (inside / "pool.jsonl").resolve()
    assert auth.resolve_data_path(inside / "pool.jsonl", [inside]).name == "pool.jsonl"
    outside = [secret, inside / ".." / "secret.txt", inside / "link.jsonl", "/etc/passwd",
               "/proc/self/maps", "../secret.txt", "/nonexistent/file"]
    messages = set()
    for path in outside:
        with pytest.raises(AuthError, match="outside the configured data folders") as info:
            auth.resolve_data_path(path, [inside])
        messages.add(str(info.value))
    assert len(messages) == 1  # the same words whether or not the file exists
    with pytest.raises(AuthError, match="no file"):
        auth.resolve_data_path("missing.jsonl", [inside])
    with pytest.raises(AuthError, match="path import is off"):
        auth.resolve_data_path(inside / "pool.jsonl", [])


def test_resolve_model_path_only_inside_the_model_folders(tmp_path):
    models, private = tmp_path / "models", tmp_path / "private"
    (models / "enc").mkdir(parents=True)
    (private / "enc").mkdir(parents=True)
    (models / "link").symlink_to(private / "enc")
    assert auth.resolve_model_path("enc", [models]) == (models / "enc").resolve()
    assert auth.resolve_model_path(models / "enc" / ".." / "enc", [models]) == (models / "enc").resolve()
    messages = set()
    for path in (private / "enc", models / "link", models / ".." / "private" / "enc", "../private/enc",
                 "/etc", "/nonexistent/folder", "~"):
        with pytest.raises(AuthError, match="outside the configured model folders") as info:
            auth.resolve_model_path(path, [models])
        messages.add(str(info.value))
    assert len(messages) == 1  # the same words whether or not the folder exists
    with pytest.raises(AuthError, match="no folder 'missing'"):
        auth.resolve_model_path("missing", [models])
    with pytest.raises(AuthError, match="model folders are off"):
        auth.resolve_model_path(models / "enc", [])
    assert auth.model_dirs(f"{models}{os.pathsep}{private}") == [models.resolve(), private.resolve()]


def test_a_sign_in_code_is_good_once_and_only_briefly():
    codes = auth.CodeExchange(ttl_s=0.2)
    code = codes.issue("token-1")
    assert codes.redeem("forged") is None and codes.redeem(None) is None
    assert codes.redeem(code) == "token-1"
    assert codes.redeem(code) is None  # spent
    late = codes.issue("token-2")
    __import__("time").sleep(0.3)
    assert codes.redeem(late) is None  # expired


def test_sign_in_hours(monkeypatch):
    monkeypatch.delenv(auth.SIGNIN_HOURS_ENV, raising=False)
    assert auth.signin_hours() == auth.SIGNIN_HOURS
    assert auth.signin_hours("0.5") == 0.5
    for bad in ("0", "-1", "soon", "nan", "1e9"):
        with pytest.raises(AuthError, match=auth.SIGNIN_HOURS_ENV):
            auth.signin_hours(bad)


def test_a_new_password_changes_the_credential(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("alice", PASSWORD)
    before = users.credential("alice")
    assert before and users.credential("nobody") is None
    users.add("alice", PASSWORD + "?", replace=True)
    assert users.credential("alice") != before


def test_users_command(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["users", "--file", str(path), "add", "alice", "--role", "admin", "--password-stdin"]) == 0
    assert main(["users", "--file", str(path), "list"]) == 0
    assert "alice\tadmin" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("short\n"))
    assert main(["users", "--file", str(path), "add", "bob", "--password-stdin"]) == 2
    assert capsys.readouterr().err.startswith("error: a password needs")
    assert main(["users", "--file", str(path), "remove", "alice"]) == 0
    assert UsersFile(path).users() == []
