"""Shared helpers of the store tests: a canonical frame, table counts, fake vectors, an ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
from safetensors.numpy import save as st_save

from hyre_engine.store import Store

TABLES = (
    "pools",
    "texts",
    "pairs",
    "labels",
    "embeddings",
    "ensembles",
    "prediction_sets",
    "head_predictions",
    "sessions",
    "session_labels",
    "profiles",
    "results",
)


def make_frame(n_pairs: int, *, start: int = 0, groups=("u1", "u2"), shared_prompt: bool = False):
    """A canonical preference frame: each pair judged once per group (labels alternate)."""
    rows = []
    for i in range(start, start + n_pairs):
        for j, group in enumerate(groups):
            rows.append(
                {
                    "pair_id": f"p{i}",
                    "prompt": "shared prompt" if shared_prompt else f"prompt {i}",
                    "response_a": f"answer A{i}",
                    "response_b": f"answer B{i}",
                    "label": "a" if (i + j) % 2 == 0 else "b",
                    "group": group,
                    "annotator": f"{group}-annotator",
                    "source_row": i * 10 + j,
                }
            )
    return pd.DataFrame(rows)


def table_counts(store: Store) -> dict[str, int]:
    cur = store._cursor()
    return {t: cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}


def fake_vectors(hashes, dim=8):
    """Deterministic vectors derived from the hash, so any mix-up of order shows."""
    return np.array(
        [[int(h[k * 2 : k * 2 + 2], 16) for k in range(dim)] for h in hashes], np.float32
    )


def add_ensemble(store, pool_id, ensemble_id="ens1", config=None):
    weights = st_save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    store.put_ensemble(
        ensemble_id=ensemble_id,
        pool_id=pool_id,
        backbone_id="bb",
        config=config or {"n_heads": 4, "hidden": 16},
        weights=weights,
        train_fingerprint="train-fp",
        meta={"beta": 1.0},
    )
    return ensemble_id
