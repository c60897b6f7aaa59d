"""Profiles (a user's weights per ensemble) and cached results."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from hyre_engine.store.connection import (
    StoreBase,
    _check_name,
    _first,
    _now,
    _to_json,
)
from hyre_engine.store.records import ProfileMeta, ProfileRecord, ResultRecord


class ResultsMixin(StoreBase):
    """Store methods: profiles (a user's weights per ensemble) and cached results."""

    def save_profile(
        self,
        *,
        user: str,
        ensemble_id: str,
        weights: np.ndarray,
        labels: list[dict[str, Any]],
        meta: ProfileMeta | dict[str, Any] | None = None,
    ) -> None:
        """Save (or overwrite) a user's head weights (n_heads,) and the labels they came from."""
        _check_name(user, "user")
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or weights.size == 0:
            raise ValueError(f"weights must have shape (n_heads,), got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("weights must be finite and non-negative")
        labels_json = _to_json(list(labels), what="labels")
        if isinstance(meta, ProfileMeta):
            meta = meta.to_json()
        meta_json = _to_json(meta or {}, what="meta")
        with self._transaction() as (cur, _):
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            cur.execute(
                "DELETE FROM profiles WHERE user_name = ? AND ensemble_id = ?", [user, ensemble_id]
            )
            cur.execute(
                "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?)",
                [user, ensemble_id, weights.tolist(), labels_json, meta_json, _now()],
            )

    def get_profile(self, user: str, ensemble_id: str) -> ProfileRecord | None:
        """The user's saved weights on this ensemble, or None."""
        row = _first(
            self._cursor().execute(
                "SELECT weights, labels, meta, updated_at FROM profiles WHERE user_name = ? AND ensemble_id = ?",
                [user, ensemble_id],
            )
        )
        if row is None:
            return None
        weights = np.asarray(row[0], dtype=np.float64)
        weights.setflags(write=False)
        return ProfileRecord(user=user, ensemble_id=ensemble_id, weights=weights,
                             labels=json.loads(row[1]), meta=ProfileMeta.from_json(json.loads(row[2])),
                             updated_at=row[3])

    def list_profiles(self, ensemble_id: str | None = None) -> pd.DataFrame:
        """DataFrame(user, ensemble_id, n_heads, n_labels, updated_at)."""
        return self._fetch_df(
            "SELECT user_name AS user, ensemble_id, len(weights) AS n_heads, "
            "json_array_length(labels) AS n_labels, updated_at FROM profiles "
            "WHERE ? IS NULL OR ensemble_id = ? ORDER BY user_name, ensemble_id",
            [ensemble_id, ensemble_id],
        )

    def delete_profile(self, user: str, ensemble_id: str) -> None:
        with self._transaction() as (cur, _):
            if (
                cur.execute(
                    "DELETE FROM profiles WHERE user_name = ? AND ensemble_id = ?",
                    [user, ensemble_id],
                ).fetchall()[0][0]
                == 0
            ):
                raise KeyError(f"no profile for user {user!r} and ensemble {ensemble_id!r}")


    def put_result(self, key: str, value: dict[str, Any]) -> None:
        """Cache a JSON-serialisable dict under `key` (overwrites)."""
        _check_name(key, "key")
        if not isinstance(value, dict):
            raise ValueError(f"value must be a dict, got {type(value).__name__}")
        value_json = _to_json(value, what="value")
        with self._transaction() as (cur, _):
            cur.execute("DELETE FROM results WHERE key = ?", [key])
            cur.execute("INSERT INTO results VALUES (?, ?, ?)", [key, value_json, _now()])

    def get_result(self, key: str) -> ResultRecord | None:
        """The result cached under ``key``, or None."""
        row = _first(self._cursor().execute("SELECT value, updated_at FROM results WHERE key = ?", [key]))
        return None if row is None else ResultRecord(key=key, value=json.loads(row[0]), updated_at=row[1])
