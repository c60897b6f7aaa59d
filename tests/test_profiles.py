"""hyre_engine.profiles: weight sources, the profile document, similarity, best-of-n ranking."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hyre_engine import profiles as prof
from hyre_engine.reweight import example_losses, weights_from_losses


def test_weights_from_labels_matches_batch_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 6))
    rows = np.array([3, 7, 11, 2])
    labels = np.array(["a", "b", "b", "a"], dtype=object)
    w = prof.weights_from_labels(z, rows, labels, beta=2.0)
    y = (labels == "a").astype(float)
    np.testing.assert_allclose(w, weights_from_losses(example_losses(z[rows], y).sum(0), beta=2.0))
    np.testing.assert_allclose(prof.weights_from_labels(z, [], [], beta=1.0), np.full(6, 1 / 6))
    with pytest.raises(ValueError, match="labels must be 'a' or 'b'"):
        prof.weights_from_labels(z, [1], ["skip"])
    with pytest.raises(ValueError, match=r"rows must be in \[0, 30\)"):
        prof.weights_from_labels(z, [30], ["a"])


def test_uniform_probability_is_mean_of_sigmoids():
    z = np.array([[0.0, 0.0], [np.log(3), -np.log(3)], [10.0, 10.0]])
    np.testing.assert_allclose(prof.uniform_probability(z), [0.5, 0.5, 1 / (1 + np.exp(-10))])


def test_clean_user_is_bounded_and_never_empty():
    assert prof.clean_user("  ada   lovelace ") == "ada lovelace"
    assert prof.clean_user(None) == prof.clean_user("   ") == prof.DEFAULT_USER
    assert len(prof.clean_user("x" * 100)) == prof.MAX_USER_CHARS


# ---------------------------------------------------------------- profile files


FP = "fedcba9876543210"


def _doc(**changes) -> bytes:
    doc = {
        "user": "dana", "ensemble_id": "e1", "fingerprint": FP, "weights": [1.0, 3.0],
        "labels": [{"pair_id": "p", "label": "b"}], "beta": 1.0, "created_at": "now",
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_parse_profile_accepts_and_normalises():
    profile = prof.parse_profile(_doc(), n_heads=2, ensemble_fingerprint=FP)
    np.testing.assert_allclose(profile.weights, [0.25, 0.75])
    assert profile.user == "dana" and profile.labels == [{"pair_id": "p", "label": "b"}]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x80not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (_doc(weights=None) .replace(b'"weights": null, ', b""), "lacks weights"),
        (_doc(fingerprint="0000000000000000"), f"fingerprint 0000000000000000.*is {FP}"),
        (_doc(weights=[1.0, 2.0, 3.0]), "3 entries; the ensemble has 2 heads"),
        (b'{"user": "d", "ensemble_id": "e", "fingerprint": "' + FP.encode() + b'", "weights": [NaN, 1], '
         b'"labels": [], "beta": 1, "created_at": "x"}', "finite numbers"),
        (_doc(weights=[-1.0, 2.0]), "non-negative"),
        (_doc(labels=[{"pair_id": "p", "label": "c"}]), r"labels\[0\]"),
        (_doc(beta=-1), "'beta'"),
        (_doc(beta=1e300), "'beta'"),
        (_doc(weights=[1e308, 1e308]), "at most 1e\\+06"),
        (_doc(labels=[{"pair_id": "p", "label": "a"}, {"pair_id": "p", "label": "b"}]), "more than once"),
        (b'{"user": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than"),
        (b'{"beta": ' + b"9" * 5000 + b"}", "too many digits"),
        (b" " * (prof.MAX_PROFILE_BYTES + 1), "at most 1,048,576"),
    ],
)
def test_parse_profile_refuses_bad_files(raw, match):
    with pytest.raises(prof.ProfileError, match=match):
        prof.parse_profile(raw, n_heads=2, ensemble_fingerprint=FP)


def test_parse_profile_refuses_labels_on_pairs_not_in_the_pool():
    labels = [{"pair_id": f"x{i}", "label": "a"} for i in range(5000)] + [{"pair_id": "p", "label": "b"}]
    with pytest.raises(prof.ProfileError, match="5,000 of the 5,001 labels are on pairs this pool does not have"):
        prof.parse_profile(_doc(labels=labels), n_heads=2, ensemble_fingerprint=FP, pair_ids=["p", "q"])
    assert prof.parse_profile(_doc(), n_heads=2, ensemble_fingerprint=FP, pair_ids=["p", "q"]).labels


def test_profile_document_round_trips():
    source = prof.WeightSource("session:s", "erin", "session", "")
    w = prof.Weights(source, np.array([0.2, 0.8]), [{"pair_id": "p", "row_index": 4, "label": "a"}], 2.0)
    doc = prof.profile_document(w, user="erin", ensemble_id="e1", ensemble_fingerprint=FP)
    assert set(prof.PROFILE_KEYS) <= set(doc)
    back = prof.parse_profile(json.dumps(doc).encode(), n_heads=2, ensemble_fingerprint=FP)
    np.testing.assert_allclose(back.weights, w.weights)
    assert back.beta == 2.0 and back.labels == w.labels
    assert w.heaviest == 1 and w.effective_heads == pytest.approx(1 / (0.04 + 0.64))


def test_profile_round_trip_keeps_the_personal_head():
    source = prof.WeightSource("session:s", "erin", "session", "")
    v = np.array([0.5, -1.25, 3.0])
    w = prof.Weights(source, np.array([0.2, 0.8]), [], 1.5, v, 0.3)
    doc = prof.profile_document(w, user="erin", ensemble_id="e1", ensemble_fingerprint=FP)
    back = prof.parse_profile(json.dumps(doc).encode(), n_heads=2, ensemble_fingerprint=FP, dim=3)
    np.testing.assert_array_equal(back.v, v)
    assert back.lam == 0.3 and back.beta == 1.5
    # what a saved profile keeps in the store carries v and lambda the same way
    meta = prof.stored_meta(back, "import")
    assert meta["v"] == v.tolist() and meta["lambda"] == 0.3
    hyre_only = prof.profile_document(prof.Weights(source, np.array([0.5, 0.5]), [], 1.0), user="erin",
                                      ensemble_id="e1", ensemble_fingerprint=FP)
    assert "v" not in hyre_only and prof.parse_profile(json.dumps(hyre_only).encode(), n_heads=2,
                                                       ensemble_fingerprint=FP).v is None
    for bad, match in (({"v": [1.0, 2.0]}, "2 entries; the backbone's embeddings have 3"),
                       ({"v": [1.0, float("nan"), 2.0]}, "finite numbers"),
                       ({"lambda": 0.0}, "'lambda'")):
        with pytest.raises(prof.ProfileError, match=match):
            prof.parse_profile(json.dumps({**doc, **bad}).encode(), n_heads=2, ensemble_fingerprint=FP, dim=3)


def test_a_profile_made_on_another_backbone_is_refused():
    source = prof.WeightSource("session:s", "erin", "session", "")
    w = prof.Weights(source, np.array([0.2, 0.8]), [], 1.0)
    base = "all-MiniLM-L6-v2@abc/max256/tpl-1/model"
    doc = prof.profile_document(w, user="erin", ensemble_id="e1", ensemble_fingerprint=FP, backbone_id=base)
    raw = json.dumps(doc).encode()
    assert prof.parse_profile(raw, n_heads=2, ensemble_fingerprint=FP, backbone_id=base).user == "erin"
    with pytest.raises(prof.ProfileError, match=r"made on the backbone .*\+ft|current ensemble uses .*\+ft"):
        prof.parse_profile(raw, n_heads=2, ensemble_fingerprint=FP, backbone_id=base + "+ft-full-0123")


# ---------------------------------------------------------------- best-of-n ranking


def test_rank_candidates_personalised_against_uniform():
    # candidate 1 is best on average; head 1 alone prefers candidate 3
    rewards = np.array([[2.0, 0.0], [1.0, 0.5], [0.0, 1.0]])
    ranked = prof.rank_candidates(rewards, np.array([0.0, 1.0]))
    assert ranked.candidate.tolist() == [3, 2, 1]
    assert ranked.uniform_rank.tolist() == [3, 2, 1]
    assert ranked.moved.tolist() == [2, 0, -2]
    np.testing.assert_allclose(ranked.uniform, [0.5, 0.75, 1.0])
    assert (ranked.best_personalised, ranked.best_uniform) == (3, 1)
    same = prof.rank_candidates(rewards, np.array([0.5, 0.5]))
    assert (same.moved == 0).all()
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(3,\)"):
        prof.rank_candidates(rewards, np.ones(3) / 3)


def test_best_of_n_ranks_by_the_full_personal_reward():
    # the heads are indifferent; the personal head prefers what lies along v
    rewards = np.zeros((3, 2))
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    ranked = prof.rank_candidates(rewards, np.array([0.5, 0.5]), v=np.array([0.0, 2.0]), embeddings=x)
    assert ranked.candidate.tolist()[0] == 2 and ranked.personalised.tolist() == [2.0, 0.0, 0.0]
    # where the heads agree on a pair (both prefer a by 1), the reward difference is the personal
    # model's margin logit(sum_k w_k sigmoid(z_k)) + v . (phi(a) - phi(b))
    r = np.array([[1.0, 3.0], [0.0, 2.0]])
    w, v = np.array([0.25, 0.75]), np.array([0.5, -1.0])
    scored = prof.rank_candidates(r, w, v=v, embeddings=x[:2])
    from hyre_engine.personal import personal_margins

    margin = personal_margins((r[0] - r[1])[None, :], (x[0] - x[1])[None, :], w, v)[0]
    by_candidate = dict(zip(scored.candidate.tolist(), scored.personalised.tolist(), strict=True))
    assert by_candidate[1] - by_candidate[2] == pytest.approx(margin)
    with pytest.raises(ValueError, match="needs the candidates' embeddings"):
        prof.rank_candidates(rewards, np.array([0.5, 0.5]), v=np.ones(2))


def test_ranks_within_float_noise_are_shared():
    ranked = prof.rank_candidates(np.array([[1.0], [1.0 + 1e-12], [0.0]]), np.array([1.0]))
    assert ranked.personalised_rank.tolist() == [1, 1, 3]
    assert ranked.candidate.tolist() == [1, 2, 3]  # equals keep candidate order


def test_example_candidates_are_the_first_prompts_answers_in_pool_order():
    pairs = pd.DataFrame({
        "prompt": ["q1", "q1", "q2"], "response_a": ["x", "y", "z"], "response_b": ["y", "w", "x"],
    })
    assert prof.example_candidates(pairs, 3) == ("q1", ["x", "y", "w"])
    assert prof.example_candidates(pairs.iloc[:0], 3) == ("", [])


# ---------------------------------------------------------------- comparing people


def test_similarity_and_agreement_matrices():
    w = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    sim = prof.similarity_matrix(w)
    np.testing.assert_allclose(sim, [[1, 0, 2**-0.5], [0, 1, 2**-0.5], [2**-0.5, 2**-0.5, 1]])
    # head 0 prefers A on both items, head 1 B on item 0 only
    z = np.array([[2.0, -2.0], [2.0, 1.0]])
    agree = prof.agreement_matrix(z, w[:2])
    np.testing.assert_allclose(agree, [[1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(ValueError, match="non-zero"):
        prof.similarity_matrix(np.zeros((2, 3)))
    np.testing.assert_allclose(prof.compare("cosine", w, z), sim)
    np.testing.assert_allclose(prof.compare("agreement", w[:2], z), agree)
    with pytest.raises(ValueError, match="unknown measure 'x'; valid: cosine, agreement"):
        prof.compare("x", w, z)


def test_most_alike_skips_the_diagonal():
    m = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.3], [0.9, 0.3, 1.0]])
    nearest, score = prof.most_alike(m)
    assert nearest.tolist() == [2, 2, 0]
    np.testing.assert_allclose(score, [0.9, 0.3, 0.9])
    with pytest.raises(ValueError, match="square"):
        prof.most_alike(np.ones((1, 1)))


def test_inspect_head_against_the_uniform_ensemble():
    # head 0 agrees with the mean on pairs 0 and 1, and departs from it most on pair 2
    z = np.array([[3.0, 1.0], [-2.0, -1.0], [-4.0, 5.0]])
    seen = prof.inspect_head(z, 0, labels=[{"row_index": 0, "label": "a"}, {"row_index": 2, "label": "b"},
                                           {"pair_id": "no row", "label": "a"}], n_departures=2)
    np.testing.assert_allclose(seen.uniform_p, prof.uniform_probability(z))
    assert seen.agrees.tolist() == [True, True, False]
    assert seen.same_choice == pytest.approx(2 / 3)
    assert seen.departures.tolist()[0] == 2
    assert seen.n_labels == 2 and seen.head_accuracy == 1.0 and seen.uniform_accuracy == 0.5
    assert prof.inspect_head(z, 1).head_accuracy is None
    with pytest.raises(ValueError, match=r"head must be in \[0, 2\)"):
        prof.inspect_head(z, 2)
