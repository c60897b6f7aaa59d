"""Parquet shards registered in the store: embeddings and head predictions too big for it.

A distributed build writes embeddings (keyed by backbone id and text hash, the
same key as the store's own embedding cache) and Z (keyed by ensemble, pool and
row_index) as Parquet files beside the database. The store records which files
belong to which artefact, in two small tables, and never copies their contents
into its own file; DuckDB reads them with ``read_parquet`` and the app streams
them or memory-maps a one-time ``.npy`` copy of Z.

Files of an artefact are registered in one transaction after they are all
written: an interrupted build leaves no half-registered artefact behind.
The mixin below overrides the store's embedding and Z readers so that every caller
(the single-process build, the pages) sees sharded artefacts like stored ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from hyre_engine.store.connection import (
    MEMORY,
    StoreBase,
    _list_column_to_matrix,
    _now,
    _strings,
)

# Z shards are float16 above this many pairs: 10M x 100 heads is 2 GB instead of 4 GB,
# and float16's 3 significant digits are far finer than any decision taken on a logit.
FLOAT16_ABOVE = 1_000_000
# Name of the folder beside a database file that holds its shards.
SHARDS_SUFFIX = ".shards"


def shard_root(store: StoreBase) -> Path:
    """Where a store's shards live: $HYRE_SHARDS if set, else ``<db file>.shards`` beside it."""
    if os.environ.get("HYRE_SHARDS"):
        return Path(os.environ["HYRE_SHARDS"])
    if store.path == MEMORY:
        raise ValueError("an in-memory store has no folder for shards: set HYRE_SHARDS")
    return Path(store.path).with_name(Path(store.path).name + SHARDS_SUFFIX)


