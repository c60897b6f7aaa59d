"""Deferred calibration on a server-side daemon thread: the app's first launch opens the
Label page with the default beta, then switches once this has stored the calibrated one.

One thread per (database file, ensemble), whoever asks first starts it and later asks
find it; it runs in the server process, so closing the browser tab that started it
changes nothing. A failure is kept (``calibration_status`` says it, the ensemble keeps
the default beta) and not retried until the server restarts.
"""

from __future__ import annotations

import logging
import threading

from hyre_engine.jobs import plain_error
from hyre_engine.pipeline import calibration_pending, finish_calibration
from hyre_engine.store import Store

RUNNING, FAILED = "running", "failed"

_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
# (db path, ensemble id) -> the thread, and the error of one that failed
_THREADS: dict[tuple[str, str], threading.Thread] = {}
_ERRORS: dict[tuple[str, str], str] = {}


def _run(store: Store, ensemble_id: str, key: tuple[str, str]) -> None:
    try:
        finish_calibration(store, ensemble_id)
    except Exception as exc:  # noqa: BLE001 - a thread has no caller to raise to: keep it for the page
        _LOG.exception("background calibration of ensemble %s failed", ensemble_id)
        with _LOCK:
            _ERRORS[key] = plain_error(exc)


def calibrate_in_background(store: Store, ensemble_id: str) -> threading.Thread | None:
    """Start the ensemble's pending calibration on a daemon thread, unless it runs or ran.

    Returns the thread (running or finished), or None when nothing is pending.
    """
    key = (str(store.path), ensemble_id)
    with _LOCK:
        thread = _THREADS.get(key)
        if thread is not None:
            return thread
        if not calibration_pending(store.get_ensemble(ensemble_id, with_weights=False).meta):
            return None
        thread = threading.Thread(target=_run, args=(store, ensemble_id, key), daemon=True,
                                  name=f"hyre-calibrate-{ensemble_id}")
        _THREADS[key] = thread
        thread.start()
    return thread


def calibration_status(store: Store, ensemble_id: str) -> str | None:
    """RUNNING, FAILED (``calibration_error`` says why), or None: nothing runs for this ensemble here."""
    key = (str(store.path), ensemble_id)
    with _LOCK:
        if key in _ERRORS:
            return FAILED
        thread = _THREADS.get(key)
    return RUNNING if thread is not None and thread.is_alive() else None


def calibration_error(store: Store, ensemble_id: str) -> str | None:
    """Why this ensemble's background calibration failed, or None."""
    with _LOCK:
        return _ERRORS.get((str(store.path), ensemble_id))
