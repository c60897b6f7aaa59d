"""Fixtures of the experiment tests."""

import pytest


@pytest.fixture
def aligned_fractions():
    """A check of a classification experiment's JSON: per method one mean and one std per n,
    means are accuracies in [0, 1], stds are not negative."""

    def check(result: dict) -> None:
        n = result["n"]
        for method, stats in result["summary"].items():
            assert len(stats["mean"]) == len(n) == len(stats["std"]), method
            assert all(0.0 <= v <= 1.0 for v in stats["mean"]), method
            assert all(v >= 0 for v in stats["std"]), method

    return check
