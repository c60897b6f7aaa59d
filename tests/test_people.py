"""hyre_engine.people: agreement between people on the pairs both judged, history, the permission check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hyre_engine import auth, people


def _rows(table: dict[str, str]) -> pd.DataFrame:
    """{annotator: judgements per pair p0, p1, ...} ('.' = not judged) -> judgement rows."""
    out = []
    for who, marks in table.items():
        for i, mark in enumerate(marks):
            if mark != ".":
                out.append({"annotator": who, "pool_id": "pool", "pair_id": f"p{i}",
                            "judgement": {"a": "a", "b": "b", "t": "tie"}[mark]})
    return pd.DataFrame(out)


def test_agreement_counts_only_pairs_both_judged_with_a_side():
    rows = _rows({"ann": "aabbt.", "bob": "abbbaa", "cid": "....bb"})
    agree = people.label_agreement(rows).set_index(["user_a", "user_b"])
    # ann and bob: p0..p3 both judged (ann's tie on p4 has no side): same on p0, p2, p3
    assert agree.loc[("ann", "bob"), "n_both"] == 4 and agree.loc[("ann", "bob"), "n_same"] == 3
    assert agree.loc[("ann", "bob"), "agreement"] == pytest.approx(0.75)
    # kappa by hand: ann says a on 2/4, bob on 1/4: p_e = .5*.25 + .5*.75 = .5
    assert agree.loc[("ann", "bob"), "kappa"] == pytest.approx((0.75 - 0.5) / 0.5)
    # bob and cid: p4 (a vs b), p5 (a vs b): never the same
    assert agree.loc[("bob", "cid"), "agreement"] == 0.0
    assert ("ann", "cid") not in agree.index  # ann's only overlap with cid is a tie
    assert list(agree["n_both"]) == sorted(agree["n_both"], reverse=True)


def test_kappa_is_undefined_when_chance_explains_everything():
    agree = people.label_agreement(_rows({"x": "aaa", "y": "aaa"}))
    assert agree["agreement"].iloc[0] == 1.0 and math.isnan(agree["kappa"].iloc[0])
    assert people.label_agreement(_rows({"x": "a.", "y": ".a"})).empty


def test_kappa_matches_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    a, b = rng.choice(["a", "b"], 40), rng.choice(["a", "b"], 40)
    rows = _rows({"u": "".join(a), "v": "".join(b)})
    assert people.label_agreement(rows)["kappa"].iloc[0] == pytest.approx(cohen_kappa_score(a, b))


def test_rename_merge_and_delete_ask_the_one_permission_check(tmp_path):
    from hyre_engine.store import Store

    assert people.may_manage(auth.ADMIN) and not people.may_manage(auth.ANNOTATOR)
    with Store(tmp_path / "p.duckdb") as store:
        frame = pd.DataFrame({"pair_id": ["p0", "p1"], "prompt": ["q0", "q1"], "response_a": ["a0", "a1"],
                              "response_b": ["b0", "b1"]})
        pool = store.add_pool("t", frame)
        store.put_ensemble(ensemble_id="e", pool_id=pool, backbone_id="t", config={"n_heads": 2},
                           weights=b"\0", train_fingerprint="t")
        sid = store.get_or_create_session(user="kim", pool_id=pool, ensemble_id="e")
        store.add_session_label(sid, row_index=1, pair_id="p1", label="b")
        for call in (lambda r: people.rename_user(store, "kim", "kimberly", role=r),
                     lambda r: people.merge_users(store, "kim", "lee", role=r),
                     lambda r: people.delete_user(store, "kim", role=r)):
            with pytest.raises(PermissionError, match="'annotator' role may not"):
                call(auth.ANNOTATOR)
        assert list(store.list_users()["user"]) == ["kim"]
        store.set_note(sid, row_index=0, pair_id="p0", comment="unlabelled pair")
        history = people.session_history(store, sid)
        assert history["row_index"].tolist() == [1] and history["comment"].tolist() == [""]
        noted = people.unlabelled_notes(store, sid)  # the note on the pair not labelled: listed apart
        assert noted[["row_index", "comment", "response_a"]].values.tolist() == [[0, "unlabelled pair", "a0"]]
        assert history["response_b"].tolist() == ["b1"]
        people.rename_user(store, "kim", "kimberly", role=auth.ADMIN, actor="root")
        assert list(store.list_users()["user"]) == ["kimberly"]
