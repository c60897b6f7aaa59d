"""The Evaluate page: run the protocol on the demo pool, see curves and a table, cached
in the store (its helpers: tests/test_pages_shared.py)."""

from __future__ import annotations

import json

import pytest

from hyre_engine.store import Store
from pages._shared.evaluation import RESULT_PREFIX

TARGETS = ["ada", "ben"]


@pytest.mark.slow
def test_run_evaluation_shows_curves_table_csv_and_caches(app_db, open_page):
    path, info = app_db
    at = open_page("pages/evaluate.py")
    # the demo ensemble was trained on the crowd: that is the default, the rest are targets
    assert at.multiselect(key="eval_train").value == ["crowd"]
    assert "crowd" not in at.multiselect(key="eval_targets").value
    assert "finetune" not in at.multiselect(key="eval_methods").value

    at.text_input(key="eval_n").set_value("0, x").run()
    assert any("'x' is not a whole number" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "eval_run"]

    at.text_input(key="eval_n").set_value("0, 1, 5")
    at.multiselect(key="eval_targets").set_value(TARGETS)
    at.multiselect(key="eval_methods").set_value(["uniform", "hyre", "best_head_oracle"])
    at.number_input(key="eval_seeds").set_value(2).run()
    at.button(key="eval_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    assert len(charts) == 1 + len(TARGETS)  # the mean over groups, then one per group
    # one legend, on the summary: the per-group charts' own ran over their titles
    layouts = [json.loads(c.proto.spec)["layout"] for c in charts]
    assert layouts[0].get("showlegend", True) and not any(lay["showlegend"] for lay in layouts[1:])
    table = at.dataframe[0].value
    assert list(table.index) == ["HyRe", "Uniform ensemble", "Best head (oracle)"]
    # no labels yet: HyRe's weights are uniform, so it scores exactly as the uniform ensemble
    assert table.loc["HyRe", "n=0"] == pytest.approx(table.loc["Uniform ensemble", "n=0"])
    assert any("computed in" in c.value for c in at.caption)
    assert at.get("download_button")

    with Store(path) as store:
        keys = store._fetch_df("SELECT key FROM results")["key"].tolist()
        cached = [store.get_result(k).value for k in keys if k.startswith(RESULT_PREFIX)]
        # the evaluation reused the demo ensemble: nothing was trained
        assert set(store.list_ensembles()["ensemble_id"]) == {info["ensemble_id"]}
    assert len(cached) == 1
    assert sorted(cached[0]["groups"]) == TARGETS and cached[0]["n"] == [0, 1, 5]
    assert cached[0]["ensemble_id"] == info["ensemble_id"]

    # a rerun with the same settings reads the store instead of computing again
    at.run()
    assert not at.exception, at.exception
    assert any("cached result" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 1 + len(TARGETS)
    assert at.button(key="eval_run").label == "Run again"
