"""The store's connection, schema and shared helpers: cursors per thread, one lock for
writes, one transaction per write, the file shared with other processes (lease.py), and
the tables' definitions."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from hyre_engine.data import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, validate_frame
from hyre_engine.locations import DB_ENV_VAR, LOCAL_DB_PATH, default_db_path  # noqa: F401 (re-exported)
from hyre_engine.store.lease import Lease, lock_timeout_from_env
from hyre_engine.store.lease import StoreLockedError as StoreLockedError  # re-exported

# Bump when a table changes shape; a file written under another version fails loudly on open.
SCHEMA_VERSION = 1
# duckdb's name for a private in-memory database (used by the tests).
MEMORY = ":memory:"

# "human": a person labels; "persona": labels replayed from a simulated persona's group.
SESSION_MODES = ("human", "persona")
# Arrow list offsets are int32 up to this many values, int64 (large_list) beyond.
_INT32_MAX = 2**31 - 1


# Resolved at import; Store() resolves again at call time so a later $HYRE_DB still applies.
DEFAULT_DB_PATH = default_db_path()


def text_hash(prompt: str, response: str) -> str:
    """sha256 hex of one (prompt, response) text.

    The prompt is length-prefixed rather than joined with a separator, because a
    separator character could occur inside a text and make two texts collide.
    """
    # The prompt's length says where it ends; surrogatepass makes any Python str encodable.
    payload = f"{len(prompt)}:{prompt}{response}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()


@dataclass
class StoreStats:
    """Rows this Store has committed since it was opened (or `reset`).

    Counters prove incrementality: building again with nothing new adds nothing.
    """

    texts_added: int = 0
    pairs_added: int = 0
    labels_added: int = 0
    embeddings_added: int = 0
    ensembles_added: int = 0
    prediction_rows_added: int = 0
    difference_rows_added: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pools (
        pool_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE,
        source VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS texts (
        text_hash VARCHAR PRIMARY KEY, prompt VARCHAR NOT NULL, response VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pairs (
        pool_id VARCHAR NOT NULL, row_index INTEGER NOT NULL, pair_id VARCHAR NOT NULL,
        prompt VARCHAR NOT NULL, response_a VARCHAR NOT NULL, response_b VARCHAR NOT NULL,
        hash_a VARCHAR NOT NULL, hash_b VARCHAR NOT NULL, meta VARCHAR NOT NULL,
        PRIMARY KEY (pool_id, pair_id), UNIQUE (pool_id, row_index))""",
    """CREATE TABLE IF NOT EXISTS labels (
        pool_id VARCHAR NOT NULL, label_index INTEGER NOT NULL, pair_id VARCHAR NOT NULL,
        grp VARCHAR, annotator VARCHAR, label VARCHAR NOT NULL, meta VARCHAR NOT NULL,
        PRIMARY KEY (pool_id, label_index))""",
    """CREATE TABLE IF NOT EXISTS embeddings (
        backbone_id VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, vector FLOAT[] NOT NULL,
        PRIMARY KEY (backbone_id, text_hash))""",
    """CREATE TABLE IF NOT EXISTS ensembles (
        ensemble_id VARCHAR PRIMARY KEY, pool_id VARCHAR NOT NULL, backbone_id VARCHAR NOT NULL,
        config VARCHAR NOT NULL, train_fingerprint VARCHAR NOT NULL, weights BLOB NOT NULL,
        meta VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS prediction_sets (
        ensemble_id VARCHAR NOT NULL, pool_id VARCHAR NOT NULL, n_items INTEGER NOT NULL,
        n_heads INTEGER NOT NULL, created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (ensemble_id, pool_id))""",
    # No index: rows are only read as a whole set, and an index on 100k rows per set costs memory.
    """CREATE TABLE IF NOT EXISTS head_predictions (
        ensemble_id VARCHAR NOT NULL, pool_id VARCHAR NOT NULL, row_index INTEGER NOT NULL,
        z FLOAT[] NOT NULL)""",
    # D: phi(a) - phi(b) per pair of a pool under one backbone (the personal head's input),
    # appended as the pool grows; rows are read as a whole set, like Z.
    """CREATE TABLE IF NOT EXISTS pair_differences (
        backbone_id VARCHAR NOT NULL, pool_id VARCHAR NOT NULL, row_index INTEGER NOT NULL,
        d FLOAT[] NOT NULL, PRIMARY KEY (backbone_id, pool_id, row_index))""",
    # The personal head's structured prior basis (U (dim, r), e (r,)) of an ensemble, as
    # safetensors bytes; its strength rho is in the ensemble's meta beside lambda. A table
    # added without a schema bump: an older file gains it empty on open (no prior: isotropic).
    """CREATE TABLE IF NOT EXISTS prior_bases (
        ensemble_id VARCHAR PRIMARY KEY, basis BLOB NOT NULL, created_at TIMESTAMP NOT NULL)""",
    # persona is '' (not NULL) when absent so that the UNIQUE key also covers human sessions.
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id VARCHAR PRIMARY KEY, user_name VARCHAR NOT NULL, pool_id VARCHAR NOT NULL,
        ensemble_id VARCHAR NOT NULL, mode VARCHAR NOT NULL, persona VARCHAR NOT NULL,
        settings VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
        UNIQUE (user_name, pool_id, ensemble_id, mode, persona))""",
    """CREATE TABLE IF NOT EXISTS session_labels (
        session_id VARCHAR NOT NULL, seq INTEGER NOT NULL, row_index INTEGER NOT NULL,
        pair_id VARCHAR NOT NULL, label VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (session_id, seq))""",
    # Append-only history of every label added, undone, reset or restored: who and when.
    # session_labels holds the live labels; this table keeps what was removed from it.
    """CREATE TABLE IF NOT EXISTS label_audit (
        session_id VARCHAR NOT NULL, event INTEGER NOT NULL, action VARCHAR NOT NULL,
        seq INTEGER NOT NULL, row_index INTEGER NOT NULL, pair_id VARCHAR NOT NULL,
        label VARCHAR NOT NULL, actor VARCHAR NOT NULL, happened_at TIMESTAMP NOT NULL,
        batch VARCHAR NOT NULL,
        PRIMARY KEY (session_id, event))""",
    # A person's comment and flag on a pair of a session (any pair, labelled or not).
    """CREATE TABLE IF NOT EXISTS label_notes (
        session_id VARCHAR NOT NULL, row_index INTEGER NOT NULL, pair_id VARCHAR NOT NULL,
        comment VARCHAR NOT NULL, flagged BOOLEAN NOT NULL, actor VARCHAR NOT NULL,
        updated_at TIMESTAMP NOT NULL, PRIMARY KEY (session_id, row_index))""",
    # Labelling guidelines of a pool (Markdown, set by an admin on the Data page).
    """CREATE TABLE IF NOT EXISTS pool_guidelines (
        pool_id VARCHAR PRIMARY KEY, markdown VARCHAR NOT NULL, actor VARCHAR NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS profiles (
        user_name VARCHAR NOT NULL, ensemble_id VARCHAR NOT NULL, weights DOUBLE[] NOT NULL,
        labels VARCHAR NOT NULL, meta VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (user_name, ensemble_id))""",
    # A users-file sign-in that outlives a tab (store/signins.py): only the token's SHA-256.
    """CREATE TABLE IF NOT EXISTS signins (
        token_hash VARCHAR PRIMARY KEY, user_name VARCHAR NOT NULL, role VARCHAR NOT NULL,
        credential VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, expires_at TIMESTAMP NOT NULL,
        revoked_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS results (
        key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL)""",
    # Parquet files that hold an artefact too big for the database (store/shards.py).
    """CREATE TABLE IF NOT EXISTS embedding_shards (
        backbone_id VARCHAR NOT NULL, path VARCHAR NOT NULL, n_rows BIGINT NOT NULL,
        dim INTEGER NOT NULL, created_at TIMESTAMP NOT NULL, PRIMARY KEY (backbone_id, path))""",
    """CREATE TABLE IF NOT EXISTS prediction_shards (
        ensemble_id VARCHAR NOT NULL, pool_id VARCHAR NOT NULL, path VARCHAR NOT NULL,
        n_rows BIGINT NOT NULL, n_heads INTEGER NOT NULL, dtype VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL, PRIMARY KEY (ensemble_id, pool_id, path))""",
)


# ---------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, datetime | pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _to_json(value: Any, *, what: str) -> str:
    """Canonical JSON (sorted keys) so equal dicts give equal strings (find_ensemble)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON serialisable: {exc}") from exc


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _list_array(matrix: np.ndarray) -> pa.Array:
    """(n, d) float32 -> Arrow list array of n rows of d values (no copy of the values)."""
    n, d = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix).reshape(-1))
    if n * d > _INT32_MAX:
        return pa.LargeListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int64) * d), values)
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * d), values)


