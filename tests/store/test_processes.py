"""Several real processes on one store file (store/lease.py): each writes while the
others do, nothing is lost, and each sees what the others added without reopening.

The app-side Store lives in this process (a thread labels through it, as Streamlit's
threads do); the other side is real subprocesses: workers that import and label
(tests/store/process_worker.py), and the CLI's `build` (slow: the real model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from store_helpers import add_ensemble, make_frame

from hyre_engine.store import Store

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("process_worker.py")
DEMO_PAIRS = ROOT / "data" / "demo" / "pairs.jsonl"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HYRE_LOCK_TIMEOUT": "60"}


class AppSideLabeller:
    """A thread labelling through this process's Store, one write at a time, until stopped."""

    def __init__(self, store: Store, pool_id: str, ensemble_id: str, n_pairs: int) -> None:
        self.store, self.pool_id, self.n_pairs = store, pool_id, n_pairs
        self.session = store.get_or_create_session(user="app", pool_id=pool_id, ensemble_id=ensemble_id)
        self.acked: list[tuple[int, int, str, float]] = []  # seq, row, label, when
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            for row in range(self.n_pairs):
                if self._stop.is_set():
                    return
                label = "ab"[row % 2]
                seq = self.store.add_session_label(self.session, row_index=row, pair_id=f"p{row}", label=label)
                self.acked.append((seq, row, label, time.monotonic()))
                time.sleep(0.02)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def __enter__(self) -> AppSideLabeller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def assert_all_stored(self, store: Store) -> None:
        assert self.errors == []
        stored = store.session_labels(self.session)
        got = list(zip(stored["seq"], stored["row_index"], stored["label"], strict=True))
        assert got == [(seq, row, label) for seq, row, label, _ in self.acked]


def test_worker_processes_and_the_app_side_write_at_once_and_see_each_other(tmp_path):
    db = tmp_path / "shared.duckdb"
    app = Store(db)
    pool = app.add_pool("app-pool", make_frame(400), source="app")
    add_ensemble(app, pool)
    n = 15
    with AppSideLabeller(app, pool, "ens1", 400) as labeller:
        workers = [
            subprocess.Popen([sys.executable, str(WORKER), str(db), f"w{k}", str(n)], cwd=ROOT, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k in range(2)
        ]
        outputs = [w.communicate(timeout=240) for w in workers]
        during = len(labeller.acked)
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        lines = [line.split() for line in out.splitlines()]
        assert lines[-1][0] == "DONE" and sum(line[0] == "LABEL" for line in lines) == n
        # the worker gave the file up for the others while it labelled
        assert int(lines[-1][2]) >= 1, lines[-1]
    assert during >= 5, "the app side could not write while the workers ran"
    # the app side sees the workers' pools and labels through the Store it had open all along
    names = set(app.list_pools()["name"])
    assert {"app-pool", "w0", "w1"} <= names
    sessions = app.list_sessions()
    assert sorted(sessions[sessions["user"].isin(["w0", "w1"])]["n_labels"]) == [n, n]
    labeller.assert_all_stored(app)
    assert app._lease.hand_overs >= 1
    app.close()


def _small_pool(folder: Path) -> Path:
    rows = [json.loads(line) for line in DEMO_PAIRS.read_text().splitlines() if line.strip()]
    prompts = list(dict.fromkeys(r["prompt_id"] for r in rows))[:3]
    path = folder / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["prompt_id"] in prompts))
    return path


@pytest.mark.slow
def test_a_cli_build_runs_while_the_app_side_labels_and_the_app_sees_the_new_pool(tmp_path):
    db = tmp_path / "app.duckdb"
    app = Store(db)
    pool = app.add_pool("app-pool", make_frame(2000), source="app")
    add_ensemble(app, pool)
    app.put_head_predictions("ens1", pool, np.zeros((2000, 2), np.float32))
    before = set(app.list_pools()["name"])
    with AppSideLabeller(app, pool, "ens1", 2000) as labeller:
        started = time.monotonic()
        build = subprocess.run(
            [sys.executable, "-m", "hyre_engine", "build", "--pool", str(_small_pool(tmp_path)), "--db", str(db),
             "--name", "cli-pool", "--train-groups", "crowd", "--heads", "8", "--hidden", "16", "--quiet"],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
        )
        ended = time.monotonic()
    assert build.returncode == 0, build.stderr[-3000:]
    report = json.loads(build.stdout.strip().splitlines()[-1])
    # labels written while the build ran, not only before or after it
    assert sum(started < when < ended for *_, when in labeller.acked) >= 10
    labeller.assert_all_stored(app)
    # the app side sees the new pool, its ensemble and its Z without reopening
    assert set(app.list_pools()["name"]) - before == {"cli-pool"}
    new_pool = app.get_pool("cli-pool")
    ensembles = app.list_ensembles(new_pool.pool_id)
    assert report["ensemble_id"] in set(ensembles["ensemble_id"])
    z = app.get_head_predictions(report["ensemble_id"], new_pool.pool_id)
    assert z.shape == (new_pool.n_pairs, 8) and np.isfinite(z).all()
    app.close()
