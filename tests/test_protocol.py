import json

import numpy as np
import pytest

from hyre_engine.protocol import (
    adaptation_order,
    diagnostic_means,
    evaluate_group,
    format_table,
    summarise,
)


def _group(n_rows=120, n_heads=20, seed=0):
    """A target group whose labels are head 3's opinion; the other heads are noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_rows, n_heads))
    y = (logits[:, 3] > 0).astype(float)
    return logits, y


def test_hyre_finds_the_matching_head_and_uniform_does_not():
    logits, y = _group()
    result = evaluate_group(logits, y, n_values=[0, 5, 20], seeds=5, methods=["uniform", "hyre", "best_head_oracle"])
    hyre = result.methods["hyre"]["mean"]
    uniform = result.methods["uniform"]["mean"]
    assert hyre[0] == pytest.approx(uniform[0])  # no labels: HyRe is the uniform ensemble
    assert hyre[2] > uniform[2] + 0.25
    assert result.methods["best_head_oracle"]["mean"][2] == 1.0
    eff = result.effective_heads["mean"]
    assert eff[0] == pytest.approx(20) and eff[2] < eff[1] < eff[0]


def test_active_order_is_deterministic_and_never_repeats():
    logits, y = _group()
    for strategy in ("random", "bald", "entropy"):
        first = adaptation_order(logits, y, 15, strategy=strategy, beta=1.0, loss="zero-one", seed=4)
        again = adaptation_order(logits, y, 15, strategy=strategy, beta=1.0, loss="zero-one", seed=4)
        np.testing.assert_array_equal(first, again)
        assert len(set(first.tolist())) == 15
    with pytest.raises(ValueError, match="unknown strategy"):
        adaptation_order(logits, y, 3, strategy="greedy", beta=1.0, loss="zero-one", seed=0)


def test_single_and_finetune_methods_use_what_they_are_given():
    logits, y = _group()
    single = np.where(y == 1, 2.0, -2.0)  # a perfect single model
    calls = []

    def finetune(adapt_sets):
        calls.append([len(a) for a in adapt_sets])
        return np.stack([logits] * len(adapt_sets))

    result = evaluate_group(logits, y, n_values=[0, 4], seeds=2, single=single, finetune=finetune)
    assert result.methods["single"]["mean"] == [1.0, 1.0]
    assert calls == [[4, 4]]  # one call for every seed; n = 0 reuses the untouched heads
    assert result.methods["finetune"]["mean"][1] == pytest.approx(result.methods["uniform"]["mean"][1])


def test_summary_follows_the_json_contract():
    groups = {name: evaluate_group(*_group(seed=i), n_values=[0, 1, 5], seeds=3, methods=["uniform", "hyre"])
              for i, name in enumerate(["alice", "bob"])}
    result = summarise([0, 1, 5], groups)
    json.dumps(result)
    assert result["n"] == [0, 1, 5]
    for method in ("uniform", "hyre"):
        expected = np.mean([groups[g].methods[method]["mean"] for g in groups], axis=0)
        np.testing.assert_allclose(result["summary"][method]["mean"], expected, atol=1e-6)
        for g in groups:
            stats = result["groups"][g]["methods"][method]
            assert len(stats["mean"]) == len(stats["std"]) == 3
            assert all(0 <= v <= 1 for v in stats["mean"])
    assert "hyre" in format_table(result)


def test_diagnostic_means_average_the_groups_per_n():
    groups = {"g1": {"effective_heads": {"mean": [20.0, 10.0]}}, "g2": {"effective_heads": {"mean": [10.0, 4.0]}},
              "g3": {"effective_heads": {}}}  # a group without diagnostics is skipped
    result = {"n": [0, 5], "groups": groups, "summary": {}}
    assert diagnostic_means(result, "effective_heads") == [15.0, 7.0]
    assert diagnostic_means(result, "weight_entropy") is None
    with pytest.raises(ValueError, match="unknown diagnostic 'heads'"):
        diagnostic_means(result, "heads")
    groups["g2"]["effective_heads"]["mean"] = [10.0]
    with pytest.raises(ValueError, match=r"one mean per value of n \(2\), got lengths \[2, 1\]"):
        diagnostic_means(result, "effective_heads")


def test_diagnostic_means_of_a_real_summary_match_its_table():
    groups = {name: evaluate_group(*_group(seed=i), n_values=[0, 5], seeds=2, methods=["hyre"])
              for i, name in enumerate(["alice", "bob"])}
    result = json.loads(json.dumps(summarise([0, 5], groups)))  # as stored
    eff = diagnostic_means(result, "effective_heads")
    expected = np.mean([groups[g].effective_heads["mean"] for g in groups], axis=0)
    np.testing.assert_allclose(eff, expected, atol=1e-6)
    assert f"{eff[1]:.1f}" in format_table(result).splitlines()[-2]


def test_bad_input_is_refused():
    logits, y = _group()
    with pytest.raises(ValueError, match="logits"):
        evaluate_group(logits[:, 0], y)
    with pytest.raises(ValueError, match="unknown loss"):
        evaluate_group(logits, y, loss="hinge")
    with pytest.raises(ValueError, match="n values"):
        evaluate_group(logits, y, n_values=[-1])
    with pytest.raises(ValueError, match="unknown methods"):
        evaluate_group(logits, y, methods=["hyre", "magic"])
