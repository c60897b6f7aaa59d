"""hyre_engine.experiments.labelers."""

import numpy as np
import pytest

from hyre_engine import experiments
from hyre_engine.experiments import labelers


def test_labeler_votes_known_answer_and_shape_check():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    w = np.array([[1.0, -2.0], [-1.0, 0.5]])
    assert labelers.labeler_votes(x, w).tolist() == [[1, 0], [0, 1], [0, 0]]
    with pytest.raises(ValueError, match="share d"):
        labelers.labeler_votes(x, np.ones((2, 3)))


def test_run_labelers_quick_shape(aligned_fractions):
    result = labelers.run_labelers(seeds=1, quick=True)
    assert result["prior_scale"] == [0.0, 3.0]
    assert len(result["max_agreement"]) == len(result["majority_agreement"]) == 2
    assert all(0 <= v <= 1 for v in result["max_agreement"] + result["majority_agreement"])
    assert set(result["summary"]) == {"hyre", "uniform", "single"}
    aligned_fractions(result)
    # no labels: HyRe is the uniform ensemble
    assert result["summary"]["hyre"]["mean"][0] == result["summary"]["uniform"]["mean"][0]
    assert "prior scale" in experiments.format_table(result)
