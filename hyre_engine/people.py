"""The people who label: their history, how often they agree, and managing them (pandas).

- `session_history`: a session's labels with the pair's texts and the person's notes;
  `unlabelled_notes`: the notes on pairs of the session that carry no label.
- `label_agreement`: for every two people, on the pairs both judged with a preference,
  how often they chose the same answer (and Cohen's kappa, agreement beyond chance).
- `rename_user`, `merge_users`, `delete_user`: each asks `may_manage` first, the one
  permission check of these actions (``auth.allowed(role, "manage_users")``).
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hyre_engine import auth
from hyre_engine.numerics import LABEL_A, PAIR_LABELS

if TYPE_CHECKING:
    from hyre_engine.store import Store

# The auth.PERMISSIONS action of renaming, merging and deleting people.
MANAGE_USERS = "manage_users"
HISTORY_COLUMNS = ("seq", "row_index", "pair_id", "label", "created_at", "prompt", "response_a",
                   "response_b", "comment", "flagged")
# A note (comment, flag) on a pair the session has no label for: what History and the exports show.
UNLABELLED_NOTE_COLUMNS = ("row_index", "pair_id", "prompt", "response_a", "response_b", "comment", "flagged",
                           "updated_at")
AGREEMENT_COLUMNS = ("user_a", "user_b", "n_both", "n_same", "agreement", "kappa")


def session_history(store: Store, session_id: str, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The session's labels, newest first, with the pair's texts and the note: DataFrame(HISTORY_COLUMNS).

    ``pairs``: the pool's pairs in row_index order (the app's cached frame), read when None.
    A pair with only a note (no label) is not listed here: `unlabelled_notes` lists those.
    """
    rows = store.session_labels(session_id)
    if pairs is None:
        pairs = store.pool_pairs(store.get_session(session_id).pool_id, with_meta=False)
    texts = pairs.iloc[rows["row_index"].to_numpy(dtype=np.int64)]
    out = rows.assign(**{c: texts[c].to_numpy() for c in ("prompt", "response_a", "response_b")})
    notes = store.session_notes(session_id)[["row_index", "comment", "flagged"]]
    out = out.merge(notes, on="row_index", how="left")
    out["comment"] = out["comment"].fillna("").astype(str)
    out["flagged"] = out["flagged"].fillna(False).astype(bool)
    return out.sort_values("seq", ascending=False, kind="stable").reset_index(drop=True)[list(HISTORY_COLUMNS)]


def unlabelled_notes(store: Store, session_id: str, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The session's notes on pairs it has no label for (never labelled, or the label deleted),
    newest first, with the pair's texts: DataFrame(UNLABELLED_NOTE_COLUMNS).

    ``pairs``: the pool's pairs in row_index order, read when None.
    """
    notes = store.session_notes(session_id)
    notes = notes[~notes["row_index"].isin(set(store.session_labels(session_id)["row_index"]))]
    if pairs is None:
        pairs = store.pool_pairs(store.get_session(session_id).pool_id, with_meta=False)
    texts = pairs.iloc[notes["row_index"].to_numpy(dtype=np.int64)]
    out = notes.assign(**{c: texts[c].to_numpy() for c in ("prompt", "response_a", "response_b")})
    out["comment"] = out["comment"].astype(str)
    out["flagged"] = out["flagged"].astype(bool)
    out = out.sort_values("updated_at", ascending=False, kind="stable").reset_index(drop=True)
    return out[list(UNLABELLED_NOTE_COLUMNS)]


def history_counts(history: pd.DataFrame) -> dict[str, int]:
    """{labels, flagged, commented} of a `session_history` frame: what the History page sums up."""
    return {"labels": len(history), "flagged": int(history["flagged"].sum()),
            "commented": int((history["comment"] != "").sum())}


def label_agreement(rows: pd.DataFrame) -> pd.DataFrame:
    """Agreement of every two annotators on the pairs both judged with a preference.

    ``rows``: one judgement per annotator and pair (``export.judgements``: columns
    annotator, pool_id, pair_id, judgement). Ties and other judgements without a side
    are left out. ``agreement`` is the share of shared pairs with the same choice;
    ``kappa`` is Cohen's (p_o - p_e) / (1 - p_e), NaN when p_e = 1 (both always chose
    the same side, so chance explains everything). Pairs of people with no shared pair
    are not listed. DataFrame(AGREEMENT_COLUMNS), most shared pairs first.
    """
    prefs = rows[rows["judgement"].isin(PAIR_LABELS)]
    wide = prefs.pivot_table(index=["pool_id", "pair_id"], columns="annotator", values="judgement",
                             aggfunc="last")
    out = []
    for a, b in combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna()
        if not len(both):
            continue
        ya, yb = (both[a] == LABEL_A).to_numpy(), (both[b] == LABEL_A).to_numpy()
        p_o = float((ya == yb).mean())
        p_e = float(ya.mean() * yb.mean() + (1 - ya.mean()) * (1 - yb.mean()))
        kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else float("nan")
        out.append((a, b, len(both), int((ya == yb).sum()), p_o, kappa))
    frame = pd.DataFrame(out, columns=list(AGREEMENT_COLUMNS))
    return frame.sort_values(["n_both", "user_a", "user_b"], ascending=[False, True, True],
                             kind="stable").reset_index(drop=True)


def may_manage(role: str) -> bool:
    """Whether ``role`` may rename, merge and delete people: the one check of those actions."""
    return auth.allowed(role, MANAGE_USERS)


def _require(role: str) -> None:
    if not may_manage(role):
        raise PermissionError(f"the {role!r} role may not rename, merge or delete people")


def rename_user(store: Store, old: str, new: str, *, role: str, actor: str = "") -> dict[str, int]:
    """Rename ``old`` to ``new`` (refused when ``new`` exists: merge instead)."""
    _require(role)
    return store.rename_user(old, new, actor=actor)


def merge_users(store: Store, source: str, target: str, *, role: str, actor: str = "") -> dict[str, int]:
    """Give ``source``'s labels to ``target`` (Store.merge_users); ``source`` is gone."""
    _require(role)
    return store.merge_users(source, target, actor=actor)


def delete_user(store: Store, user: str, *, role: str, actor: str = "") -> int:
    """Delete ``user``'s sessions and labels (kept in the audit trail); returns how many labels."""
    _require(role)
    return store.delete_user(user, actor=actor)
