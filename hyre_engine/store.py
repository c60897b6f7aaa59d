"""DuckDB store: pools, texts, labels, embeddings, ensembles, head predictions,
labelling sessions, user profiles and cached results, in one database file.

The only module of the engine that imports duckdb. Everything the app keeps
between reruns lives here (STYLE.md practice 8).

Design notes
- A *text* is one (prompt, response) unit, what the backbone embeds; it is keyed
  by `text_hash(prompt, response)`, so embeddings are shared by every pool and
  cached per backbone id.
- Pairs of a pool have a stable `row_index` (0..N-1, order of first appearance);
  head predictions Z (N, K) are aligned with it.
- Thread safety: one duckdb connection; each thread reads through its own cursor
  (a duckdb cursor is a duplicate connection to the same database). Writes are
  serialised by a process-local lock, because two threads writing the same rows
  would otherwise fail duckdb's optimistic concurrency check instead of waiting.
- Every write is one transaction: on any error it is rolled back, so nothing
  already stored is lost or half-written.
- Arrays (embeddings, Z) are stored one row per item as a FLOAT[] list and read
  back through Arrow, reshaping the flat values (no Python loop per item).
  bench/bench_store.py measures reading Z for 100,000 x 100.
- No foreign keys: duckdb has no ON DELETE CASCADE, so the deletes cascade in
  code, inside one transaction.
- Timestamps are naive UTC.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

# Bump when a table changes shape; a file written under another version fails loudly on open.
SCHEMA_VERSION = 1
# Lets tests, CI and the app each point at their own file without code changes.
DB_ENV_VAR = "HYRE_DB"
# In the repository's data/ folder, where data/*.duckdb is gitignored.
REPO_DB_PATH = Path(__file__).resolve().parents[1] / "data" / "hyre.duckdb"
# duckdb's name for a private in-memory database (used by the tests).
MEMORY = ":memory:"

# The canonical columns of a preference frame (DESIGN.md "Preference file format", data.py).
REQUIRED_COLUMNS = ("pair_id", "prompt", "response_a", "response_b")
OPTIONAL_COLUMNS = ("label", "group", "annotator")
# A pool label says which response was preferred (DESIGN.md).
POOL_LABELS = ("a", "b")
# In a session a person may also pass on a pair; a skip still counts as seen.
SESSION_LABELS = ("a", "b", "skip")
# "human": a person labels; "persona": labels replayed from a simulated persona's group.
SESSION_MODES = ("human", "persona")
# How many offending ids an error message names: enough to find them, short enough to read.
MAX_IDS_IN_ERROR = 5
# Arrow list offsets are int32 up to this many values, int64 (large_list) beyond.
_INT32_MAX = 2**31 - 1


def default_db_path() -> str:
    """$HYRE_DB if set, else <repo>/data/hyre.duckdb."""
    return os.environ.get(DB_ENV_VAR) or str(REPO_DB_PATH)


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
    """CREATE TABLE IF NOT EXISTS profiles (
        user_name VARCHAR NOT NULL, ensemble_id VARCHAR NOT NULL, weights DOUBLE[] NOT NULL,
        labels VARCHAR NOT NULL, meta VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (user_name, ensemble_id))""",
    """CREATE TABLE IF NOT EXISTS results (
        key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL)""",
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


def _name_some(items: Iterable[Any]) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:MAX_IDS_IN_ERROR])
    more = f" and {len(items) - MAX_IDS_IN_ERROR} more" if len(items) > MAX_IDS_IN_ERROR else ""
    return shown + more


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
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing required columns {missing}; has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("frame has no rows")
    if frame.columns.duplicated().any():
        raise ValueError(
            f"frame has duplicated column names {list(frame.columns[frame.columns.duplicated()])}"
        )
    for col in REQUIRED_COLUMNS:
        bad = np.flatnonzero(frame[col].isna().to_numpy())
        if bad.size:
            raise ValueError(
                f"column {col!r} has missing values in rows {_name_some(bad.tolist())}"
            )

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

    unique_texts = base.drop_duplicates(list(REQUIRED_COLUMNS))
    pairs = base.drop_duplicates("pair_id", keep="first")
    if len(unique_texts) != len(pairs):
        conflicted = unique_texts["pair_id"][unique_texts["pair_id"].duplicated()].unique()
        raise ValueError(
            f"pair_id {_name_some(conflicted)} appear with different prompt/response texts"
        )
    pairs = pairs.reset_index(drop=True)
    prompts = pairs["prompt"].tolist()  # iterating a pandas string column item by item is slow
    for side in ("a", "b"):
        responses = pairs[f"response_{side}"].tolist()
        pairs[f"hash_{side}"] = [text_hash(p, r) for p, r in zip(prompts, responses, strict=True)]

    if "label" in frame.columns:
        label = frame["label"]
        known = label.isna().to_numpy() | label.isin(POOL_LABELS).to_numpy()
        if not known.all():
            bad = pd.unique(label[~known].astype(str))
            raise ValueError(
                f"label must be one of {POOL_LABELS} (or missing), got {_name_some(bad)}"
            )
        has_label = label.notna().to_numpy()
    else:
        has_label = np.zeros(n, dtype=bool)
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
    return _Prepared(pairs=pairs, labels=labels)


def _strings(values: pd.Series | np.ndarray | Sequence[str | None]) -> pa.Array:
    # from_pandas: pandas 3 turns None into NaN in string columns; both become SQL NULL
    return pa.array(values, type=pa.string(), from_pandas=True)


# ---------------------------------------------------------------- Store


class StoreLockedError(RuntimeError):
    """The database file is open for writing in another process (DuckDB allows one)."""


class Store:
    """The project's one database (a file, or ":memory:" for tests).

    Safe to share between the threads of one process (the Streamlit server):
    each thread gets its own cursor. Use as a context manager or call `close()`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = default_db_path() if path is None else str(path)
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            raise StoreLockedError(
                f"the database {self.path} is in use by another process (DuckDB lets one "
                "process open a file for writing): stop that process (the app, or a build "
                "or evaluate command), or point this one at another file with HYRE_DB / --db"
            ) from exc
        self._write_lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[tuple[weakref.ref[threading.Thread], duckdb.DuckDBPyConnection]] = []
        self._closed = False
        self.stats = StoreStats()
        try:
            self._create_schema()
        except Exception:
            self._con.close()
            raise

    # ------------------------------------------------------------ plumbing

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r}{', closed' if self._closed else ''})"

    def close(self) -> None:
        """Close every thread's cursor and the connection (idempotent)."""
        with self._cursor_lock:
            if self._closed:
                return
            self._closed = True
            for _, cur in self._cursors:
                cur.close()
            self._cursors = []
            self._con.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        cur = getattr(self._local, "cursor", None)
        if cur is not None:
            return cur
        with self._cursor_lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            # Streamlit runs each rerun in a fresh thread: drop the cursors of finished threads.
            alive = []
            for ref, other in self._cursors:
                thread = ref()
                if thread is None or not thread.is_alive():
                    other.close()
                else:
                    alive.append((ref, other))
            cur = self._con.cursor()
            alive.append((weakref.ref(threading.current_thread()), cur))
            self._cursors = alive
        self._local.cursor = cur
        return cur

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, StoreStats]]:
        """One write transaction; yields (cursor, counts to add to `stats` on commit)."""
        cur = self._cursor()
        counts = StoreStats()
        with self._write_lock:
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
        return self._cursor().execute(sql, list(params)).df()

    def _require(
        self, cur: duckdb.DuckDBPyConnection, table: str, key: str, value: str, what: str
    ) -> None:
        # table/key come from this module's own constants, never from the caller
        if _first(cur.execute(f"SELECT 1 FROM {table} WHERE {key} = ? LIMIT 1", [value])) is None:
            raise KeyError(f"no {what} {value!r}")

    # ------------------------------------------------------------ pools

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
                    raise ValueError(
                        f"a pool named {name!r} already exists ({row[0]}); pass replace=True to replace it"
                    )
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
        pairs = prep.pairs
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
                    f"pair_id {_name_some(merged['pair_id'][differs])} already in pool {pool_id} "
                    "with different prompt/response texts"
                )
        new = pairs[~pairs["pair_id"].isin(set(stored["pair_id"]))]
        start = cur.execute(
            "SELECT coalesce(max(row_index) + 1, 0) FROM pairs WHERE pool_id = ?", [pool_id]
        ).fetchall()[0][0]

        if len(new):
            text_rows = pd.DataFrame(
                {
                    "text_hash": np.concatenate([new["hash_a"], new["hash_b"]]),
                    "prompt": np.concatenate([new["prompt"], new["prompt"]]),
                    "response": np.concatenate([new["response_a"], new["response_b"]]),
                }
            ).drop_duplicates("text_hash")
            texts = pa.table({c: _strings(text_rows[c]) for c in text_rows.columns})
            with self._registered(cur, texts) as name:
                counts.texts_added += cur.execute(
                    f"INSERT INTO texts SELECT t.text_hash, t.prompt, t.response FROM {name} t "
                    "WHERE NOT EXISTS (SELECT 1 FROM texts x WHERE x.text_hash = t.text_hash)"
                ).fetchall()[0][0]
            table = pa.table(
                {
                    "row_index": pa.array(np.arange(start, start + len(new), dtype=np.int32)),
                    **{
                        c: _strings(new[c])
                        for c in (
                            "pair_id",
                            "prompt",
                            "response_a",
                            "response_b",
                            "hash_a",
                            "hash_b",
                            "meta",
                        )
                    },
                }
            )
            with self._registered(cur, table) as name:
                counts.pairs_added += cur.execute(
                    f"INSERT INTO pairs SELECT ?, row_index, pair_id, prompt, response_a, response_b, "
                    f"hash_a, hash_b, meta FROM {name}",
                    [pool_id],
                ).fetchall()[0][0]

        labels = prep.labels
        if len(labels):
            label_start = cur.execute(
                "SELECT coalesce(max(label_index) + 1, 0) FROM labels WHERE pool_id = ?", [pool_id]
            ).fetchall()[0][0]
            table = pa.table(
                {
                    "ord": pa.array(np.arange(len(labels), dtype=np.int64)),
                    **{
                        c: _strings(labels[c])
                        for c in ("pair_id", "grp", "annotator", "label", "meta")
                    },
                }
            )
            with self._registered(cur, table) as name:
                counts.labels_added += cur.execute(
                    f"INSERT INTO labels SELECT ?, "
                    f"(? + row_number() OVER (ORDER BY n.ord) - 1)::INTEGER, "
                    f"n.pair_id, n.grp, n.annotator, n.label, n.meta FROM {name} n "
                    "WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.pool_id = ? "
                    "AND l.pair_id = n.pair_id AND l.grp IS NOT DISTINCT FROM n.grp "
                    "AND l.annotator IS NOT DISTINCT FROM n.annotator AND l.label = n.label)",
                    [pool_id, label_start, pool_id],
                ).fetchall()[0][0]

    _POOL_SUMMARY = (
        "SELECT p.pool_id, p.name, p.source, p.created_at, "
        "(SELECT count(*) FROM pairs x WHERE x.pool_id = p.pool_id) AS n_pairs, "
        "(SELECT count(*) FROM labels l WHERE l.pool_id = p.pool_id) AS n_labels FROM pools p"
    )

    def list_pools(self) -> pd.DataFrame:
        """DataFrame(pool_id, name, source, created_at, n_pairs, n_labels), oldest first."""
        return self._fetch_df(self._POOL_SUMMARY + " ORDER BY p.created_at, p.name")

    def get_pool(self, pool_id_or_name: str) -> dict[str, Any]:
        """{pool_id, name, source, created_at, n_pairs, n_labels}; looks up the id first, then the name."""
        cur = self._cursor()
        for key in ("pool_id", "name"):
            # key is one of two literal column names, the value is a parameter
            found = cur.execute(self._POOL_SUMMARY + f" WHERE p.{key} = ?", [pool_id_or_name]).df()
            if len(found):
                values = found.iloc[0].to_dict()
                return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}
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
        for table in (
            "sessions",
            "head_predictions",
            "prediction_sets",
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

    # ------------------------------------------------------------ embeddings

    def missing_embeddings(self, backbone_id: str, hashes: Iterable[str]) -> list[str]:
        """The hashes (unique, in the order given) that have no stored embedding for this backbone."""
        hashes = list(dict.fromkeys(hashes))
        if not hashes:
            return []
        cur = self._cursor()
        query = pa.table({"ord": np.arange(len(hashes)), "text_hash": _strings(hashes)})
        with self._registered(cur, query) as name:
            rows = cur.execute(
                f"SELECT q.text_hash FROM {name} q WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                "WHERE e.backbone_id = ? AND e.text_hash = q.text_hash) ORDER BY q.ord",
                [backbone_id],
            ).fetchall()
        return [r[0] for r in rows]

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
            raise ValueError(f"hashes repeat: {_name_some(dup)}")
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
                f"{len(missing)} text hashes have no {backbone_id!r} embedding: {_name_some(missing)}"
            )
        order = result.column("ord").to_numpy()
        vectors = _list_column_to_matrix(result.column("vector"))
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    # ------------------------------------------------------------ ensembles

    def put_ensemble(
        self,
        *,
        ensemble_id: str,
        pool_id: str,
        backbone_id: str,
        config: dict[str, Any],
        weights: bytes,
        train_fingerprint: str,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Store a trained ensemble (weights: safetensors bytes); an existing id is overwritten."""
        _check_name(ensemble_id, "ensemble_id")
        _check_name(backbone_id, "backbone_id")
        if not isinstance(weights, bytes | bytearray | memoryview):
            raise ValueError(f"weights must be bytes (safetensors), got {type(weights).__name__}")
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        config_json = _to_json(config, what="config")
        meta_json = _to_json(meta or {}, what="meta")
        with self._transaction() as (cur, counts):
            self._require(cur, "pools", "pool_id", pool_id, "pool")
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

    def get_ensemble(self, ensemble_id: str) -> dict[str, Any]:
        """{ensemble_id, pool_id, backbone_id, config, train_fingerprint, weights (bytes), meta, created_at}."""
        row = _first(
            self._cursor().execute(
                "SELECT ensemble_id, pool_id, backbone_id, config, train_fingerprint, weights, meta, "
                "created_at FROM ensembles WHERE ensemble_id = ?",
                [ensemble_id],
            )
        )
        if row is None:
            raise KeyError(f"no ensemble {ensemble_id!r}")
        keys = (
            "ensemble_id",
            "pool_id",
            "backbone_id",
            "config",
            "train_fingerprint",
            "weights",
            "meta",
            "created_at",
        )
        out = dict(zip(keys, row, strict=True))
        out["config"] = json.loads(out["config"])
        out["meta"] = json.loads(out["meta"])
        out["weights"] = bytes(out["weights"])
        return out

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
        for table in ("sessions", "profiles", "head_predictions", "prediction_sets", "ensembles"):
            cur.execute(f"DELETE FROM {table} WHERE ensemble_id = ?", [ensemble_id])

    # ------------------------------------------------------------ head predictions

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

    # ------------------------------------------------------------ sessions

    def get_or_create_session(
        self,
        *,
        user: str,
        pool_id: str,
        ensemble_id: str,
        mode: str = "human",
        persona: str | None = None,
    ) -> str:
        """The session of this user on this pool and ensemble (resumed if it exists); returns its id."""
        _check_name(user, "user")
        if mode not in SESSION_MODES:
            raise ValueError(f"mode must be one of {SESSION_MODES}, got {mode!r}")
        if mode == "persona":
            _check_name(persona, "persona (required when mode='persona')")
        persona_key = persona or ""
        with self._transaction() as (cur, _):
            row = _first(
                cur.execute(
                    "SELECT session_id FROM sessions WHERE user_name = ? AND pool_id = ? AND "
                    "ensemble_id = ? AND mode = ? AND persona = ?",
                    [user, pool_id, ensemble_id, mode, persona_key],
                )
            )
            if row is not None:
                return row[0]
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            session_id = _new_id("session")
            now = _now()
            cur.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?)",
                [session_id, user, pool_id, ensemble_id, mode, persona_key, now, now],
            )
            return session_id

    def get_session(self, session_id: str) -> dict[str, Any]:
        """{session_id, user, pool_id, ensemble_id, mode, persona, settings, n_labels, created_at, updated_at}."""
        frame = self.list_sessions(session_id=session_id)
        if not len(frame):
            raise KeyError(f"no session {session_id!r}")
        out = frame.iloc[0].to_dict()
        out["n_labels"] = int(out["n_labels"])
        return out

    def update_session(self, session_id: str, **settings: Any) -> dict[str, Any]:
        """Merge settings (e.g. strategy, beta) into the session's; returns all its settings."""
        with self._transaction() as (cur, _):
            row = _first(
                cur.execute("SELECT settings FROM sessions WHERE session_id = ?", [session_id])
            )
            if row is None:
                raise KeyError(f"no session {session_id!r}")
            merged = {**json.loads(row[0]), **settings}
            cur.execute(
                "UPDATE sessions SET settings = ?, updated_at = ? WHERE session_id = ?",
                [_to_json(merged, what="settings"), _now(), session_id],
            )
        return merged

    def add_session_label(
        self, session_id: str, *, row_index: int, pair_id: str, label: str
    ) -> int:
        """Append a label ('a', 'b' or 'skip') for one pair of the session's pool; returns its seq (0, 1, ...).

        A pair already labelled in this session raises ValueError (undo it first).
        """
        if label not in SESSION_LABELS:
            raise ValueError(f"label must be one of {SESSION_LABELS}, got {label!r}")
        row_index = int(row_index)
        with self._transaction() as (cur, _):
            row = _first(
                cur.execute("SELECT pool_id FROM sessions WHERE session_id = ?", [session_id])
            )
            if row is None:
                raise KeyError(f"no session {session_id!r}")
            stored = _first(
                cur.execute(
                    "SELECT pair_id FROM pairs WHERE pool_id = ? AND row_index = ?",
                    [row[0], row_index],
                )
            )
            if stored is None or stored[0] != str(pair_id):
                raise ValueError(
                    f"row_index {row_index} is pair {None if stored is None else stored[0]!r} in pool "
                    f"{row[0]}, not {pair_id!r}"
                )
            done = _first(
                cur.execute(
                    "SELECT seq FROM session_labels WHERE session_id = ? AND row_index = ?",
                    [session_id, row_index],
                )
            )
            if done is not None:
                raise ValueError(
                    f"row_index {row_index} is already labelled in this session (seq {done[0]})"
                )
            seq = cur.execute(
                "SELECT coalesce(max(seq) + 1, 0) FROM session_labels WHERE session_id = ?",
                [session_id],
            ).fetchall()[0][0]
            now = _now()
            cur.execute(
                "INSERT INTO session_labels VALUES (?, ?, ?, ?, ?, ?)",
                [session_id, seq, row_index, str(pair_id), label, now],
            )
            cur.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id]
            )
        return seq

    def undo_session_label(self, session_id: str) -> dict[str, Any] | None:
        """Remove the session's last label and return it ({seq, row_index, pair_id, label, created_at}), or None."""
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            row = _first(
                cur.execute(
                    "SELECT seq, row_index, pair_id, label, created_at FROM session_labels "
                    "WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
                    [session_id],
                )
            )
            if row is None:
                return None
            cur.execute(
                "DELETE FROM session_labels WHERE session_id = ? AND seq = ?", [session_id, row[0]]
            )
            cur.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", [_now(), session_id]
            )
        return dict(zip(("seq", "row_index", "pair_id", "label", "created_at"), row, strict=True))

    def session_labels(self, session_id: str) -> pd.DataFrame:
        """DataFrame(seq, row_index, pair_id, label, created_at) in labelling order."""
        self._require(self._cursor(), "sessions", "session_id", session_id, "session")
        return self._fetch_df(
            "SELECT seq, row_index, pair_id, label, created_at FROM session_labels "
            "WHERE session_id = ? ORDER BY seq",
            [session_id],
        )

    def reset_session(self, session_id: str) -> int:
        """Remove all of the session's labels (settings stay); returns how many were removed."""
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            removed = cur.execute(
                "DELETE FROM session_labels WHERE session_id = ?", [session_id]
            ).fetchall()[0][0]
            cur.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", [_now(), session_id]
            )
        return removed

    def delete_session(self, session_id: str) -> None:
        """Delete a session and its labels."""
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            cur.execute("DELETE FROM session_labels WHERE session_id = ?", [session_id])
            cur.execute("DELETE FROM sessions WHERE session_id = ?", [session_id])

    def list_sessions(
        self, pool_id: str | None = None, *, user: str | None = None, session_id: str | None = None
    ) -> pd.DataFrame:
        """DataFrame(session_id, user, pool_id, ensemble_id, mode, persona, settings, n_labels, created_at, updated_at)."""
        frame = self._fetch_df(
            "SELECT s.session_id, s.user_name AS user, s.pool_id, s.ensemble_id, s.mode, s.persona, "
            "s.settings, (SELECT count(*) FROM session_labels l WHERE l.session_id = s.session_id) "
            "AS n_labels, s.created_at, s.updated_at FROM sessions s "
            "WHERE (? IS NULL OR s.pool_id = ?) AND (? IS NULL OR s.user_name = ?) "
            "AND (? IS NULL OR s.session_id = ?) ORDER BY s.created_at, s.session_id",
            [pool_id, pool_id, user, user, session_id, session_id],
        )
        frame["persona"] = frame["persona"].astype(object).where(frame["persona"] != "", None)
        frame["settings"] = [json.loads(s) for s in frame["settings"]]
        return frame

    # ------------------------------------------------------------ profiles

    def save_profile(
        self,
        *,
        user: str,
        ensemble_id: str,
        weights: np.ndarray,
        labels: list[dict[str, Any]],
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Save (or overwrite) a user's head weights (n_heads,) and the labels they came from."""
        _check_name(user, "user")
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or weights.size == 0:
            raise ValueError(f"weights must have shape (n_heads,), got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("weights must be finite and non-negative")
        labels_json = _to_json(list(labels), what="labels")
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

    def get_profile(self, user: str, ensemble_id: str) -> dict[str, Any] | None:
        """{user, ensemble_id, weights (n_heads,) float64, labels, meta, updated_at}, or None."""
        row = _first(
            self._cursor().execute(
                "SELECT weights, labels, meta, updated_at FROM profiles WHERE user_name = ? AND ensemble_id = ?",
                [user, ensemble_id],
            )
        )
        if row is None:
            return None
        return {
            "user": user,
            "ensemble_id": ensemble_id,
            "weights": np.asarray(row[0], dtype=np.float64),
            "labels": json.loads(row[1]),
            "meta": json.loads(row[2]),
            "updated_at": row[3],
        }

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

    # ------------------------------------------------------------ results cache

    def put_result(self, key: str, value: dict[str, Any]) -> None:
        """Cache a JSON-serialisable dict under `key` (overwrites)."""
        _check_name(key, "key")
        if not isinstance(value, dict):
            raise ValueError(f"value must be a dict, got {type(value).__name__}")
        value_json = _to_json(value, what="value")
        with self._transaction() as (cur, _):
            cur.execute("DELETE FROM results WHERE key = ?", [key])
            cur.execute("INSERT INTO results VALUES (?, ?, ?)", [key, value_json, _now()])

    def get_result(self, key: str) -> dict[str, Any] | None:
        row = _first(self._cursor().execute("SELECT value FROM results WHERE key = ?", [key]))
        return None if row is None else json.loads(row[0])
