"""Pools: the pairs of a preference frame, their texts and label rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from hyre_engine.data import name_some
from hyre_engine.store.connection import (
    StoreBase,
    StoreStats,
    _check_name,
    _first,
    _new_id,
    _now,
    _prepare_frame,
    _Prepared,
    _strings,
)
from hyre_engine.store.records import PoolRecord


class PoolExistsError(ValueError):
    """A pool of that name is stored already (``add_pool(..., replace=True)`` swaps it)."""

    def __init__(self, name: str, pool_id: str) -> None:
        super().__init__(f"a pool named {name!r} already exists")
        self.name, self.pool_id = name, pool_id


class PoolsMixin(StoreBase):
    """Store methods: pools: the pairs of a preference frame, their texts and label rows."""

    def add_pool(
        self, name: str, frame: pd.DataFrame, *, source: str = "", replace: bool = False
    ) -> str:
        """Store a preference frame as a new pool; returns its pool_id.

        `frame` has the canonical columns (pair_id, prompt, response_a,
        response_b, optional label 'a'/'b', group, annotator); other columns are
        kept per row as JSON metadata. Rows without a label add the pair only.
        A pool with the same name raises ValueError unless `replace=True`, which
        swaps it atomically (the old pool's ensembles, predictions and sessions go).
        """
        _check_name(name, "pool name")
        prepared = _prepare_frame(frame)
        pool_id = _new_id("pool")
        with self._transaction() as (cur, counts):
            row = _first(cur.execute("SELECT pool_id FROM pools WHERE name = ?", [name]))
            if row is not None:
                if not replace:
                    raise PoolExistsError(name, row[0])
                self._delete_pool_rows(cur, row[0])
            cur.execute(
                "INSERT INTO pools VALUES (?, ?, ?, ?)", [pool_id, name, str(source), _now()]
            )
            self._insert_frame(cur, counts, pool_id, prepared)
        return pool_id

    def add_pairs(self, pool_id: str, frame: pd.DataFrame) -> int:
        """Extend a pool; returns how many new pairs were appended (new row_index values).

        Pairs already in the pool must have the same texts. Label rows that
        exactly repeat a stored one (pair_id, group, annotator, label) are
        skipped, so passing the same frame twice adds nothing.
        """
        prepared = _prepare_frame(frame)
        with self._transaction() as (cur, counts):
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            before = counts.pairs_added
            self._insert_frame(cur, counts, pool_id, prepared)
            return counts.pairs_added - before

    def _insert_frame(
        self, cur: duckdb.DuckDBPyConnection, counts: StoreStats, pool_id: str, prep: _Prepared
    ) -> None:
        new = self._new_pairs(cur, pool_id, prep.pairs)
        if len(new):
            self._insert_texts(cur, counts, new)
            self._insert_pairs(cur, counts, pool_id, new)
        if len(prep.labels):
            self._insert_labels(cur, counts, pool_id, prep.labels)

    def _new_pairs(self, cur: duckdb.DuckDBPyConnection, pool_id: str, pairs: pd.DataFrame) -> pd.DataFrame:
        """The pairs not in the pool yet; a pair_id already there with other texts is an error."""
        incoming = pa.table({"pair_id": _strings(pairs["pair_id"]), "ord": np.arange(len(pairs))})
        with self._registered(cur, incoming) as name:
            stored = cur.execute(
                f"SELECT p.pair_id, p.prompt, p.response_a, p.response_b FROM pairs p "
                f"JOIN {name} n ON n.pair_id = p.pair_id WHERE p.pool_id = ?",
                [pool_id],
            ).df()
        if len(stored):
            merged = pairs.merge(stored, on="pair_id", suffixes=("", "_stored"))
            differs = np.zeros(len(merged), dtype=bool)
            for col in ("prompt", "response_a", "response_b"):
                differs |= merged[col].to_numpy() != merged[f"{col}_stored"].to_numpy()
            if differs.any():
                raise ValueError(
                    f"pair_id {name_some(merged['pair_id'][differs])} already in pool {pool_id} "
                    "with different prompt/response texts"
                )
        return pairs[~pairs["pair_id"].isin(set(stored["pair_id"]))]

    def _insert_texts(self, cur: duckdb.DuckDBPyConnection, counts: StoreStats, new: pd.DataFrame) -> None:
        """The (prompt, response) texts of new pairs that no pool has stored yet."""
        text_rows = pd.DataFrame(
            {
                "text_hash": np.concatenate([new["hash_a"], new["hash_b"]]),
                "prompt": np.concatenate([new["prompt"], new["prompt"]]),
                "response": np.concatenate([new["response_a"], new["response_b"]]),
            }
        ).drop_duplicates("text_hash")
        texts = pa.table({c: _strings(text_rows[c]) for c in text_rows.columns})
        counts.texts_added += self._insert_rows(
            cur, texts,
            "INSERT INTO texts SELECT t.text_hash, t.prompt, t.response FROM {rows} t "
            "WHERE NOT EXISTS (SELECT 1 FROM texts x WHERE x.text_hash = t.text_hash)",
        )

    def _insert_pairs(self, cur: duckdb.DuckDBPyConnection, counts: StoreStats, pool_id: str,
                      new: pd.DataFrame) -> None:
        """New pairs, numbered on from the pool's last row_index."""
        start = _next_index(cur, "pairs", "row_index", pool_id)
        columns = ("pair_id", "prompt", "response_a", "response_b", "hash_a", "hash_b", "meta")
        table = pa.table(
            {
                "row_index": pa.array(np.arange(start, start + len(new), dtype=np.int32)),
                **{c: _strings(new[c]) for c in columns},
            }
        )
        counts.pairs_added += self._insert_rows(
            cur, table,
            "INSERT INTO pairs SELECT ?, row_index, pair_id, prompt, response_a, response_b, "
            "hash_a, hash_b, meta FROM {rows}",
            [pool_id],
        )

    def _insert_labels(self, cur: duckdb.DuckDBPyConnection, counts: StoreStats, pool_id: str,
                       labels: pd.DataFrame) -> None:
        """Label rows, skipping any the pool already holds (same pair, group, annotator, label)."""
        label_start = _next_index(cur, "labels", "label_index", pool_id)
        table = pa.table(
            {
                "ord": pa.array(np.arange(len(labels), dtype=np.int64)),
                **{c: _strings(labels[c]) for c in ("pair_id", "grp", "annotator", "label", "meta")},
            }
        )
        counts.labels_added += self._insert_rows(
            cur, table,
            "INSERT INTO labels SELECT ?, (? + row_number() OVER (ORDER BY n.ord) - 1)::INTEGER, "
            "n.pair_id, n.grp, n.annotator, n.label, n.meta FROM {rows} n "
            "WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.pool_id = ? "
            "AND l.pair_id = n.pair_id AND l.grp IS NOT DISTINCT FROM n.grp "
            "AND l.annotator IS NOT DISTINCT FROM n.annotator AND l.label = n.label)",
            [pool_id, label_start, pool_id],
        )

    def _insert_rows(self, cur: duckdb.DuckDBPyConnection, rows: pa.Table, sql: str,
                     params: Sequence[Any] = ()) -> int:
        """Run ``sql``, an INSERT reading ``{rows}``, over the Arrow table ``rows``; the rows written."""
        with self._registered(cur, rows) as name:
            return cur.execute(sql.format(rows=name), params).fetchall()[0][0]

    _POOL_SUMMARY = (
        "SELECT p.pool_id, p.name, p.source, p.created_at, "
        "(SELECT count(*) FROM pairs x WHERE x.pool_id = p.pool_id) AS n_pairs, "
        "(SELECT count(*) FROM labels l WHERE l.pool_id = p.pool_id) AS n_labels FROM pools p"
    )

    def list_pools(self) -> pd.DataFrame:
        """DataFrame(pool_id, name, source, created_at, n_pairs, n_labels), oldest first."""
        return self._fetch_df(self._POOL_SUMMARY + " ORDER BY p.created_at, p.name")

    def get_pool(self, pool_id_or_name: str) -> PoolRecord:
        """The pool with this id, else with this name; KeyError when there is none."""
        cur = self._cursor()
        for key in ("pool_id", "name"):
            # key is one of two literal column names, the value is a parameter
            row = _first(cur.execute(self._POOL_SUMMARY + f" WHERE p.{key} = ?", [pool_id_or_name]))
            if row is not None:
                pool_id, name, source, created_at, n_pairs, n_labels = row
                return PoolRecord(pool_id=pool_id, name=name, source=source, created_at=created_at,
                                  n_pairs=int(n_pairs), n_labels=int(n_labels))
        raise KeyError(f"no pool with id or name {pool_id_or_name!r}")

    def delete_pool(self, pool_id: str) -> None:
        """Delete a pool with its pairs, labels, ensembles, predictions, sessions and profiles.

        Texts and embeddings stay: they are a content-addressed cache shared by pools.
        """
        with self._transaction() as (cur, _):
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            self._delete_pool_rows(cur, pool_id)

    def _delete_pool_rows(self, cur: duckdb.DuckDBPyConnection, pool_id: str) -> None:
        for (ensemble_id,) in cur.execute(
            "SELECT ensemble_id FROM ensembles WHERE pool_id = ?", [pool_id]
        ).fetchall():
            self._delete_ensemble_rows(cur, ensemble_id)
        cur.execute(
            "DELETE FROM session_labels WHERE session_id IN "
            "(SELECT session_id FROM sessions WHERE pool_id = ?)",
            [pool_id],
        )
        cur.execute(
            "DELETE FROM label_notes WHERE session_id IN "
            "(SELECT session_id FROM sessions WHERE pool_id = ?)",
            [pool_id],
        )
        for table in (
            "pool_guidelines",
            "sessions",
            "head_predictions",
            "prediction_sets",
            "pair_differences",
            "labels",
            "pairs",
            "pools",
        ):
            cur.execute(f"DELETE FROM {table} WHERE pool_id = ?", [pool_id])

    def _pool_exists(self, pool_id: str) -> None:
        self._require(self._cursor(), "pools", "pool_id", pool_id, "pool")

    def n_pairs(self, pool_id: str) -> int:
        """Number of pairs in a pool (the N of its head predictions)."""
        self._pool_exists(pool_id)
        return (
            self._cursor()
            .execute("SELECT count(*) FROM pairs WHERE pool_id = ?", [pool_id])
            .fetchall()[0][0]
        )

    def pool_pairs(self, pool_id: str, *, with_meta: bool = True) -> pd.DataFrame:
        """DataFrame(row_index, pair_id, prompt, response_a, response_b, hash_a, hash_b[, meta dict])."""
        self._pool_exists(pool_id)
        frame = self._fetch_df(
            "SELECT row_index, pair_id, prompt, response_a, response_b, hash_a, hash_b"
            + (", meta" if with_meta else "")
            + " FROM pairs WHERE pool_id = ? ORDER BY row_index",
            [pool_id],
        )
        if with_meta:
            frame["meta"] = [json.loads(m) for m in frame["meta"]]
        return frame

    def pool_labels(
        self, pool_id: str, *, groups: str | Sequence[str] | None = None
    ) -> pd.DataFrame:
        """DataFrame(row_index, pair_id, group, annotator, label) in the order the labels were added."""
        self._pool_exists(pool_id)
        sql = (
            'SELECT p.row_index, l.pair_id, l.grp AS "group", l.annotator, l.label FROM labels l '
            "JOIN pairs p ON p.pool_id = l.pool_id AND p.pair_id = l.pair_id WHERE l.pool_id = ?"
        )
        params: list[Any] = [pool_id]
        if groups is not None:
            groups = [groups] if isinstance(groups, str) else [str(g) for g in groups]
            sql += " AND list_contains(?::VARCHAR[], l.grp)"
            params.append(groups)
        return self._fetch_df(sql + " ORDER BY l.label_index", params)

    def pool_groups(self, pool_id: str) -> pd.DataFrame:
        """DataFrame(group, n_labels), groups sorted, unnamed (None) last."""
        self._pool_exists(pool_id)
        return self._fetch_df(
            'SELECT grp AS "group", count(*) AS n_labels FROM labels WHERE pool_id = ? '
            "GROUP BY grp ORDER BY grp NULLS LAST",
            [pool_id],
        )

    def pool_text_count(self, pool_id: str) -> int:
        """How many unique texts the pool holds: len(pool_texts(pool_id)), without reading them."""
        self._pool_exists(pool_id)
        frame = self._fetch_df(
            "SELECT count(DISTINCT h) AS n FROM ("
            " SELECT hash_a AS h FROM pairs WHERE pool_id = ? UNION ALL SELECT hash_b FROM pairs WHERE pool_id = ?)",
            [pool_id, pool_id],
        )
        return int(frame["n"].iloc[0])

    def pool_texts(self, pool_id: str) -> pd.DataFrame:
        """DataFrame(text_hash, prompt, response): the pool's unique texts, in order of first appearance."""
        self._pool_exists(pool_id)
        return self._fetch_df(
            "SELECT text_hash, prompt, response FROM ("
            " SELECT hash_a AS text_hash, prompt, response_a AS response, row_index, 0 AS side"
            " FROM pairs WHERE pool_id = ?"
            " UNION ALL SELECT hash_b, prompt, response_b, row_index, 1 FROM pairs WHERE pool_id = ?"
            ") QUALIFY row_number() OVER (PARTITION BY text_hash ORDER BY row_index, side) = 1 "
            "ORDER BY row_index, side",
            [pool_id, pool_id],
        )


def _next_index(cur: duckdb.DuckDBPyConnection, table: str, column: str, pool_id: str) -> int:
    """The first unused ``column`` (row_index, label_index) of a pool in ``table``; 0 when it has none.

    ``table`` and ``column`` are names written in this module, never user input.
    """
    return cur.execute(
        f"SELECT coalesce(max({column}) + 1, 0) FROM {table} WHERE pool_id = ?", [pool_id]
    ).fetchall()[0][0]
