"""kill -9 harness: a process labels and bulk-imports, is killed at random points, and
nothing it acknowledged is lost, the store opens, and the weights replay equal."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hyre_engine.reweight import example_losses, weights_from_losses
from hyre_engine.store import Store

sys.path.insert(0, str(Path(__file__).parent))
import fault_worker  # noqa: E402

pytestmark = [pytest.mark.fault, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
KILLS = 20
N_PAIRS, N_HEADS = 300, 16
# The longest a worker runs after its first write before the kill (seconds).
MAX_RUN = 0.4


def _setup(db: Path) -> np.ndarray:
    Z = np.random.default_rng(0).normal(size=(N_PAIRS, N_HEADS))  # noqa: N806
    with Store(db) as store:
        pool_id = store.add_pool(fault_worker.POOL, fault_worker.bulk_frame("base", N_PAIRS), source="test")
        store.put_ensemble(ensemble_id=fault_worker.ENSEMBLE, pool_id=pool_id, backbone_id="test",
                           config={}, weights=b"", train_fingerprint="test")
        store.put_head_predictions(fault_worker.ENSEMBLE, pool_id, Z)
    return Z


def _run_and_kill(db: Path, seed: int, delay: float) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fault_worker.py"), str(db), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    first = proc.stdout.readline()  # blocks until the first acknowledged write
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate()
    text = (first + out).decode()
    # a line is an acknowledgement only when it is whole (the kill may cut the last one)
    lines = text.split("\n")[:-1]
    return lines, err.decode()


def test_kill_9_loses_no_acknowledged_label(tmp_path):
    db = tmp_path / "fault.duckdb"
    Z = _setup(db)  # noqa: N806
    rng = np.random.default_rng(1)
    acked: dict[tuple[str, int], tuple[int, str, str]] = {}
    pools: dict[str, int] = {}
    for k in range(KILLS):
        lines, err = _run_and_kill(db, k, float(rng.uniform(0, MAX_RUN)))
        assert lines, f"the worker wrote nothing before the kill: {err[-2000:]}"
        for line in lines:
            kind, *rest = line.split()
            if kind == "LABEL":
                session, seq, row, label, digest = rest
                acked[session, int(seq)] = (int(row), label, digest)
            else:
                pools[rest[0]] = int(rest[1])
        with Store(db) as store:  # opens after every kill (DuckDB replays its WAL)
            stored = {s: store.session_labels(s) for s in {s for s, _ in acked}}
            for (session, seq), (row, label, _) in acked.items():
                frame = stored[session]
                hit = frame[frame["seq"] == seq]
                assert len(hit) == 1, f"kill {k}: acknowledged label {session}#{seq} lost"
                assert (int(hit["row_index"].iloc[0]), hit["label"].iloc[0]) == (row, label)
            names = dict(zip(store.list_pools()["name"], store.list_pools()["pool_id"], strict=True))
            for name, n in pools.items():
                assert name in names, f"kill {k}: acknowledged import {name} lost"
                assert store.n_pairs(names[name]) == n
            for name, pool_id in names.items():  # an import the kill interrupted left nothing half-written
                if name.startswith("bulk-"):
                    assert store.n_pairs(pool_id) == fault_worker.IMPORT_ROWS
    assert len(acked) >= KILLS and pools, (len(acked), len(pools))
    print(f"{KILLS} kills: {len(acked)} acknowledged labels and {len(pools)} imports, none lost")
    with Store(db) as store:
        for session in {s for s, _ in acked}:
            frame = store.session_labels(session)
            rows, labels = list(map(int, frame["row_index"])), list(frame["label"])
            assert list(frame["seq"]) == list(range(len(frame)))  # no gap, no duplicate
            for (s, seq), (_, _, digest) in acked.items():
                if s == session:
                    assert fault_worker.weights_digest(Z, rows[: seq + 1], labels[: seq + 1]) == digest
            # sequential replay equals the batch posterior
            keep = [i for i, lab in enumerate(labels) if lab != "skip"]
            y = np.array([1.0 if labels[i] == "a" else 0.0 for i in keep])
            batch = weights_from_losses(example_losses(Z[[rows[i] for i in keep]], y).sum(axis=0))
            assert hashlib.sha256(batch.tobytes()).hexdigest()[:16] == fault_worker.weights_digest(Z, rows, labels)
