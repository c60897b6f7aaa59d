"""A second process on a store file: labels its own session and imports its own pool.

``python tests/store/process_worker.py DB NAME N`` adds pool NAME (N pairs, one import),
then labels its N pairs one write at a time, printing after each write has returned:

    POOL <name> <pool_id>
    LABEL <session_id> <seq> <row_index> <label>

and at the end ``DONE <opens> <hand_overs>`` (how often it opened and handed over the file).
tests/store/test_processes.py runs several at once against one file.
"""

from __future__ import annotations

import sys

import pandas as pd

from hyre_engine.store import Store


def pool_frame(name: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "pair_id": [f"{name}-{i}" for i in range(n)],
        "prompt": [f"question {i} of {name}" for i in range(n)],
        "response_a": [f"answer a {i}" for i in range(n)],
        "response_b": [f"answer b {i}" for i in range(n)],
    })


def main(db: str, name: str, n: int) -> None:
    store = Store(db)
    pool_id = store.add_pool(name, pool_frame(name, n), source="process worker")
    print("POOL", name, pool_id, flush=True)
    store.put_ensemble(ensemble_id=f"ens-{name}", pool_id=pool_id, backbone_id="test", config={},
                       weights=b"", train_fingerprint="test")
    session = store.get_or_create_session(user=name, pool_id=pool_id, ensemble_id=f"ens-{name}")
    for i in range(n):
        label = "ab"[i % 2]
        seq = store.add_session_label(session, row_index=i, pair_id=f"{name}-{i}", label=label)
        print("LABEL", session, seq, i, label, flush=True)
    print("DONE", store._lease.opens, store._lease.hand_overs, flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
