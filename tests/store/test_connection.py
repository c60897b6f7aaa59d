"""Tests for hyre_engine/store/connection.py (text hashes, the Arrow column reader, files, the default path, closing, threads and locks), through the Store facade."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest
from store_helpers import add_ensemble, fake_vectors, make_frame, table_counts

from hyre_engine import store as store_mod
from hyre_engine.store import MEMORY, Store, default_db_path, text_hash


def test_text_hash_is_stable_and_unambiguous():
    h = text_hash("q", "r")
    assert h == text_hash("q", "r") and len(h) == 64 and int(h, 16) >= 0
    assert text_hash("q", "r") != text_hash("r", "q")
    # A separator-joined encoding would make these two collide.
    assert text_hash("a\x1fb", "c") != text_hash("a", "b\x1fc")
    assert text_hash("", "x") != text_hash("x", "")


def test_list_column_to_matrix_across_chunks():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    full = store_mod._list_array(m)
    chunked = pa.chunked_array([full.slice(0, 1), full.slice(1, 3)])
    np.testing.assert_array_equal(store_mod._list_column_to_matrix(chunked), m)
    ragged = pa.chunked_array([pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))])
    with pytest.raises(RuntimeError, match="different lengths"):
        store_mod._list_column_to_matrix(ragged)


def test_file_persists_across_reopen(tmp_path):
    path = tmp_path / "sub" / "hyre.duckdb"
    z = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with Store(path) as s:
        pool = s.add_pool("demo", make_frame(5))
        hashes = s.pool_texts(pool)["text_hash"].tolist()
        s.put_embeddings("bb", hashes, fake_vectors(hashes))
        add_ensemble(s, pool)
        s.put_head_predictions("ens1", pool, z)
        sid = s.get_or_create_session(user="ann", pool_id=pool, ensemble_id="ens1")
        s.add_session_label(sid, row_index=2, pair_id="p2", label="b")
        s.put_result("k", {"v": 1})
    assert path.exists()
    with Store(path) as s:
        assert s.get_pool("demo").pool_id == pool
        assert s.missing_embeddings("bb", hashes) == []
        np.testing.assert_array_equal(s.get_embeddings("bb", hashes), fake_vectors(hashes))
        np.testing.assert_array_equal(s.get_head_predictions("ens1", pool), z)
        assert s.get_or_create_session(user="ann", pool_id=pool, ensemble_id="ens1") == sid
        assert s.session_labels(sid)["pair_id"].tolist() == ["p2"]
        assert s.get_result("k").value == {"v": 1}
        s._cursor().execute("UPDATE schema_version SET version = 999")
    with pytest.raises(RuntimeError, match="schema version"):
        Store(path)


def test_default_path_from_env(tmp_path, monkeypatch):
    target = tmp_path / "env.duckdb"
    monkeypatch.setenv("HYRE_DB", str(target))
    assert default_db_path() == str(target)
    with Store() as s:
        assert s.path == str(target)
    assert target.exists()
    monkeypatch.delenv("HYRE_DB")
    assert default_db_path().endswith("data/hyre.duckdb")


def test_closed_store_refuses_work():
    s = Store(MEMORY)
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.list_pools()


def test_threads_share_one_store(store, session_setup):
    pool, ens = session_setup
    z = np.arange(10, dtype=np.float32).reshape(5, 2)
    store.put_head_predictions(ens, pool, z)
    n_threads, n_rounds = 6, 5
    errors: list[BaseException] = []
    cursors = {}
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            cursors[t] = id(store._cursor())
            barrier.wait()
            sid = store.get_or_create_session(user=f"user{t}", pool_id=pool, ensemble_id=ens)
            for r in range(n_rounds):
                store.add_session_label(sid, row_index=r, pair_id=f"p{r}", label="ab"[(t + r) % 2])
                # every thread writes the same hashes too: writes must not conflict
                hashes = [text_hash("shared", f"text {r}"), text_hash(f"thread {t}", f"text {r}")]
                store.put_embeddings("bb", hashes, fake_vectors(hashes))
                np.testing.assert_array_equal(store.get_head_predictions(ens, pool), z)
                assert len(store.session_labels(sid)) == r + 1
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(set(cursors.values())) == n_threads  # a cursor per thread
    sessions = store.list_sessions(pool)
    assert sorted(sessions["user"]) == [f"user{t}" for t in range(n_threads)]
    assert sessions["n_labels"].tolist() == [n_rounds] * n_threads
    for t, sid in zip(sessions["user"], sessions["session_id"], strict=True):
        k = int(t.removeprefix("user"))
        assert store.session_labels(sid)["label"].tolist() == [
            "ab"[(k + r) % 2] for r in range(n_rounds)
        ]
    assert table_counts(store)["embeddings"] == n_rounds * (1 + n_threads)
    # the finished threads' cursors are closed when the next thread asks for one
    store._cursor()
    fresh = threading.Thread(target=store._cursor)
    fresh.start()
    fresh.join()
    assert len(store._cursors) <= 2


def test_a_file_held_by_a_process_that_does_not_take_turns_is_a_clear_error(tmp_path):
    """A foreign program (here a bare duckdb connection) keeps the file: a bounded wait, then
    StoreLockedError; HyRe processes hand the file over (tests/store/test_processes.py)."""
    import subprocess
    import sys
    import time

    from hyre_engine.store import StoreLockedError

    path = tmp_path / "held.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        with pytest.raises(StoreLockedError, match="in use by another process for 0.5 s.*HYRE_DB"):
            Store(path, lock_timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    with Store(path, lock_timeout=10) as store:  # free again once the other process is gone
        assert store.list_pools().empty
