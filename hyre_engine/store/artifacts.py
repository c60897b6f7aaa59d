"""Artifacts: embeddings per backbone and text, ensembles, head predictions Z and embedding differences D."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from hyre_engine.data import name_some
from hyre_engine.personal_prior import PersonalPrior
from hyre_engine.store.connection import (
    StoreBase,
    _check_name,
    _first,
    _list_array,
    _list_column_to_matrix,
    _now,
    _strings,
    _to_json,
)
from hyre_engine.store.records import EnsembleMeta, EnsembleRecord


class ArtifactsMixin(StoreBase):
    """Store methods: artifacts: embeddings per backbone and text, ensembles, and head predictions Z."""

    def missing_embeddings(self, backbone_id: str, hashes: Iterable[str]) -> list[str]:
        """The hashes (unique, in the order given) that have no stored embedding for this backbone."""
        hashes = list(dict.fromkeys(hashes))
        if not hashes:
            return []
        return self._hashes_where(
            hashes,
            "NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.backbone_id = ? AND e.text_hash = q.text_hash)",
            [backbone_id],
        )

    def put_embeddings(self, backbone_id: str, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors (n, d) for `hashes` (n,); returns how many were new.

        Hashes already stored keep their vector: an embedding is a function of
        (backbone id, text), so a second one is the same.
        """
        _check_name(backbone_id, "backbone_id")
        hashes = list(hashes)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(hashes):
            raise ValueError(
                f"vectors must have shape (n_hashes, dim) = ({len(hashes)}, d), got {vectors.shape}"
            )
        if vectors.shape[1] == 0:
            raise ValueError(f"vectors must have at least one dimension, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        if len(set(hashes)) != len(hashes):
            dup = pd.Series(hashes)[pd.Series(hashes).duplicated()].unique()
            raise ValueError(f"hashes repeat: {name_some(dup)}")
        if not hashes:
            return 0
        table = pa.table(
            {
                "text_hash": _strings(hashes),
                "vector": _list_array(vectors.astype(np.float32, copy=False)),
            }
        )
        with self._transaction() as (cur, counts):
            row = _first(
                cur.execute(
                    "SELECT len(vector) FROM embeddings WHERE backbone_id = ? LIMIT 1",
                    [backbone_id],
                )
            )
            if row is not None and row[0] != vectors.shape[1]:
                raise ValueError(
                    f"backbone {backbone_id!r} has stored vectors of dim {row[0]}, got {vectors.shape}"
                )
            with self._registered(cur, table) as name:
                added = cur.execute(
                    f"INSERT INTO embeddings SELECT ?, t.text_hash, t.vector FROM {name} t "
                    "WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.backbone_id = ? "
                    "AND e.text_hash = t.text_hash)",
                    [backbone_id, backbone_id],
                ).fetchall()[0][0]
            counts.embeddings_added += added
        return added

    def get_embeddings(self, backbone_id: str, hashes: Sequence[str]) -> np.ndarray:
        """(n, d) float32 embeddings in the order of `hashes`; KeyError naming any missing."""
        hashes = list(hashes)
        cur = self._cursor()
        if not hashes:
            row = _first(
                cur.execute(
                    "SELECT len(vector) FROM embeddings WHERE backbone_id = ? LIMIT 1",
                    [backbone_id],
                )
            )
            return np.empty((0, 0 if row is None else row[0]), dtype=np.float32)
        query = pa.table(
            {"ord": np.arange(len(hashes), dtype=np.int64), "text_hash": _strings(hashes)}
        )
        with self._registered(cur, query) as name:
            result = cur.sql(
                f"SELECT q.ord, e.vector FROM {name} q JOIN embeddings e "
                "ON e.text_hash = q.text_hash AND e.backbone_id = ?",
                params=[backbone_id],
            ).to_arrow_table()
        if result.num_rows != len(hashes):
            missing = self.missing_embeddings(backbone_id, hashes)
            raise KeyError(
                f"{len(missing)} text hashes have no {backbone_id!r} embedding: {name_some(missing)}"
            )
        order = result.column("ord").to_numpy()
        vectors = _list_column_to_matrix(result.column("vector"))
        out = np.empty_like(vectors)
        out[order] = vectors
        return out


    def put_ensemble(
        self,
        *,
        ensemble_id: str,
        pool_id: str,
        backbone_id: str,
        config: dict[str, Any],
        weights: bytes,
        train_fingerprint: str,
        meta: EnsembleMeta | dict[str, Any] | None = None,
    ) -> None:
        """Store a trained ensemble (weights: safetensors bytes); an existing id is overwritten."""
        _check_name(ensemble_id, "ensemble_id")
        _check_name(backbone_id, "backbone_id")
        if not isinstance(weights, bytes | bytearray | memoryview):
            raise ValueError(f"weights must be bytes (safetensors), got {type(weights).__name__}")
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        config_json = _to_json(config, what="config")
        if isinstance(meta, EnsembleMeta):
            meta = meta.to_json()
        meta_json = _to_json(meta or {}, what="meta")
        with self._transaction() as (cur, counts):
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            owner = _first(cur.execute("SELECT pool_id FROM ensembles WHERE ensemble_id = ?", [ensemble_id]))
            if owner is not None and owner[0] != pool_id:
                # An ensemble belongs to exactly one pool: re-pointing it would let a
                # delete of this pool remove the other pool's sessions and predictions.
                raise ValueError(f"ensemble {ensemble_id} belongs to pool {owner[0]}, not {pool_id}")
            cur.execute("DELETE FROM ensembles WHERE ensemble_id = ?", [ensemble_id])
            cur.execute(
                "INSERT INTO ensembles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ensemble_id,
                    pool_id,
                    backbone_id,
                    config_json,
                    str(train_fingerprint),
                    bytes(weights),
                    meta_json,
                    _now(),
                ],
            )
            counts.ensembles_added += 1

    def get_ensemble(self, ensemble_id: str, *, with_weights: bool = True) -> EnsembleRecord:
        """The stored ensemble; its weights (safetensors bytes) only when ``with_weights``."""
        row = _first(
            self._cursor().execute(
                "SELECT ensemble_id, pool_id, backbone_id, config, train_fingerprint, meta, created_at, "
                "octet_length(weights), " + ("weights" if with_weights else "NULL")
                + " FROM ensembles WHERE ensemble_id = ?",
                [ensemble_id],
            )
        )
        if row is None:
            raise KeyError(f"no ensemble {ensemble_id!r}")
        eid, pool_id, backbone_id, config, fingerprint, meta, created_at, n_bytes, weights = row
        return EnsembleRecord(
            ensemble_id=eid, pool_id=pool_id, backbone_id=backbone_id, config=json.loads(config),
            train_fingerprint=fingerprint, meta=EnsembleMeta.from_json(json.loads(meta)),
            created_at=created_at, n_bytes=int(n_bytes),
            weights=None if weights is None else bytes(weights),
        )

    def set_ensemble_meta(self, ensemble_id: str, meta: EnsembleMeta) -> None:
        """Replace a stored ensemble's meta (e.g. a calibration finished after the build)."""
        meta_json = _to_json(meta.to_json(), what="meta")
        with self._transaction() as (cur, _):
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            cur.execute("UPDATE ensembles SET meta = ? WHERE ensemble_id = ?", [meta_json, ensemble_id])

    def put_prior_basis(self, ensemble_id: str, U: np.ndarray, e: np.ndarray) -> None:  # noqa: N803
        """Store an ensemble's structured-prior basis U (dim, r) and e (r,) as float32
        safetensors (replacing any); its strength rho goes in the meta (``set_ensemble_meta``)."""
        PersonalPrior(U, e)  # validates shapes, finiteness, orthonormality
        blob = save_tensors({"U": np.ascontiguousarray(U, dtype=np.float32),
                             "e": np.ascontiguousarray(e, dtype=np.float32)})
        with self._transaction() as (cur, _):
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            cur.execute("DELETE FROM prior_bases WHERE ensemble_id = ?", [ensemble_id])
            cur.execute("INSERT INTO prior_bases VALUES (?, ?, ?)", [ensemble_id, blob, _now()])

    def get_prior_basis(self, ensemble_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(U (dim, r), e (r,)) float32 of an ensemble's structured prior, None when it has none."""
        row = _first(self._cursor().execute("SELECT basis FROM prior_bases WHERE ensemble_id = ?", [ensemble_id]))
        if row is None:
            return None
        tensors = load_tensors(bytes(row[0]))
        return tensors["U"], tensors["e"]

    def personal_prior(self, ensemble_id: str) -> PersonalPrior | None:
        """The ensemble's structured prior (its basis at the meta's rho); None for the isotropic
        head (rho absent or 0, e.g. an ensemble stored before structured priors existed)."""
        rho = self.get_ensemble(ensemble_id, with_weights=False).meta.rho
        if not rho:
            return None
        basis = self.get_prior_basis(ensemble_id)
        if basis is None:
            raise ValueError(f"ensemble {ensemble_id} records prior strength rho {rho:g} but no prior basis")
        return PersonalPrior(basis[0], basis[1], rho)

    def find_ensemble(
        self, pool_id: str, backbone_id: str, config: dict[str, Any], train_fingerprint: str
    ) -> str | None:
        """The newest ensemble trained with exactly these inputs, or None (incremental rebuilds)."""
        row = _first(
            self._cursor().execute(
                "SELECT ensemble_id FROM ensembles WHERE pool_id = ? AND backbone_id = ? AND config = ? "
                "AND train_fingerprint = ? ORDER BY created_at DESC LIMIT 1",
                [pool_id, backbone_id, _to_json(config, what="config"), str(train_fingerprint)],
            )
        )
        return None if row is None else row[0]

    def list_ensembles(self, pool_id: str | None = None) -> pd.DataFrame:
        """DataFrame(ensemble_id, pool_id, backbone_id, config, train_fingerprint, meta, n_bytes, created_at)."""
        frame = self._fetch_df(
            "SELECT ensemble_id, pool_id, backbone_id, config, train_fingerprint, meta, "
            "octet_length(weights) AS n_bytes, created_at FROM ensembles "
            "WHERE ? IS NULL OR pool_id = ? ORDER BY created_at",
            [pool_id, pool_id],
        )
        frame["config"] = [json.loads(c) for c in frame["config"]]
        frame["meta"] = [json.loads(m) for m in frame["meta"]]
        return frame

    def reweightable_ensembles(self) -> pd.DataFrame:
        """`list_ensembles` without the ones HyRe cannot reweight (fewer than two heads).

        An evaluation stores a one-head `single` baseline next to the real ensemble;
        it is a reference model, never something to reweight.
        """
        ensembles = self.list_ensembles()
        if ensembles.empty:
            return ensembles
        heads = ensembles["config"].map(lambda cfg: int((cfg or {}).get("n_heads", 0)))
        return ensembles[heads >= 2]

    def delete_ensemble(self, ensemble_id: str) -> None:
        """Delete an ensemble with its head predictions, sessions and profiles (they refer to its heads)."""
        with self._transaction() as (cur, _):
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            self._delete_ensemble_rows(cur, ensemble_id)

    def _delete_ensemble_rows(self, cur: duckdb.DuckDBPyConnection, ensemble_id: str) -> None:
        cur.execute(
            "DELETE FROM session_labels WHERE session_id IN "
            "(SELECT session_id FROM sessions WHERE ensemble_id = ?)",
            [ensemble_id],
        )
        cur.execute(
            "DELETE FROM label_notes WHERE session_id IN "
            "(SELECT session_id FROM sessions WHERE ensemble_id = ?)",
            [ensemble_id],
        )
        for table in ("sessions", "profiles", "head_predictions", "prediction_sets", "prior_bases", "ensembles"):
            cur.execute(f"DELETE FROM {table} WHERE ensemble_id = ?", [ensemble_id])


    def put_head_predictions(self, ensemble_id: str, pool_id: str, Z: np.ndarray) -> None:  # noqa: N803
        """Store Z (n_pairs, n_heads) for a pool, row i = the pair with row_index i; replaces any previous Z."""
        Z = np.asarray(Z)  # noqa: N806
        if Z.ndim != 2 or Z.shape[1] == 0:
            raise ValueError(
                f"Z must have shape (n_items, n_heads) with n_heads >= 1, got {Z.shape}"
            )
        if not np.isfinite(Z).all():
            raise ValueError("Z contains NaN or infinite values")
        n_items, n_heads = Z.shape
        table = pa.table(
            {
                "row_index": pa.array(np.arange(n_items, dtype=np.int32)),
                "z": _list_array(Z.astype(np.float32, copy=False)),
            }
        )
        with self._transaction() as (cur, counts):
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            n_pairs = cur.execute(
                "SELECT count(*) FROM pairs WHERE pool_id = ?", [pool_id]
            ).fetchall()[0][0]
            if n_pairs != n_items:
                raise ValueError(
                    f"Z has shape {Z.shape} but pool {pool_id} has {n_pairs} pairs (n_items must match)"
                )
            for table_name in ("head_predictions", "prediction_sets"):
                cur.execute(
                    f"DELETE FROM {table_name} WHERE ensemble_id = ? AND pool_id = ?",
                    [ensemble_id, pool_id],
                )
            cur.execute(
                "INSERT INTO prediction_sets VALUES (?, ?, ?, ?, ?)",
                [ensemble_id, pool_id, n_items, n_heads, _now()],
            )
            with self._registered(cur, table) as name:
                counts.prediction_rows_added += cur.execute(
                    f"INSERT INTO head_predictions SELECT ?, ?, row_index, z FROM {name}",
                    [ensemble_id, pool_id],
                ).fetchall()[0][0]

    def get_head_predictions(self, ensemble_id: str, pool_id: str) -> np.ndarray | None:
        """Z (n_items, n_heads) float32 aligned with row_index, or None when not stored.

        n_items is the pool's size when Z was stored; after `add_pairs` compare
        it with `n_pairs(pool_id)`.
        """
        cur = self._cursor()
        row = _first(
            cur.execute(
                "SELECT n_items, n_heads FROM prediction_sets WHERE ensemble_id = ? AND pool_id = ?",
                [ensemble_id, pool_id],
            )
        )
        if row is None:
            return None
        n_items, n_heads = row
        # No ORDER BY: sorting 100k list rows doubles the read time; rows come back in insertion
        # order, and the row_index check below falls back to a numpy sort if they ever do not.
        result = cur.sql(
            "SELECT row_index, z FROM head_predictions WHERE ensemble_id = ? AND pool_id = ?",
            params=[ensemble_id, pool_id],
        ).to_arrow_table()
        if result.num_rows != n_items:
            raise RuntimeError(
                f"stored Z for ({ensemble_id}, {pool_id}) has {result.num_rows} rows, expected {n_items}"
            )
        if n_items == 0:
            return np.empty((0, n_heads), dtype=np.float32)
        Z = _list_column_to_matrix(result.column("z"))  # noqa: N806
        row_index = result.column("row_index").to_numpy()
        if not np.array_equal(row_index, np.arange(n_items)):
            Z = Z[np.argsort(row_index, kind="stable")]  # noqa: N806
        return Z


    # ------------------------------------------------------------ embedding differences D

    def n_pair_differences(self, backbone_id: str, pool_id: str) -> int:
        """How many leading rows (row_index 0..n-1) of the pool's D this backbone has stored."""
        return int(self._cursor().execute(
            "SELECT count(*) FROM pair_differences WHERE backbone_id = ? AND pool_id = ?",
            [backbone_id, pool_id],
        ).fetchall()[0][0])

    def append_pair_differences(self, backbone_id: str, pool_id: str, D: np.ndarray, *,  # noqa: N803
                                start: int) -> int:
        """Store rows ``start .. start + len(D) - 1`` of the pool's D (n, dim) float32; returns rows added.

        ``start`` must be the number of rows already stored (D grows with the pool, never
        rewrites a row), and the rows must exist in the pool.
        """
        D = np.asarray(D)  # noqa: N806
        if D.ndim != 2 or D.shape[1] == 0:
            raise ValueError(f"D must have shape (n_pairs, dim) with dim >= 1, got {D.shape}")
        if not np.isfinite(D).all():
            raise ValueError("D contains NaN or infinite values (embeddings)")
        table = pa.table({
            "row_index": pa.array(np.arange(start, start + D.shape[0], dtype=np.int32)),
            "d": _list_array(D.astype(np.float32, copy=False)),
        })
        with self._transaction() as (cur, counts):
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            stored, dim = cur.execute(
                "SELECT count(*), max(len(d)) FROM pair_differences WHERE backbone_id = ? AND pool_id = ?",
                [backbone_id, pool_id],
            ).fetchall()[0]
            if stored != start:
                raise ValueError(f"D of pool {pool_id} has {stored} rows stored, cannot append at row {start}")
            if dim is not None and dim != D.shape[1]:
                raise ValueError(f"D of pool {pool_id} has dim {dim}, the new rows have dim {D.shape[1]}")
            n_pairs = cur.execute("SELECT count(*) FROM pairs WHERE pool_id = ?", [pool_id]).fetchall()[0][0]
            if start + D.shape[0] > n_pairs:
                raise ValueError(f"D rows up to {start + D.shape[0]} but pool {pool_id} has {n_pairs} pairs")
            with self._registered(cur, table) as name:
                added = cur.execute(
                    f"INSERT INTO pair_differences SELECT ?, ?, row_index, d FROM {name}",
                    [backbone_id, pool_id],
                ).fetchall()[0][0]
            counts.difference_rows_added += added
        return int(added)

    def get_pair_differences(self, backbone_id: str, pool_id: str) -> np.ndarray | None:
        """D (n, dim) float32 aligned with row_index (the rows stored so far), None when none are."""
        result = self._cursor().sql(
            "SELECT row_index, d FROM pair_differences WHERE backbone_id = ? AND pool_id = ?",
            params=[backbone_id, pool_id],
        ).to_arrow_table()
        if result.num_rows == 0:
            return None
        D = _list_column_to_matrix(result.column("d"))  # noqa: N806
        row_index = result.column("row_index").to_numpy()
        if not np.array_equal(row_index, np.arange(result.num_rows)):
            D = D[np.argsort(row_index, kind="stable")]  # noqa: N806
        return D
