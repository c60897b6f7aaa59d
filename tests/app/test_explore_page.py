"""Explore page: AppTest on the small demo DB (its engine code: tests/test_pca.py, tests/test_profiles.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.pca import fit_pool_pca, project_function
from hyre_engine.personal import personal_margins
from hyre_engine.pipeline import pool_differences
from hyre_engine.reweight import example_losses, weights_from_losses
from hyre_engine.store import Store
from hyre_engine.store.records import ProfileMeta

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


def _stars(at: AppTest) -> list[dict]:
    """The map's person markers (the chosen source's own function)."""
    chart = next(c for c in at.get("plotly_chart") if "explore_map_chart" in c.proto.id)
    return [t for t in json.loads(chart.proto.spec)["data"] if t.get("marker", {}).get("symbol") in ("star", "diamond")]


def _save_profile(path: Path, info: dict, user: str, w: np.ndarray, v: np.ndarray) -> None:
    with Store(path) as store:
        store.save_profile(user=user, ensemble_id=info["ensemble_id"], weights=w, labels=[],
                           meta=ProfileMeta(beta=1.0, source="import", v=tuple(v.tolist()), lam=0.1))


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
    with Store(path) as store:
        diffs = pool_differences(store, info["pool_id"], store.get_ensemble(info["ensemble_id"]).backbone_id)
    profile_w = np.random.default_rng(0).dirichlet(np.ones(info["n_heads"]))
    profile_v = np.random.default_rng(1).normal(scale=2.0, size=diffs.shape[1])
    _save_profile(path, info, "dana", profile_w, profile_v)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = "alice"
    at.run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception

    # alice's own session is the default colouring; its weights are HyRe's on her labels
    assert at.selectbox(key="explore_source").value.startswith("session:")
    losses = example_losses(z[labels["row_index"].to_numpy()], (labels["label"] == "a").to_numpy(float))
    # at the beta the Label page labels with: the ensemble's calibrated one (no session override)
    with Store(path) as store:
        label_beta = store.get_ensemble(info["ensemble_id"]).meta.beta
    expected = weights_from_losses(losses.sum(axis=0), beta=label_beta)
    k = info["n_heads"]
    assert _metric(at, "Effective heads") == f"{1 / np.sum(expected**2):.1f} / {k}"
    assert float(_metric(at, "Effective heads").split()[0]) < k

    # alice's own function is the star; she personalises with the personal head
    assert [t["name"] for t in _stars(at)] == ["alice (HyRe + personal head)"]

    # uniform colouring: every head counts, and no one's function is drawn
    at.selectbox(key="explore_source").set_value("uniform").run()
    assert not at.exception, at.exception
    assert _metric(at, "Effective heads") == f"{k:.1f} / {k}"
    assert _stars(at) == []

    # a saved profile's star is its own function logit(sigmoid(Z) w) + D v, projected as a head would be
    at.selectbox(key="explore_source").set_value("profile:dana").run()
    assert not at.exception, at.exception
    (star,) = _stars(at)
    assert star["name"] == "dana (HyRe + personal head)"
    pca = fit_pool_pca(np.ascontiguousarray(z, dtype=np.float32))
    where = project_function(pca, personal_margins(z, diffs, profile_w, profile_v))
    np.testing.assert_allclose([star["x"][0], star["y"][0]], where[:2], rtol=1e-4, atol=1e-4)
    # v moved it off the weighted average of the heads, HyRe's own point
    assert np.abs(where[:2] - profile_w @ pca.head_coords_[:, :2]).max() > 1e-2
    at.selectbox(key="explore_source").set_value("uniform").run()

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
