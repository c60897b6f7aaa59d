"""A process that labels and bulk-imports into a store until it is killed (kill -9 harness).

``python tests/fault_worker.py DB SEED`` prints one line per write, after the write
has returned (that is, after its transaction committed), and flushes it:

    LABEL <session_id> <seq> <row_index> <label> <sha of the weights after it>
    POOL <name> <n_pairs>

The harness (tests/test_fault.py) treats a printed line as an acknowledgement: it
must survive the kill.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from hyre_engine.reweight import Posterior
from hyre_engine.store import Store

POOL = "fault-pool"
ENSEMBLE = "fault-ensemble"
USERS = ("ann", "bob", "cem")
# One write in this many is a bulk import (the rest are labels).
IMPORT_EVERY = 6
# Rows of a bulk import: large enough that a kill often lands inside one.
IMPORT_ROWS = 400


def weights_digest(Z: np.ndarray, rows: list[int], labels: list[str]) -> str:  # noqa: N803
    """The weights after these labels, added one at a time (skips add nothing), as a digest."""
    posterior = Posterior(Z.shape[1])
    for row, label in zip(rows, labels, strict=True):
        if label != "skip":
            posterior.add(Z[row], 1.0 if label == "a" else 0.0)
    return hashlib.sha256(np.ascontiguousarray(posterior.weights, dtype=np.float64).tobytes()).hexdigest()[:16]


def bulk_frame(name: str, n: int):
    import pandas as pd

    return pd.DataFrame({
        "pair_id": [f"{name}-{i}" for i in range(n)],
        "prompt": [f"question {i} of {name}" for i in range(n)],
        "response_a": [f"answer a {i} " * 20 for i in range(n)],
        "response_b": [f"answer b {i} " * 20 for i in range(n)],
        "label": ["a" if i % 2 else "b" for i in range(n)],
        "group": ["crowd"] * n,
        "annotator": [f"w{i % 5}" for i in range(n)],
    })


def main(db: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store(db)
    pool_id = store.get_pool(POOL).pool_id
    Z = store.get_head_predictions(ENSEMBLE, pool_id)  # noqa: N806
    pairs = store.pool_pairs(pool_id, with_meta=False)
    pair_of = dict(zip(pairs["row_index"], pairs["pair_id"], strict=True))
    sessions = {u: store.get_or_create_session(user=u, pool_id=pool_id, ensemble_id=ENSEMBLE) for u in USERS}
    done = {u: store.session_labels(s) for u, s in sessions.items()}
    history = {u: (list(map(int, f["row_index"])), list(f["label"])) for u, f in done.items()}
    n_import = 0
    while True:
        if rng.integers(IMPORT_EVERY) == 0:
            name = f"bulk-{seed}-{n_import}"
            n_import += 1
            store.add_pool(name, bulk_frame(name, IMPORT_ROWS), source="fault")
            print(f"POOL {name} {IMPORT_ROWS}", flush=True)
            continue
        user = USERS[int(rng.integers(len(USERS)))]
        rows, labels = history[user]
        free = sorted(set(pair_of) - set(rows))
        if not free:
            continue
        row = int(rng.choice(free))
        label = ("a", "b", "skip")[int(rng.integers(3))]
        seq = store.add_session_label(sessions[user], row_index=row, pair_id=pair_of[row], label=label)
        rows.append(row)
        labels.append(label)
        print(f"LABEL {sessions[user]} {seq} {row} {label} {weights_digest(Z, rows, labels)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
