"""DuckDB store (a package: connection and schema, pools, artifacts, sessions, people, annotations, results, sign-ins): pools, texts, labels, embeddings, ensembles, head predictions,
labelling sessions, user profiles and cached results, in one database file.

The only module of the engine that imports duckdb. Everything the app keeps
between reruns lives here, not in the UI's session state, so a reload or a second tab
sees the same labels, sessions and caches.

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
- Several processes: the file is held only while this process uses it, and handed
  over when another process waits for it (lease.py; docs/engine.md).
- Every write is one transaction: on any error it is rolled back, so nothing
  already stored is lost or half-written.
- Arrays (embeddings, Z) are stored one row per item as a FLOAT[] list and read
  back through Arrow, reshaping the flat values (no Python loop per item).
  bench/bench_store.py measures reading Z for 100,000 x 100.
- No foreign keys: duckdb has no ON DELETE CASCADE, so the deletes cascade in
  code, inside one transaction.
- Timestamps are naive UTC.


Single records come back as frozen dataclasses (`records`: `PoolRecord`, `EnsembleRecord`
with its `EnsembleMeta`, `SessionRecord`, `LabelRecord`, `ProfileRecord`, `ResultRecord`);
listings stay DataFrames.

A frame's validation lives in one place, ``hyre_engine.data``: `add_pool` and `add_pairs`
call its `validate_frame` and only reshape what passes (pairs, texts, label rows); what
the store checks itself is what the tables hold (a pair_id already stored with other
texts, array shapes, ids that must exist).
"""

from __future__ import annotations

import threading

from hyre_engine.store.annotations import AnnotationsMixin
from hyre_engine.store.artifacts import ArtifactsMixin
from hyre_engine.store.connection import (
    DB_ENV_VAR,
    DEFAULT_DB_PATH,
    MEMORY,
    SCHEMA_VERSION,
    SESSION_MODES,
    StoreLockedError,
    StoreStats,
    _list_array,
    _list_column_to_matrix,
    default_db_path,
    text_hash,
)
from hyre_engine.store.people import PeopleMixin
from hyre_engine.store.pools import PoolExistsError, PoolsMixin
from hyre_engine.store.records import (
    EnsembleMeta,
    EnsembleRecord,
    LabelRecord,
    PoolRecord,
    ProfileMeta,
    ProfileRecord,
    ResultRecord,
    SessionRecord,
)
from hyre_engine.store.results import ResultsMixin
from hyre_engine.store.sessions import AUDIT_ACTIONS, AlreadyLabelledError, SessionsMixin
from hyre_engine.store.shards import ShardsMixin
from hyre_engine.store.signins import SigninRecord, SigninsMixin

__all__ = [
    "AUDIT_ACTIONS",
    "AlreadyLabelledError",
    "DB_ENV_VAR",
    "DEFAULT_DB_PATH",
    "EnsembleMeta",
    "EnsembleRecord",
    "LabelRecord",
    "MEMORY",
    "PoolExistsError",
    "PoolRecord",
    "ProfileMeta",
    "ProfileRecord",
    "ResultRecord",
    "SCHEMA_VERSION",
    "SESSION_MODES",
    "SessionRecord",
    "SigninRecord",
    "Store",
    "StoreLockedError",
    "StoreStats",
    "_list_array",
    "_list_column_to_matrix",
    "default_db_path",
    "shared_store",
    "text_hash",
]


class Store(ShardsMixin, PoolsMixin, ArtifactsMixin, SessionsMixin, PeopleMixin, AnnotationsMixin, ResultsMixin,
            SigninsMixin):
    """The project's one database (a file, or ":memory:" for tests).

    Safe to share between the threads of one process (the Streamlit server):
    each thread gets its own cursor. Use as a context manager or call `close()`.
    Each group of methods lives in its own module; this class only joins them.
    """


_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, Store] = {}


def shared_store(path: str | None = None) -> Store:
    """The process's one open Store of a database file (default: `default_db_path()`).

    The server's sessions and its jobs (a first launch starts before any page runs) use
    the same Store: two Stores of one file in one process would take turns with the file
    as two processes do (lease.py), at a cost per operation. A closed one is replaced.
    """
    path = default_db_path() if path is None else str(path)
    with _SHARED_LOCK:
        store = _SHARED.get(path)
        if store is None or store.closed:
            store = _SHARED[path] = Store(path)
        return store
