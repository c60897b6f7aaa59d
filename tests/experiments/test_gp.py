"""hyre_engine.experiments.gp."""

import numpy as np
import pytest

from hyre_engine import experiments
from hyre_engine.experiments import gp


def test_gp_sample_is_seeded_and_smooth():
    x = np.linspace(-1, 1, 50)
    a, b = gp.gp_sample(x, seed=1), gp.gp_sample(x, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, gp.gp_sample(x, seed=2))
    assert np.abs(np.diff(a)).max() < 0.5  # lengthscale 0.5 on a step of 0.04
    with pytest.raises(ValueError, match="1-D"):
        gp.gp_sample(np.zeros((3, 2)), seed=0)


def test_run_gp_quick_writes_offline_html(tmp_path):
    html = tmp_path / "gp.html"
    result = gp.run_gp(seeds=1, quick=True, html_path=html)
    n = result["n"]
    for stats in result["summary"].values():
        assert len(stats["mean"]) == len(n) and all(v >= 0 for v in stats["mean"])
    assert result["summary"]["hyre"]["mean"][0] == result["summary"]["uniform"]["mean"][0]
    ratios = result["explained_variance_ratio"]["mean"]
    assert len(ratios) == 3 and ratios == sorted(ratios, reverse=True) and sum(ratios) <= 1 + 1e-6
    text = html.read_text()
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    assert '<script src="http' not in text  # no CDN: the figure must work offline
    assert "explained variance" in experiments.format_table(result)
