"""The Data page: import by upload and by path, bad files refused with the store
unchanged, building an ensemble, deleting (its helpers: tests/test_pages_shared.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.store import Store
from pages._shared import data_io


def _pools(path: Path) -> list[tuple]:
    with Store(path) as store:
        pools = store.list_pools()
    return sorted(zip(pools["pool_id"], pools["name"], pools["n_pairs"], pools["n_labels"], strict=True))


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ---------------------------------------------------------------- the page


@pytest.mark.slow
def test_upload_preview_import_and_delete(app_db, design_csv, open_page):
    path, _ = app_db
    before = _pools(path)
    at = open_page("pages/data.py")
    at.file_uploader(key="data_upload").set_value(("prefs.csv", design_csv(), "text/csv")).run()
    at.button(key="data_preview").click().run()
    assert not at.exception, at.exception
    metrics = _metrics(at)
    assert (metrics["Judgements"], metrics["Pairs"], metrics["Groups"]) == ("24", "12", "2")
    preview = at.dataframe[1].value
    assert len(preview) == data_io.PREVIEW_ROWS and preview["prompt"].iloc[0] == "Question 0?"
    assert _pools(path) == before, "a preview wrote to the store"

    at.text_input(key="data_pool_name").set_value("mine").run()
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    assert any("Imported pool 'mine'" in s.value for s in at.success)
    after = {p[1]: p for p in _pools(path)}
    assert set(after) == {p[1] for p in before} | {"mine"}
    assert after["mine"][2:] == (12, 24)
    # the build section now targets the new pool, training on both groups (no crowd)
    assert at.selectbox(key="data_build_pool").value == after["mine"][0]
    assert at.multiselect(key=f"data_train_{after['mine'][0]}").value == ["g1", "g2"]

    # importing the same name again is refused, nothing changes
    at.file_uploader(key="data_upload").set_value(("prefs.csv", design_csv(n_pairs=3), "text/csv"))
    at.text_input(key="data_pool_name").set_value("mine").run()
    at.button(key="data_import").click().run()
    assert any("already exists" in e.value and "another name" in e.value for e in at.error)
    assert not any("replace=True" in e.value for e in at.error)  # plain words, not an API argument
    assert {p[1]: p for p in _pools(path)}["mine"][2:] == (12, 24)

    at.button(key=f"data_del_pool_ok_{after['mine'][0]}").click().run()
    assert not at.exception, at.exception
    assert _pools(path) == before
    assert any("Deleted pool 'mine'" in s.value for s in at.success)


BAD_UPLOADS = [
    ("wrong-columns.csv", b"question,answer_1,answer_2\nq,x,y\n", "missing column"),
    ("empty.jsonl", b"", "empty"),
    ("latin1.csv", "prompt,response_a,response_b,label\nq,caf\u00e9,y,a\n".encode("latin-1"), "not valid UTF-8"),
    ("bad-label.jsonl", b'{"prompt": "q", "response_a": "x", "response_b": "y", "label": "c"}\n',
     "line 1, column 'label'"),
    ("too-large.csv", b"prompt,response_a,response_b,label\n" + b"q,x,y,a\n" * (data_io.MAX_UPLOAD_BYTES // 8 + 1),
     "uploads are limited to 50 MB"),
]


@pytest.mark.slow
def test_bad_uploads_are_errors_and_write_nothing(app_db, open_page):
    path, _ = app_db
    before = _pools(path)
    at = open_page("pages/data.py")
    for name, data, message in BAD_UPLOADS:
        at.file_uploader(key="data_upload").set_value((name, data, "application/octet-stream")).run()
        at.button(key="data_import").click().run()
        assert not at.exception, (name, at.exception)
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "Nothing was imported" in errors[0], (name, errors)
        assert message in errors[0] and name in errors[0], (name, errors)
        assert not at.metric, f"{name}: a preview was shown for a bad file"
        assert _pools(path) == before, f"{name} changed the store"


@pytest.mark.slow
def test_path_import_of_ratings(app_db, tmp_path, monkeypatch, open_page):
    path, _ = app_db
    monkeypatch.setenv("HYRE_DATA_DIRS", str(tmp_path))
    ratings = tmp_path / "ratings.csv"
    rows = ["user,item,rating,text"] + [f"u{u},i{i},{(i * (u + 1)) % 5},Text number {i}"
                                        for u in range(3) for i in range(5)]
    ratings.write_text("\n".join(rows) + "\n")
    at = open_page("pages/data.py")
    at.segmented_control(key="data_source").set_value("path").run()
    at.text_input(key="data_path").set_value(str(tmp_path / "nope.csv")).run()
    at.button(key="data_preview").click().run()
    assert any("no file 'nope.csv' in the configured data folders" in e.value for e in at.error)

    at.text_input(key="data_path").set_value(str(ratings))
    at.selectbox(key="data_format").set_value("ratings").run()
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    pools = {p[1]: p for p in _pools(path)}
    assert "ratings" in pools
    with Store(path) as store:
        groups = store.pool_groups(pools["ratings"][0])
    assert sorted(groups["group"]) == ["u0", "u1", "u2"]


@pytest.mark.slow
def test_build_use_and_delete_ensemble(app_db, open_page, upload_pool, finish_builds):
    path, info = app_db
    at = open_page("pages/data.py")
    pool_id = upload_pool(at, path, 6)
    at.number_input(key="data_heads").set_value(8)
    at.number_input(key="data_hidden").set_value(16)
    at.checkbox(key="data_calibrate").uncheck()
    at.multiselect(key=f"data_train_{pool_id}").set_value(["g1"]).run()
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    [job] = finish_builds(path)
    at.run()  # the page a second later: the build has ended on the server
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    assert any(f"Built: ensemble {job.ensemble_id} for pool 'tiny'" in s.value for s in at.success)
    with Store(path) as store:
        built = store.list_ensembles(pool_id)
        assert len(built) == 1 and built["config"].iloc[0]["n_heads"] == 8
        assert built["meta"].iloc[0]["train_groups"] == ["g1"]
        assert store.get_head_predictions(built["ensemble_id"].iloc[0], pool_id).shape == (6, 8)
    ensemble_id = built["ensemble_id"].iloc[0]
    assert ensemble_id == job.ensemble_id

    at.button(key=f"data_use_{job.job_id}").click().run()
    assert not at.exception, at.exception
    in_use = [m.value for m in at.markdown if "in use" in m.value]
    assert any("**tiny**" in m for m in in_use) and any("K = 8" in m for m in in_use), in_use

    at.button(key=f"data_del_ens_ok_{ensemble_id}").click().run()
    assert not at.exception, at.exception
    with Store(path) as store:
        assert store.list_ensembles(pool_id).empty
        assert info["ensemble_id"] in set(store.list_ensembles()["ensemble_id"])
    # the app fell back to the demo ensemble
    in_use = [m.value for m in at.markdown if "in use" in m.value]
    assert any("**demo**" in m for m in in_use) and any("K = 20" in m for m in in_use), in_use
    assert any("has been deleted since" in c.value for c in at.caption)


@pytest.mark.slow
def test_a_build_runs_on_the_server_and_another_tab_follows_it(app_db, open_page, upload_pool, finish_builds):
    from hyre_engine import jobs
    from pages._shared import context

    path, _ = app_db
    first = open_page("pages/data.py")
    pool_id = upload_pool(first, path, 6)
    first.number_input(key="data_heads").set_value(4)
    first.number_input(key="data_hidden").set_value(8)
    first.checkbox(key="data_calibrate").uncheck()
    first.multiselect(key=f"data_train_{pool_id}").set_value(["g1"]).run()
    second = open_page("pages/data.py")  # another tab: its own session
    # another writer holds the store: the build waits at its first write, so it is seen running
    with context.get_store(str(path))._write_lock:
        first.button(key="data_build").click().run()
        assert not first.exception, first.exception
        running = jobs.REGISTRY.running(str(path), pool_id)
        assert running is not None and running.started_by  # the tab's run ended, the build did not
        second.run()
        assert not second.exception, second.exception
        assert any("**Building** shared · K = 4 on pool **tiny**" in m.value for m in second.markdown)
        [bar] = second.get("progress")
        assert bar.proto.text.startswith(("Loading the embedding model", "Embedding the texts"))
        # a second build of the same pool is refused while this one runs
        first.button(key="data_build").click().run()
        assert any("is being built already" in w.value for w in first.warning)
    [job] = finish_builds(path)
    assert job.status == jobs.DONE
    second.run()
    assert not second.exception, second.exception
    assert not second.get("progress")
    assert any(f"Built: ensemble {job.ensemble_id} for pool 'tiny'" in s.value for s in second.success)
    # the new pool and ensemble are in the sidebar's picker of a tab opened now, without a restart
    # (AppTest leaves the sidebar of a switched page empty, so a fresh tab on the Label page)
    third = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=120)
    third.run()
    assert third.sidebar.selectbox(key="hyre_pool_id").options == ["demo", "tiny"]
