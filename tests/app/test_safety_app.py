"""The app on a network: sign-in and roles, anonymous identities, path import limits,
a refused non-local bind, two tabs of one session, undoing a reset, profile imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from hyre_engine import auth
from hyre_engine.store import Store
from pages._shared import signin

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 120
ADMIN_PASSWORD = "admin-password-1"
ANNOTATOR_PASSWORD = "annotator-pass-1"


@pytest.fixture
def users(tmp_path, monkeypatch) -> auth.UsersFile:
    """A users file with one admin ('root') and one annotator ('ann'): sign-in is on."""
    file = auth.UsersFile(tmp_path / "users.json")
    file.add("root", ADMIN_PASSWORD, role=auth.ADMIN)
    file.add("ann", ANNOTATOR_PASSWORD, role=auth.ANNOTATOR)
    monkeypatch.setenv(auth.USERS_FILE_ENV, str(file.path))
    return file


def _app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def _label_page_shown(at: AppTest) -> bool:
    return any("Which answer is better?" in m.value for m in at.markdown)


def _sessions(path: Path) -> list[str]:
    with Store(path) as store:
        return sorted(store.list_sessions()["user"])


# ---------------------------------------------------------------- sign-in and roles


def test_nothing_but_the_sign_in_form_until_signed_in(app_db, users):
    at = _app(user="victim")
    at.run()
    assert not at.exception, at.exception
    assert not _label_page_shown(at) and not at.file_uploader
    assert [t.label for t in at.text_input] == ["Name", "Password"]
    _sign_in(at, "ann", "wrong password!")
    assert [e.value for e in at.error] == ["Wrong name or password."]
    assert not _label_page_shown(at)
    _sign_in(at, "nobody", ANNOTATOR_PASSWORD)
    assert [e.value for e in at.error] == ["Wrong name or password."]


def test_annotator_labels_as_themselves_and_cannot_reach_data(app_db, users):
    path, _ = app_db
    at = _sign_in(_app(user="victim").run(), "ann", ANNOTATOR_PASSWORD)
    assert _label_page_shown(at)
    assert at.session_state[signin.IDENTITY_KEY] == auth.User("ann", auth.ANNOTATOR)
    assert "user" not in at.query_params  # the address never chooses whose labels these are
    at.button(key="btn_a").click().run()
    assert not at.exception, at.exception
    assert _sessions(path) == ["ann"]
    # the Data page is not in an annotator's menu; run directly, it refuses in plain words
    at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    assert not at.file_uploader and not any("Delete" in b.label for b in at.button)
    assert any("is for admins" in i.value for i in at.info)
    with Store(path) as store:
        assert len(store.list_pools()) == 1


def test_admin_reaches_the_data_page(app_db, users):
    at = _sign_in(_app().run(), "root", ADMIN_PASSWORD)
    at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Data"]
    assert at.file_uploader


# ---------------------------------------------------------------- binding


def test_unauthenticated_non_local_bind_is_refused(app_db):
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at = _app(user="someone")
        at.run()
    finally:
        st_config.set_option("server.address", old)
    assert not at.exception, at.exception
    assert not _label_page_shown(at) and not at.text_input
    assert any("refusing to serve on 0.0.0.0" in e.value for e in at.error)


def test_non_local_bind_with_sign_in_shows_only_the_form(app_db, users):
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at = _app()
        at.run()
    finally:
        st_config.set_option("server.address", old)
    assert not at.error and not _label_page_shown(at)
    assert [t.label for t in at.text_input] == ["Name", "Password"]


def test_launcher_refuses_a_non_local_bind_without_sign_in(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), auth.USERS_FILE_ENV: str(tmp_path / "none.json")}
    for args, extra in ((["--server.address", "0.0.0.0"], {}), ([], {"HYRE_ADDRESS": "192.168.1.5"})):
        out = subprocess.run([sys.executable, APP, *args], cwd=REPO, env={**env, **extra},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out
        assert out.stderr.startswith("error: refusing to serve on "), out.stderr
        assert "Traceback" not in out.stderr


# ---------------------------------------------------------------- local use


def test_each_tab_gets_its_own_anonymous_name_and_a_reload_keeps_it(app_db):
    path, _ = app_db
    first, second = _app(), _app()
    names = []
    for at in (first, second):
        at.run()
        assert not at.exception, at.exception
        name = at.query_params["user"][0] if isinstance(at.query_params["user"], list) else at.query_params["user"]
        assert name.startswith(auth.ANONYMOUS_PREFIX)
        at.button(key="btn_a").click().run()
        names.append(name)
    assert names[0] != names[1]
    assert _sessions(path) == sorted(names)
    reload = _app(user=names[0]).run()
    assert reload.session_state[signin.IDENTITY_KEY].name == names[0]
    reload.button(key="btn_b").click().run()
    assert _sessions(path) == sorted(names)  # the same session continues


# ---------------------------------------------------------------- path import


def test_path_import_outside_the_data_folders_is_refused(app_db, tmp_path, monkeypatch):
    path, _ = app_db
    inside, outside = tmp_path / "allowed", tmp_path / "private"
    inside.mkdir()
    outside.mkdir()
    secret = outside / "prefs.csv"
    secret.write_text("prompt,response_a,response_b,label\nSECRET LINE,a,b,a\n")
    (inside / "link.csv").symlink_to(secret)
    monkeypatch.setenv(auth.DATA_DIRS_ENV, str(inside))
    at = _app().run()
    at.switch_page("pages/data.py").run()
    at.segmented_control(key="data_source").set_value("path").run()
    for typed in (str(secret), str(inside / "link.csv"), str(inside / ".." / "private" / "prefs.csv"),
                  "/etc/passwd", "../private/prefs.csv"):
        at.text_input(key="data_path").set_value(typed).run()
        at.button(key="data_preview").click().run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert errors == ["**Nothing was imported.** that path is outside the configured data folders"], typed
        shown = " ".join(m.value for m in [*at.markdown, *at.caption, *at.error])
        assert "SECRET" not in shown and not at.metric and not at.dataframe
    with Store(path) as store:
        assert len(store.list_pools()) == 1


def test_path_import_is_off_without_data_folders(app_db, monkeypatch):
    monkeypatch.delenv(auth.DATA_DIRS_ENV, raising=False)
    at = _app().run()
    at.switch_page("pages/data.py").run()
    at.segmented_control(key="data_source").set_value("path").run()
    assert not at.exception, at.exception
    assert any("Import by path is off" in i.value for i in at.info)
    assert not [t for t in at.text_input if t.key == "data_path"]


def test_a_model_folder_outside_the_model_folders_is_refused_unseen(app_db, tmp_path, monkeypatch):
    models, private = tmp_path / "models", tmp_path / "private"
    (models / "enc").mkdir(parents=True)
    (private / "enc").mkdir(parents=True)
    (private / "enc" / "config.json").write_text('{"SECRET": 1}')
    (models / "link").symlink_to(private / "enc")
    monkeypatch.setenv(auth.MODEL_DIRS_ENV, str(models))
    at = _app().run()
    at.switch_page("pages/data.py").run()
    at.radio(key="data_backbone").set_value("folder").run()
    for typed in (str(private / "enc"), str(models / "link"), str(models / ".." / "private" / "enc"),
                  "../private/enc", "/etc", "/proc/self"):
        at.text_input(key="data_backbone_path").set_value(typed).run()
        assert not at.exception, at.exception
        assert [e.value for e in at.error] == [
            "**Not a usable model folder:** that path is outside the configured model folders"], typed
        assert at.button(key="data_build").disabled, typed
        shown = " ".join(m.value for m in [*at.markdown, *at.caption, *at.error, *at.info])
        assert "SECRET" not in shown and "config.json" not in shown
    at.text_input(key="data_backbone_path").set_value("enc").run()  # inside: accepted
    assert not at.error and not at.button(key="data_build").disabled
    monkeypatch.delenv(auth.MODEL_DIRS_ENV)
    at.run()
    assert any("Model folders are off" in i.value for i in at.info)
    assert not [t for t in at.text_input if t.key == "data_backbone_path"] and at.button(key="data_build").disabled


# ---------------------------------------------------------------- labels: two tabs, undoing a reset


def _labels(path: Path, user: str) -> list[tuple[int, str]]:
    with Store(path) as store:
        session = store.list_sessions(user=user)["session_id"].iloc[0]
        rows = store.session_labels(session)
    return list(zip(rows["row_index"].tolist(), rows["label"].tolist(), strict=True))


def _labels_metric(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == "Labels")


def test_a_pair_answered_in_another_tab_is_said_so_and_the_page_refreshes(app_db):
    path, _ = app_db
    first, second = _app(user="dora").run(), _app(user="dora").run()  # two tabs, one pair shown in both
    first.button(key="btn_a").click().run()
    assert len(_labels(path, "dora")) == 1
    second.button(key="btn_b").click().run()
    assert not second.exception, second.exception
    assert any("already answered in another tab" in w.value for w in second.warning)
    assert _labels(path, "dora") == _labels(path, "dora")[:1] and _labels(path, "dora")[0][1] == "a"
    assert _labels_metric(second).startswith("1")  # the stored state, not the click
    second.button(key="btn_b").click().run()  # the refreshed page asks a new pair
    assert [label for _, label in _labels(path, "dora")] == ["a", "b"]


def test_a_reset_can_be_undone(app_db):
    path, _ = app_db
    at = _app(user="erin").run()
    at.button(key="btn_a").click().run()
    at.button(key="btn_b").click().run()
    before = _labels(path, "erin")
    at.button(key="btn_reset").click().run()
    at.button(key="btn_reset_confirm").click().run()
    assert _labels(path, "erin") == [] and _labels_metric(at).startswith("0")
    at.button(key="btn_undo_reset").click().run()
    assert not at.exception, at.exception
    assert _labels(path, "erin") == before
    assert _labels_metric(at).startswith("2")
    assert any("Reset undone" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "btn_undo_reset"]


# ---------------------------------------------------------------- profile imports


def _fingerprint(path: Path, ensemble_id: str) -> str:
    from hyre_engine.ensemble import fingerprint
    from hyre_engine.pipeline import load_model

    with Store(path) as store:
        return fingerprint(load_model(store, ensemble_id))


# A pair of the small demo pool (its first prompt).
POOL_PAIR = "science-01:child-short~child-thorough"


def _profile_bytes(info: dict, *, fingerprint: str, weights=None, pair_id: str = POOL_PAIR) -> bytes:
    k = info["n_heads"]
    doc = {
        "user": "carol", "ensemble_id": info["ensemble_id"], "fingerprint": fingerprint,
        "weights": list(range(1, k + 1)) if weights is None else weights,
        "labels": [{"pair_id": pair_id, "label": "a"}], "beta": 1.0, "created_at": "2026-01-01T00:00:00+00:00",
    }
    return json.dumps(doc).encode()


def test_profile_imports_refuse_nonsense_and_ask_before_replacing(app_db):
    path, info = app_db
    fp, k = _fingerprint(path, info["ensemble_id"]), info["n_heads"]
    at = _app(user="admin-at-home").run()
    at.switch_page("pages/profiles.py").run()
    assert not at.exception, at.exception
    bad = {
        "huge.json": (_profile_bytes(info, fingerprint=fp, weights=[1e308] * k), "at most 1e+06"),
        "elsewhere.json": (_profile_bytes(info, fingerprint=fp, pair_id="not-in-this-pool"),
                           "pairs this pool does not have"),
        "deep.json": (b'{"user": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested more than"),
    }
    for name, (raw, message) in bad.items():
        at.file_uploader(key="profiles_upload").upload(name, raw, "application/json").run()
        assert not at.exception, (name, at.exception)
        assert any(message in e.value for e in at.error), (name, [e.value for e in at.error])
        assert not [b for b in at.button if b.key == "profiles_import"], name
    # an existing profile of that name is replaced only after a confirmation
    with Store(path) as store:
        store.save_profile(user="carol", ensemble_id=info["ensemble_id"], weights=[1.0 / k] * k,
                           labels=[{"pair_id": POOL_PAIR, "label": "b"}], meta={})
    at.file_uploader(key="profiles_upload").upload(
        "carol.json", _profile_bytes(info, fingerprint=fp), "application/json").run()
    assert any("already exists" in w.value for w in at.warning)
    assert at.button(key="profiles_import").disabled
    at.checkbox(key="profiles_replace:carol").check().run()
    at.button(key="profiles_import").click().run()
    assert not at.exception, at.exception
    with Store(path) as store:
        assert store.get_profile("carol", info["ensemble_id"]).labels[0]["label"] == "a"


def test_an_annotator_imports_no_profile(app_db, users):
    at = _sign_in(_app().run(), "ann", ANNOTATOR_PASSWORD)
    at.switch_page("pages/profiles.py").run()
    assert not at.exception, at.exception
    assert not [u for u in at.file_uploader if u.key == "profiles_upload"]
    assert any("Importing a profile" in i.value for i in at.info)
    # nor renames, merges or deletes people: the signed-in role is the one every page asks
    at.switch_page("pages/people.py").run()
    assert not at.exception, at.exception
    assert any("Only an admin" in c.value for c in at.caption)
