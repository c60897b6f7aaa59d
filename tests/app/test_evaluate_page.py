"""The Evaluate page: run the protocol on the demo pool, see curves and a table, cached
in the store; and the pure helpers behind it (pages/_data_helpers.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.store import Store
from pages import _data_helpers as dh

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120
TARGETS = ["ada", "ben"]


def _evaluate_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception, at.exception
    return at


def _result(groups=("g1", "g2")) -> dict:
    n = [0, 1, 5]
    return {
        "n": n,
        "groups": {
            g: {"n_examples": 10, "methods": {"hyre": {"mean": [0.5, 0.6, 0.8], "std": [0.0, 0.1, 0.05]},
                                              "uniform": {"mean": [0.5, 0.5, 0.5], "std": [0, 0, 0]}},
                "effective_heads": {"mean": [20.0, 15.0, 5.0], "std": [0, 1, 1]}}
            for g in groups
        },
        "summary": {"hyre": {"mean": [0.5, 0.6, 0.8], "std_over_groups": [0, 0, 0]},
                    "uniform": {"mean": [0.5, 0.5, 0.5], "std_over_groups": [0, 0, 0]}},
    }


def test_parse_n_values():
    assert dh.parse_n_values("10, 0,1 , 5,5") == [0, 1, 5, 10]
    with pytest.raises(ValueError, match="'x' is not a whole number"):
        dh.parse_n_values("0, x")
    with pytest.raises(ValueError, match="0 or more"):
        dh.parse_n_values("-1")
    with pytest.raises(ValueError, match="at least one"):
        dh.parse_n_values(" , ")


def test_result_key_depends_on_every_option():
    base = {"pool_id": "p", "n_values": [0, 1], "seeds": 5, "methods": ["hyre"]}
    key = dh.result_key(**base)
    assert key == dh.result_key(**dict(reversed(list(base.items()))))  # order-free
    assert key.startswith(dh.RESULT_PREFIX)
    for change in ({"seeds": 6}, {"n_values": [0, 2]}, {"methods": ["uniform"]}, {"pool_id": "q"}):
        assert dh.result_key(**{**base, **change}) != key, change


def test_curves_figure_has_a_band_and_a_line_per_method():
    result = _result()
    fig = dh.curves_figure(result["n"], result["groups"]["g1"]["methods"])
    lines = [t for t in fig.data if t.fill is None]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["HyRe", "Uniform ensemble"]  # the legend's order
    assert len(bands) == 2
    hyre_band = next(t for t in bands if t.legendgroup == "hyre")
    # upper edge left to right, then lower edge back: mean +- std, clipped to [0, 1]
    np.testing.assert_allclose(hyre_band.y, [0.5, 0.7, 0.85, 0.75, 0.5, 0.5])
    with pytest.raises(ValueError, match="2 means for 3 values of n"):
        dh.curves_figure([0, 1, 5], {"hyre": {"mean": [0.5, 0.6], "std": [0, 0]}})


def test_result_csv_and_summary_table():
    result = _result()
    frame = pd.read_csv(io.StringIO(dh.result_csv(result)))
    # 2 groups x 2 methods x 3 n, plus 2 summary methods x 3 n
    assert len(frame) == 2 * 2 * 3 + 2 * 3
    row = frame[(frame["group"] == "g2") & (frame["method"] == "hyre") & (frame["n"] == 1)].iloc[0]
    assert (row["mean"], row["std"]) == (0.6, 0.1)
    table = dh.summary_table(result)
    assert list(table.index) == ["HyRe", "Uniform ensemble"]
    assert list(table.columns) == ["n=0", "n=1", "n=5"]
    assert table.attrs["effective_heads"] == [20.0, 15.0, 5.0]


def test_config_for_ensemble_finds_the_same_ensemble(app_db):
    path, info = app_db
    with Store(path) as store:
        record = store.list_ensembles().set_index("ensemble_id").loc[info["ensemble_id"]].to_dict()
    config = dh.config_for_ensemble(record, backbone=None, train_groups=["crowd"])
    assert dh.settings_match(config, record)
    assert config.n_heads == info["n_heads"] and config.train_groups == ["crowd"]


@pytest.mark.slow
def test_run_evaluation_shows_curves_table_csv_and_caches(app_db):
    path, info = app_db
    at = _evaluate_page()
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
    table = at.dataframe[0].value
    assert list(table.index) == ["HyRe", "Uniform ensemble", "Best head (oracle)"]
    # no labels yet: HyRe's weights are uniform, so it scores exactly as the uniform ensemble
    assert table.loc["HyRe", "n=0"] == pytest.approx(table.loc["Uniform ensemble", "n=0"])
    assert any("computed in" in c.value for c in at.caption)
    assert at.get("download_button")

    with Store(path) as store:
        keys = store._fetch_df("SELECT key FROM results")["key"].tolist()
        cached = [store.get_result(k) for k in keys if k.startswith(dh.RESULT_PREFIX)]
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
