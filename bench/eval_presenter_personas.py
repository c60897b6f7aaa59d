"""How the Label page's persona demo goes for every demo persona: which one the presenter opens on.

Usage: .venv/bin/python bench/eval_presenter_personas.py [--db out/bench-demo.duckdb] [--n 5,10,15,30]

The demo is built with its defaults into --db when it is not there yet (about two minutes on
a 2-core CPU). Each persona then labels through the page's own loop: a ``LiveSession`` with the
ensemble's stored beta and lambda, the personal model (the page's default method), BALD and the
prompt-variety rule, skipping pairs the persona never judged, as the page's *A simulated persona
labels* mode does. Printed per persona: whether it was held out of the training crowd, the
uniform ensemble and the best single head on its pairs (what the presenter chart draws as
lines), and held-out accuracy of HyRe alone and of HyRe + personal head after each n.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyre_engine import live  # noqa: E402
from hyre_engine.demo import DEMO_POOL_NAME, DEMO_PRESENTER_PERSONA, ensure_demo, load_personas  # noqa: E402
from hyre_engine.pipeline import pool_differences  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def curves(store: Store, pool_id: str, ensemble_id: str, persona: str, n_max: int):
    """(held-out curves of the page's persona loop after 0..n labels) for one persona."""
    record = store.get_ensemble(ensemble_id, with_weights=False)
    logits = store.get_head_predictions(ensemble_id, pool_id)
    pairs = store.pool_pairs(pool_id, with_meta=False)
    session = live.LiveSession(
        logits, beta=live.ensemble_beta(record.meta), lam=live.ensemble_lambda(record.meta),
        truth=live.group_truth(store, pool_id, persona, len(pairs)),
        diffs=pool_differences(store, pool_id, record.backbone_id),
        prompts=pairs["prompt"].to_numpy(dtype=object),
    )
    while session.n_labels < n_max:
        item = session.next_item()
        if item is None:
            break
        label = session.persona_label(item)
        if label is None:
            session.skip(item)
        else:
            session.add_label(item, label)
    return session.snapshot().held_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="out/bench-demo.duckdb")
    parser.add_argument("--n", default="5,10,15,30")
    args = parser.parse_args()
    n_values = [int(v) for v in args.n.split(",")]
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = Store(args.db)
    ensure_demo(store)
    pool_id = store.get_pool(DEMO_POOL_NAME).pool_id
    ensemble_id = store.list_ensembles(pool_id)["ensemble_id"].iloc[-1]
    print(f"demo ensemble {ensemble_id}; the presenter opens on {DEMO_PRESENTER_PERSONA!r}")
    print("| persona | held out | uniform | best head | " + " | ".join(
        f"HyRe / personal n={n}" for n in n_values) + " |")
    print("|---" * (4 + len(n_values)) + "|")
    for persona in load_personas():
        held = curves(store, pool_id, ensemble_id, persona.id, max(n_values))
        cells = [f"{100 * held.hyre[min(n, len(held.hyre) - 1)]:.1f} / "
                 f"{100 * held.personal[min(n, len(held.personal) - 1)]:.1f}" for n in n_values]
        print(f"| {persona.id} | {'yes' if not persona.in_crowd else 'no'} | {100 * held.uniform[0]:.1f} | "
              f"{100 * held.best_head_oracle[0]:.1f} | " + " | ".join(cells) + " |")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