def _list_column_to_matrix(column: pa.ChunkedArray, *, dtype: type = np.float32) -> np.ndarray:
    """Arrow list column of n equal-length rows -> writable (n, d) array, one copy, no Python loop."""
    n = len(column)
    if n == 0:
        return np.empty((0, 0), dtype=dtype)
    flats, width = [], None
    for chunk in column.chunks:  # a loop over Arrow chunks, not over items
        if len(chunk) == 0:
            continue
        lengths = np.diff(chunk.offsets.to_numpy())
        width = int(lengths[0]) if width is None else width
        if not (lengths == width).all():
            found = np.unique(np.append(lengths, width)).tolist()
            raise RuntimeError(f"stored vectors have different lengths {found}")
        flats.append(chunk.flatten().to_numpy(zero_copy_only=False))
    return np.concatenate(flats).astype(dtype, copy=False).reshape(n, width)


def _first(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """First row or None. Fetches all rows: duckdb 2 refuses new work on a cursor with unread rows."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _object_or_none(series: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in series.tolist()]


@dataclass
class _Prepared:
    """A validated preference frame: unique pairs (first appearance order) and label rows."""

    pairs: pd.DataFrame  # pair_id, prompt, response_a, response_b, hash_a, hash_b, meta
    labels: pd.DataFrame  # pair_id, grp, annotator, label, meta


def _prepare_frame(frame: pd.DataFrame) -> _Prepared:
    """The pairs and label rows of a frame, as the tables hold them (`data.validate_frame` checks it)."""
    validate_frame(frame)
    n = len(frame)
    base = pd.DataFrame(
        {c: frame[c].astype(str).to_numpy(dtype=object) for c in REQUIRED_COLUMNS},
        index=pd.RangeIndex(n),
    )
    extra = [c for c in frame.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        lines = frame[extra].to_json(orient="records", lines=True, date_format="iso").split("\n")
        # split("\n"), not splitlines(): JSON escapes newlines, but not U+2028 and friends
        meta = [line for line in lines if line]
        if len(meta) != n:
            raise ValueError(f"could not encode metadata columns {extra} as one JSON per row")
    else:
        meta = ["{}"] * n
    base["meta"] = meta

    pairs = base.drop_duplicates("pair_id", keep="first").reset_index(drop=True)
    prompts = pairs["prompt"].tolist()  # iterating a pandas string column item by item is slow
    for side in ("a", "b"):
        responses = pairs[f"response_{side}"].tolist()
        pairs[f"hash_{side}"] = [text_hash(p, r) for p, r in zip(prompts, responses, strict=True)]

    return _Prepared(pairs=pairs, labels=_label_rows(frame, base, meta))


def _label_rows(frame: pd.DataFrame, base: pd.DataFrame, meta: list[str]) -> pd.DataFrame:
    """The rows of ``frame`` that carry a label: pair_id, grp, annotator, label, meta."""
    n = len(frame)
    has_label = frame["label"].notna().to_numpy() if "label" in frame.columns else np.zeros(n, dtype=bool)
    grp = _object_or_none(frame["group"]) if "group" in frame.columns else [None] * n
    annotator = _object_or_none(frame["annotator"]) if "annotator" in frame.columns else [None] * n
    rows = np.flatnonzero(has_label)
    labels = pd.DataFrame(
        {
            "pair_id": base["pair_id"].to_numpy()[rows],
            "grp": np.asarray(grp, dtype=object)[rows],
            "annotator": np.asarray(annotator, dtype=object)[rows],
            "label": frame["label"].to_numpy(dtype=object)[rows] if rows.size else [],
            "meta": np.asarray(meta, dtype=object)[rows],
        }
    )
    return labels


def _one_operation(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` run as one store operation (the file stays open until it returns)."""

    @functools.wraps(method)
    def operation(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        with self._lease.scope():
            return method(self, *args, **kwargs)

    return operation


def _strings(values: pd.Series | np.ndarray | Sequence[str | None]) -> pa.Array:
    # from_pandas: pandas 3 turns None into NaN in string columns; both become SQL NULL
    return pa.array(values, type=pa.string(), from_pandas=True)


# ---------------------------------------------------------------- Store


class StoreBase:
    """The project's one database (a file, or ":memory:" for tests).

    Safe to share between the threads of one process (the Streamlit server):
    each thread gets its own cursor. Use as a context manager or call `close()`.

    Several processes can use one file (the app, and a CLI build or evaluate): the
    file is held only while this process uses it and handed over when another one
    asks (store/lease.py). Every public method of a subclass is one operation: the
    connection it reads and writes through stays open until it returns.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(value):
                setattr(cls, name, _one_operation(value))

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None
    ) -> None:
        self.path = default_db_path() if path is None else str(path)
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lease = Lease(
            self.path, connect=lambda: duckdb.connect(self.path),
            lock_timeout=lock_timeout_from_env() if lock_timeout is None else lock_timeout,
            shared=self.path != MEMORY,
        )
        self._write_lock = threading.RLock()
        self.stats = StoreStats()
        try:
            with self._lease.scope():
                self._create_schema()
        except BaseException:
            self._lease.close()
            raise

    # ------------------------------------------------------------ plumbing

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r}{', closed' if self._lease._closed else ''})"

    def close(self) -> None:
        """Close every thread's cursor and the connection (idempotent)."""
        self._lease.close()

    @property
    def closed(self) -> bool:
        return self._lease._closed

    def release(self) -> bool:
        """Give the file up now unless an operation runs (it is reopened on the next one)."""
        return self._lease.release()

    @property
    def _cursors(self) -> list[duckdb.DuckDBPyConnection]:
        return self._lease.cursors

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._lease.cursor()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, StoreStats]]:
        """One write transaction; yields (cursor, counts to add to `stats` on commit)."""
        counts = StoreStats()
        with self._lease.scope(), self._write_lock:
            cur = self._cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur, counts
                cur.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise
            for f in fields(counts):
                setattr(self.stats, f.name, getattr(self.stats, f.name) + getattr(counts, f.name))

    @contextlib.contextmanager
    def _registered(self, cur: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
        """Expose an Arrow table to SQL on this cursor under a fresh name (an identifier, not a value)."""
        name = f"_hyre_tmp_{uuid.uuid4().hex}"
        cur.register(name, table)
        try:
            yield name
        finally:
            cur.unregister(name)

    def _hashes_where(self, hashes: Sequence[str], condition: str, params: Sequence[Any]) -> list[str]:
        """The ``hashes`` (in the order given) for which ``condition`` holds of ``q.text_hash``.

        ``condition`` is SQL written in this package; values travel in ``params``.
        """
        cur = self._cursor()
        query = pa.table({"ord": np.arange(len(hashes)), "text_hash": _strings(hashes)})
        with self._registered(cur, query) as name:
            rows = cur.execute(
                f"SELECT q.text_hash FROM {name} q WHERE {condition} ORDER BY q.ord", params
            ).fetchall()
        return [r[0] for r in rows]

    def _create_schema(self) -> None:
        with self._transaction() as (cur, _):
            for statement in _SCHEMA:
                cur.execute(statement)
            rows = cur.execute("SELECT version FROM schema_version").fetchall()
            if not rows:
                cur.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
            elif rows != [(SCHEMA_VERSION,)]:
                raise RuntimeError(
                    f"{self.path} has schema version {[r[0] for r in rows]}, this code expects "
                    f"{SCHEMA_VERSION}; move the file away to rebuild it"
                )

    def _fetch_df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._lease.scope():
            return self._cursor().execute(sql, list(params)).df()

    def _require(
        self, cur: duckdb.DuckDBPyConnection, table: str, key: str, value: str, what: str
    ) -> None:
        # table/key come from this module's own constants, never from the caller
        if _first(cur.execute(f"SELECT 1 FROM {table} WHERE {key} = ? LIMIT 1", [value])) is None:
            raise KeyError(f"no {what} {value!r}")

    # ------------------------------------------------------------ pools