def safe_name(key: str) -> str:
    """A folder name for an id such as 'all-MiniLM-L6-v2@abc/max256/tpl-1/model'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)


def z_dtype(n_items: int) -> np.dtype:
    return np.dtype(np.float16 if n_items > FLOAT16_ABOVE else np.float32)


class ShardsMixin(StoreBase):
    """Store methods: Parquet shards of embeddings and Z (see the module docstring)."""

    # ------------------------------------------------------------ embeddings

    def embedding_shard_files(self, backbone_id: str) -> list[str]:
        rows = self._cursor().execute(
            "SELECT path FROM embedding_shards WHERE backbone_id = ? ORDER BY created_at, path",
            [backbone_id],
        ).fetchall()
        return [r[0] for r in rows]

    def register_embedding_shards(self, backbone_id: str, files: Sequence[str | Path]) -> int:
        """Record written shards (text_hash, backbone_id, vector) in one transaction; rows added."""
        import pyarrow.parquet as pq

        rows = []
        for f in files:
            schema = pq.read_schema(str(f))
            if schema.names[:3] != ["text_hash", "backbone_id", "vector"]:
                raise ValueError(f"{f}: not an embedding shard (columns {schema.names})")
            rows.append([backbone_id, str(f), pq.read_metadata(str(f)).num_rows,
                         schema.field("vector").type.list_size, _now()])
        with self._transaction() as (cur, counts):
            for row in rows:
                cur.execute("INSERT OR REPLACE INTO embedding_shards VALUES (?, ?, ?, ?, ?)", row)
                counts.embeddings_added += row[2]
        return sum(r[2] for r in rows)

    def missing_embeddings(self, backbone_id: str, hashes: Iterable[str]) -> list[str]:
        """Hashes (unique, in order) with no embedding in the table nor in the shards."""
        missing = super().missing_embeddings(backbone_id, hashes)
        files = self.embedding_shard_files(backbone_id)
        if not missing or not files:
            return missing
        return self._hashes_where(
            missing,
            "q.text_hash NOT IN (SELECT text_hash FROM read_parquet(?) WHERE backbone_id = ?)",
            [files, backbone_id],
        )

    def get_embeddings(self, backbone_id: str, hashes: Sequence[str]) -> np.ndarray:
        """(n, d) float32 in the order of ``hashes``, from the shards and the table."""
        hashes = list(hashes)
        files = self.embedding_shard_files(backbone_id)
        if not files or not hashes:
            return super().get_embeddings(backbone_id, hashes)
        cur = self._cursor()
        query = pa.table({"ord": np.arange(len(hashes), dtype=np.int64), "text_hash": _strings(hashes)})
        with self._registered(cur, query) as name:
            result = cur.sql(
                f"SELECT q.ord, any_value(s.vector) AS vector FROM {name} q "
                "JOIN read_parquet($files) s ON s.text_hash = q.text_hash "
                "AND s.backbone_id = $backbone GROUP BY q.ord",
                params={"files": files, "backbone": backbone_id},
            ).to_arrow_table()
        found = result.column("ord").to_numpy()
        if len(found) == 0:
            return super().get_embeddings(backbone_id, hashes)
        vectors = _list_column_to_matrix(result.column("vector"))
        out = np.empty((len(hashes), vectors.shape[1]), dtype=np.float32)
        out[found] = vectors
        if len(found) < len(hashes):
            rest = np.setdiff1d(np.arange(len(hashes)), found)
            out[rest] = super().get_embeddings(backbone_id, [hashes[i] for i in rest])
        return out

    # ------------------------------------------------------------ head predictions

    def register_prediction_shards(
        self, ensemble_id: str, pool_id: str, files: Sequence[str | Path], *, n_heads: int,
        dtype: np.dtype,
    ) -> int:
        """Record the Z shards of (ensemble, pool), replacing earlier ones; returns the row count.

        The shards must hold row_index 0..n_pairs-1 of the pool, each once.
        """
        import pyarrow.parquet as pq

        rows = [[ensemble_id, pool_id, str(f), pq.read_metadata(str(f)).num_rows, int(n_heads),
                 np.dtype(dtype).name, _now()] for f in files]
        n_rows = sum(r[3] for r in rows)
        n_pairs = self.n_pairs(pool_id)
        if n_rows != n_pairs:
            raise ValueError(f"Z shards hold {n_rows} rows but pool {pool_id} has {n_pairs} pairs")
        with self._transaction() as (cur, counts):
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            cur.execute("DELETE FROM prediction_shards WHERE ensemble_id = ? AND pool_id = ?",
                        [ensemble_id, pool_id])
            for row in rows:
                cur.execute("INSERT INTO prediction_shards VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            counts.prediction_rows_added += n_rows
        return n_rows

    def prediction_shard_files(self, ensemble_id: str, pool_id: str) -> list[str]:
        rows = self._cursor().execute(
            "SELECT path FROM prediction_shards WHERE ensemble_id = ? AND pool_id = ? ORDER BY path",
            [ensemble_id, pool_id],
        ).fetchall()
        return [r[0] for r in rows]

    def get_head_predictions(self, ensemble_id: str, pool_id: str, *, mmap: bool = False
                             ) -> np.ndarray | None:
        """Z (n_items, n_heads) aligned with row_index, or None when not stored.

        Z stored in the table comes back as float32. Sharded Z is streamed by DuckDB into
        one float32 array, or with ``mmap=True`` returned as a read-only memory map of a
        ``.npy`` copy written once beside the shards (float16 above 1M pairs), which the
        page cache then shares between app processes.
        """
        files = self.prediction_shard_files(ensemble_id, pool_id)
        if not files:
            return super().get_head_predictions(ensemble_id, pool_id)
        if mmap:
            cache = Path(files[0]).parent / "z.npy"
            if not cache.is_file():
                _write_npy(files, cache)
            return np.load(cache, mmap_mode="r")
        result = self._cursor().sql(
            "SELECT z FROM read_parquet($files) ORDER BY row_index", params={"files": files}
        ).to_arrow_table()
        return _list_column_to_matrix(result.column("z"))

    # ------------------------------------------------------------ deletes cascade to shards

    def _delete_ensemble_rows(self, cur: duckdb.DuckDBPyConnection, ensemble_id: str) -> None:
        super()._delete_ensemble_rows(cur, ensemble_id)
        cur.execute("DELETE FROM prediction_shards WHERE ensemble_id = ?", [ensemble_id])

    def _delete_pool_rows(self, cur: duckdb.DuckDBPyConnection, pool_id: str) -> None:
        super()._delete_pool_rows(cur, pool_id)
        cur.execute("DELETE FROM prediction_shards WHERE pool_id = ?", [pool_id])


def _write_npy(files: list[str], target: Path) -> None:
    """Stream Z shards into one .npy file, published by an atomic rename."""
    import pyarrow.parquet as pq

    n_rows = sum(pq.read_metadata(f).num_rows for f in files)
    field = pq.read_schema(files[0]).field("z").type
    dtype = np.dtype(field.value_type.to_pandas_dtype())
    tmp = target.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n_rows, field.list_size))
    for f in files:  # one row group at a time
        for batch in pq.ParquetFile(f).iter_batches(columns=["row_index", "z"]):
            idx = batch.column(0).to_numpy()
            values = batch.column(1).flatten().to_numpy(zero_copy_only=False)
            out[idx] = values.reshape(len(idx), field.list_size)
    out.flush()
    del out
    os.replace(tmp, target)  # readers never see a half-written copy
