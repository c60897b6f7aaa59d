"""AppTest of the People page (counts, agreement, rename / merge / delete after a confirmation, export)
and of the guidelines: set on the Data page, shown above the pair, open on a first visit, sanitised."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.store import Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120

pytestmark = pytest.mark.slow


def _app(user: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = user
    return at.run()


def _label(at: AppTest, keys: str) -> None:
    for key in keys:
        at.button(key=f"btn_{key}").click().run()
        assert not at.exception, at.exception


def test_people_counts_agreement_then_merge_rename_delete_after_confirming(app_db):
    path, info = app_db
    at = _app("kim")
    _label(at, "aab")
    # "kimab", the name the old shortcut bug made, labels too (it starts at the same pairs)
    at = _app("kimab")
    _label(at, "ab")
    at.switch_page("pages/people.py").run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 2, "the people table and the agreement table"
    people = at.dataframe[0].value.set_index("person")
    assert people.loc["kim", "labels"] == 3 and people.loc["kimab", "labels"] == 2
    agree = at.dataframe[1].value
    assert agree["pairs both judged"].iloc[0] >= 1  # both started at the same informative pairs

    # the export of this user's labels reads back as TRL JSONL
    download = at.get("download_button")
    assert download, "no download button"
    at.selectbox(key="people_person").set_value("kimab").run()
    at.selectbox(key="people_op").set_value("merge").run()
    at.selectbox(key="people_into").set_value("kim").run()
    at.button(key="people_go").click().run()
    assert at.warning and "Merge **kimab** into **kim**" in at.warning[0].value
    with Store(path) as store:  # nothing happens before the confirmation
        assert set(store.list_users()["user"]) == {"kim", "kimab"}
    at.button(key="people_confirm").click().run()
    assert not at.exception, at.exception
    assert "Merged kimab into kim" in at.success[0].value
    people = at.dataframe[0].value.set_index("person")
    assert list(people.index) == ["kim"] and 3 <= people.loc["kim", "labels"] <= 5

    at.selectbox(key="people_op").set_value("rename").run()
    at.text_input(key="people_new_name").input("kim lee").run()
    at.button(key="people_go").click().run()
    at.button(key="people_confirm").click().run()
    assert "Renamed kim to kim lee" in at.success[0].value
    at.selectbox(key="people_op").set_value("delete").run()
    at.button(key="people_go").click().run()
    at.button(key="people_cancel").click().run()
    with Store(path) as store:
        assert list(store.list_users()["user"]) == ["kim lee"]
    at.button(key="people_go").click().run()
    at.button(key="people_confirm").click().run()
    assert not at.exception, at.exception
    with Store(path) as store:
        assert store.list_users().empty
        assert (store._cursor().execute("SELECT count(*) FROM label_audit WHERE action = 'delete'")
                .fetchall()[0][0]) >= 3


def test_an_annotator_sees_people_but_cannot_manage_them(app_db):
    at = _app("ann")
    _label(at, "a")
    at.session_state["hyre_role"] = "annotator"
    at.switch_page("pages/people.py").run()
    assert not at.exception, at.exception
    assert any("Only an admin" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "people_go"]
    assert at.selectbox(key="people_export_scope").options == ["My labels"]


def test_guidelines_set_on_the_data_page_show_above_the_pair_sanitised(app_db):
    path, info = app_db
    at = _app("writer")
    at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    key = f"guidelines_text_{info['pool_id']}"
    at.text_area(key=key).input("## Rules\nPrefer **honest** answers. ![x](http://example.com/x.png) "
                                "<script>alert(1)</script> [bad](javascript:alert(1))").run()
    at.button(key="guidelines_save").click().run()
    assert not at.exception, at.exception
    with Store(path) as store:
        assert store.get_guidelines(info["pool_id"]).markdown.startswith("## Rules")

    fresh = _app("newcomer")  # a first visit: open above the pair
    panel = [e for e in fresh.expander if e.label == "Labelling guidelines"]
    assert panel, "no guidelines panel on the Label page"
    assert panel[0].proto.expanded, "a first visit opens the guidelines"
    bodies = [h.proto.body for h in fresh.get("html") if "honest" in h.proto.body]
    assert len(bodies) == 1, "the guidelines are rendered once"
    shown = bodies[0]
    assert "<strong>honest</strong>" in shown and "<h2>Rules</h2>" in shown
    # the image is dropped, the script and the javascript: link stay visible as plain text
    assert "<img" not in shown and "<script" not in shown and "href=\"javascript" not in shown
    assert "&lt;script&gt;" in shown
