"""Sharing one DuckDB file between processes: this process holds the file only while it
uses it, and gives it up as soon as another process asks.

DuckDB lets one process open a file read-write, or many processes open it read-only,
never both (docs: connect/concurrency). The app and a CLI `build` both write, so they
take turns. Opening a file costs about 50 ms (measured: bench/bench_lease.py), too much
per label, so a process keeps its connection between operations (a *lease*) and closes
it only when

- no store operation of this process is running, and
- another process is waiting for the file (it holds the *turn*: an exclusive `flock` on
  ``<db>.turn`` while it waits), or nothing used the store for ``idle_release`` seconds.

A waiting process takes the turn, then retries `duckdb.connect` with a jittered backoff
until the holder lets go (``lock_timeout`` bounds the wait: then `StoreLockedError`).
While a process waits, the holder lets its running operations finish and makes its new
ones queue behind the waiter, so two busy processes alternate instead of one starving.
Durability is DuckDB's own: every write is a committed transaction in the WAL before it
returns, whoever holds the file next replays it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import duckdb

try:  # POSIX; elsewhere waiting processes only retry (no queue, no hand-over)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Seconds an operation waits for another process's turn before StoreLockedError: longer
# than a build's largest single write (Z of 100,000 x 100: about 2 s in bench/bench_store.py).
DEFAULT_LOCK_TIMEOUT = 30.0
LOCK_TIMEOUT_ENV = "HYRE_LOCK_TIMEOUT"
# Seconds without any store operation after which the file is given back unasked, so a
# tool that does not take turns (the duckdb shell) can open it while the app idles.
DEFAULT_IDLE_RELEASE = 60.0
# How often the holder looks for a waiting process while it idles (seconds): the
# waiter's extra latency at worst (an open costs 50-190 ms anyway); one non-blocking
# flock per look, about 2 ms of CPU per second at this period (20 ms cost 4 ms/s).
POLL_SECONDS = 0.05
# Backoff between two attempts to open a file another process holds (seconds).
RETRY_FIRST, RETRY_MAX = 0.005, 0.1
TURN_SUFFIX = ".turn"
# Every lease not yet collected, closed at exit.
_LIVE: weakref.WeakSet[Lease] = weakref.WeakSet()


class StoreLockedError(RuntimeError):
    """The database file stayed held by another process for longer than the lock timeout."""


def lock_timeout_from_env() -> float:
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${LOCK_TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ValueError(f"${LOCK_TIMEOUT_ENV} must be >= 0 seconds, got {raw!r}")
    return value


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _watch(lease_ref: weakref.ref[Lease]) -> None:
    """While the file is open: hand it over when another process waits, or after idling.

    Holds the lease only during a look, so a Store nobody references is still collected.
    """
    while True:
        time.sleep(POLL_SECONDS)
        lease = lease_ref()
        if lease is None or not lease._look():
            return
        del lease


@atexit.register
def _close_all() -> None:
    # before the interpreter stops the watcher threads: close the files cleanly
    for lease in list(_LIVE):
        lease.close()


def _with_backoff(attempt: Callable[[], bool], deadline: float) -> bool:
    """Call ``attempt`` until it returns True (then True), with a jittered exponential
    backoff between calls; False once ``deadline`` (time.monotonic) has passed."""
    delay = RETRY_FIRST
    while not attempt():
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(2 * delay, RETRY_MAX)
    return True


class Lease:
    """The connection of one Store: opened on demand, shared by its threads, given up on request.

    ``scope()`` brackets one store operation; a cursor is valid inside the scope it was
    taken in. A ``":memory:"`` database is private to the process and never given up.
    """

    def __init__(
        self, path: str, *, connect: Callable[[], duckdb.DuckDBPyConnection],
        lock_timeout: float, idle_release: float | None = DEFAULT_IDLE_RELEASE,
        shared: bool = True,
    ) -> None:
        self.path = path
        self.lock_timeout = float(lock_timeout)
        self.idle_release = idle_release
        self.opens = 0  # times this process opened the file (tests, bench)
        self.hand_overs = 0  # times it gave the file up because another process waited
        self._connect = connect
        self._shared = shared and fcntl is not None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._generation = 0
        self._active = 0
        self._yielding = False
        self._closed = False
        self._last_used = time.monotonic()
        self._cond = threading.Condition(threading.Lock())
        self._local = threading.local()
        self._cursors: list[tuple[weakref.ref[threading.Thread], duckdb.DuckDBPyConnection]] = []
        self._turn_fd: int | None = None
        self._monitor: threading.Thread | None = None
        _LIVE.add(self)

    # ------------------------------------------------------------ operations

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """One store operation: the file stays open until the outermost scope ends."""
        depth = getattr(self._local, "depth", 0)
        if not depth:
            self._enter()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if not depth:
                self._leave()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the open connection (opening it if needed).

        Inside a scope it stays valid until the scope ends; outside any scope (a caller
        outside the Store's methods, in tests) until the lease is next given up.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError(f"Store({self.path!r}, closed) is closed")
            if self._con is None:
                self._open()
            self._last_used = time.monotonic()
            mine = getattr(self._local, "cursor", None)
            if mine is not None and mine[0] == self._generation:
                return mine[1]
            cur = self._con.cursor()
            alive = [(ref, c) for ref, c in self._cursors if self._keep(ref, c)]
            alive.append((weakref.ref(threading.current_thread()), cur))
            self._cursors = alive
            self._local.cursor = (self._generation, cur)
            return cur

    @property
    def cursors(self) -> list[duckdb.DuckDBPyConnection]:
        return [c for _, c in self._cursors]

    @property
    def is_open(self) -> bool:
        return self._con is not None

    def close(self) -> None:
        """Close every cursor and the connection; later operations raise (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._release()
            if self._turn_fd is not None:
                os.close(self._turn_fd)
                self._turn_fd = None
            self._cond.notify_all()

    def release(self) -> bool:
        """Give the file up now if no operation runs (tests, `Store.release`); True if closed."""
        with self._cond:
            return self._release_if_idle()

    # ------------------------------------------------------------ internals

    @staticmethod
    def _keep(ref: weakref.ref[threading.Thread], cur: duckdb.DuckDBPyConnection) -> bool:
        # Streamlit runs each rerun in a fresh thread: drop the cursors of finished threads
        thread = ref()
        if thread is None or not thread.is_alive():
            cur.close()
            return False
        return True

    def _enter(self) -> None:
        with self._cond:
            # another process waits: let it in before starting anything new here
            while self._yielding and self._con is not None and not self._closed:
                self._cond.wait()
            if self._closed:
                raise RuntimeError(f"Store({self.path!r}, closed) is closed")
            if self._con is None:
                self._open()
            self._active += 1

    def _leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._last_used = time.monotonic()
            if self._active == 0 and self._con is not None and (self._yielding or self._waiting()):
                self.hand_overs += 1
                self._release()

    def _open(self) -> None:
        """Connect, waiting in the queue for another process's turn (caller holds _cond)."""
        deadline = time.monotonic() + self.lock_timeout
        refused: list[duckdb.IOException] = []

        def connect() -> bool:
            try:
                self._con = self._connect()
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                refused[:] = [exc]
                return False
            return True

        with self._turn(deadline):
            if not _with_backoff(connect, deadline):
                raise self._locked_error() from refused[-1]
        self.opens += 1
        self._generation += 1
        self._yielding = False
        self._last_used = time.monotonic()
        if self._shared and (self._monitor is None or not self._monitor.is_alive()):
            self._monitor = threading.Thread(
                target=_watch, args=(weakref.ref(self),), name="hyre-store-lease", daemon=True
            )
            self._monitor.start()

    def _release(self) -> None:
        """Close the cursors and the connection (caller holds _cond)."""
        for _, cur in self._cursors:
            cur.close()
        self._cursors = []
        if self._con is not None:
            self._con.close()
            self._con = None
        self._yielding = False
        self._cond.notify_all()

    def _look(self) -> bool:
        """One look of the watcher: hand over or give back if due; False once the file is closed."""
        with self._cond:
            if self._con is None or self._closed:
                return False
            if self._waiting():
                self._yielding = True
            idle = self.idle_release is not None and time.monotonic() - self._last_used > self.idle_release
            yielding = self._yielding
            if (yielding or idle) and self._release_if_idle():
                self.hand_overs += int(yielding)
                return False
            return True

    def _release_if_idle(self) -> bool:
        """Close the file if no operation runs (caller holds _cond); True if it was closed."""
        if self._con is None or self._active:
            return False
        self._release()
        return True

    def _turn_file(self) -> int | None:
        if not self._shared:
            return None
        if self._turn_fd is None:
            self._turn_fd = os.open(self.path + TURN_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        return self._turn_fd

    def _waiting(self) -> bool:
        """Whether another process holds the turn (waits to open the file)."""
        fd = self._turn_file()
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    @contextlib.contextmanager
    def _turn(self, deadline: float) -> Iterator[None]:
        """Hold the turn while opening: one waiting process at a time, the holder sees it."""
        fd = self._turn_file()
        if fd is None:
            yield
            return

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not _with_backoff(take, deadline):
            raise self._locked_error()
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _locked_error(self) -> StoreLockedError:
        return StoreLockedError(
            f"the database {self.path} stayed in use by another process for "
            f"{self.lock_timeout:g} s (DuckDB lets one process open a file for writing; "
            f"HyRe processes take turns, ${LOCK_TIMEOUT_ENV} sets how long to wait): stop that "
            "process, or point this one at another file with HYRE_DB / --db"
        )
