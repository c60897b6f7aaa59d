"""Explore page: AppTest on the small demo DB, and its helpers on constructed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.pca import FunctionPCA
from hyre_engine.reweight import example_losses, weights_from_losses
from hyre_engine.store import Store
from pages import _explore_helpers as hx

APP = str(Path(__file__).resolve().parents[2] / "app.py")
# First runs import torch and fit the PCA: generous, the machine may be shared.
TIMEOUT = 120
# alice's session: the first labels of this persona in the pool.
ALICE_LIKE = "maya"
N_ALICE = 8


def _seed_session(path: Path, info: dict, user: str, group: str, n: int) -> pd.DataFrame:
    with Store(path) as store:
        sid = store.get_or_create_session(user=user, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"])
        labels = store.pool_labels(info["pool_id"], groups=[group]).iloc[:n]
        for row in labels.itertuples():
            store.add_session_label(sid, row_index=row.row_index, pair_id=row.pair_id, label=row.label)
        z = store.get_head_predictions(info["ensemble_id"], info["pool_id"])
    return labels, z


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _chart_types(at: AppTest, key_part: str) -> set[str]:
    out = set()
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if key_part in chart.proto.id:
            out |= {trace.get("type", "scatter") for trace in spec["data"]}
    return out


@pytest.mark.slow
def test_explore_page_colours_by_user_and_names_axes(app_db):
    path, info = app_db
    labels, z = _seed_session(path, info, "alice", ALICE_LIKE, N_ALICE)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = "alice"
    at.run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception

    # alice's own session is the default colouring; its weights are HyRe's on her labels
    assert at.selectbox(key="explore_source").value.startswith("session:")
    losses = example_losses(z[labels["row_index"].to_numpy()], (labels["label"] == "a").to_numpy(float))
    expected = weights_from_losses(losses.sum(axis=0), beta=1.0)
    k = info["n_heads"]
    assert _metric(at, "Effective heads") == f"{1 / np.sum(expected**2):.1f} / {k}"
    assert float(_metric(at, "Effective heads").split()[0]) < k

    # uniform colouring: every head counts
    at.selectbox(key="explore_source").set_value("uniform").run()
    assert not at.exception, at.exception
    assert _metric(at, "Effective heads") == f"{k:.1f} / {k}"

    # the 3-D view draws a 3-D scatter; 2-D a flat one
    assert _chart_types(at, "explore_map_chart") == {"scatter"}
    at.segmented_control(key="explore_view").set_value("3d").run()
    assert not at.exception, at.exception
    assert _chart_types(at, "explore_map_chart") == {"scatter3d"}

    # another component: its heading and its pairs follow
    at.selectbox(key="explore_component").set_value(1).run()
    assert not at.exception, at.exception
    assert any("What each end of PC2 favours" in m.value for m in at.markdown)
    favours = [m.value for m in at.markdown if "end favours" in m.value and "heads at the + end" in m.value]
    assert len(favours) == 2 * 5

    # the head inspector follows the chosen head
    at.number_input(key="explore_head").set_value(3).run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value  # the inspector's table is the page's last
    head_p = 1 / (1 + np.exp(-z[table["pair"].to_numpy() - 1, 3].astype(np.float64)))
    np.testing.assert_allclose(table["head P(A)"].to_numpy(), head_p, rtol=1e-6)


# ---------------------------------------------------------------- helpers


def _pca_of(z: np.ndarray) -> FunctionPCA:
    return FunctionPCA(n_components=2).fit(z)


def test_weights_from_labels_matches_batch_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 6))
    rows = np.array([3, 7, 11, 2])
    labels = np.array(["a", "b", "b", "a"], dtype=object)
    w = hx.weights_from_labels(z, rows, labels, beta=2.0)
    y = (labels == "a").astype(float)
    np.testing.assert_allclose(w, weights_from_losses(example_losses(z[rows], y).sum(0), beta=2.0))
    np.testing.assert_allclose(hx.weights_from_labels(z, [], [], beta=1.0), np.full(6, 1 / 6))
    with pytest.raises(ValueError, match="labels must be 'a' or 'b'"):
        hx.weights_from_labels(z, [1], ["skip"])
    with pytest.raises(ValueError, match=r"rows must be in \[0, 30\)"):
        hx.weights_from_labels(z, [30], ["a"])


def test_component_pairs_and_end_probabilities_on_a_known_axis():
    # heads 0-2 like A on items 0-1 and B on items 4-5; heads 3-5 the opposite; items 2-3 agree
    z = np.zeros((6, 6))
    z[[0, 1], :3], z[[0, 1], 3:] = 3.0, -3.0
    z[[4, 5], :3], z[[4, 5], 3:] = -3.0, 3.0
    z[[2, 3]] = 1.0
    pca = _pca_of(z)
    top, bottom = hx.component_pairs(pca, 2)
    assert set(top[0].tolist()) | set(bottom[0].tolist()) == {0, 1, 4, 5}
    assert {frozenset(top[0].tolist()), frozenset(bottom[0].tolist())} == {frozenset({0, 1}), frozenset({4, 5})}
    plus, minus = hx.end_probabilities(z, pca, 0, top[0], share=0.5)
    # on the most positive items the + end likes A more than the - end, by construction of the sign
    assert (plus > minus).all()
    np.testing.assert_allclose(np.sort(np.r_[plus, minus]), np.sort(1 / (1 + np.exp([-3, -3, 3, 3]))))
    plus_b, minus_b = hx.end_probabilities(z, pca, 0, bottom[0], share=0.5)
    assert (plus_b < minus_b).all()


def test_axis_profile_counts_what_each_end_favours():
    pairs = pd.DataFrame(
        {
            "response_a": ["one two", "a b c d e f", "x"],
            "response_b": ["1 2 3 4 5 6", "y", "p q r s"],
            "meta": [
                {"style_a": "short", "style_b": "thorough", "topic": "t"},
                {"style_a": "thorough", "style_b": "short"},
                {"style_a": "short", "style_b": "thorough"},
            ],
        }
    )
    # + end favours A on item 0 and B on item 1 (negative loading): short both times
    table = hx.axis_profile(pairs, np.array([0]), np.array([1])).set_index("attribute")
    assert table.loc["style", "+ end favours"] == "short ×2"
    assert table.loc["style", "− end favours"] == "thorough ×2"
    assert table.loc["words (mean)", "+ end favours"] == "2"  # (2 + 1) / 2 rounds to 2
    assert table.loc["words (mean)", "− end favours"] == "6"
    assert "topic" not in table.index  # not a per-response attribute


def test_uniform_probability_is_mean_of_sigmoids():
    z = np.array([[0.0, 0.0], [np.log(3), -np.log(3)], [10.0, 10.0]])
    np.testing.assert_allclose(hx.uniform_probability(z), [0.5, 0.5, 1 / (1 + np.exp(-10))])
