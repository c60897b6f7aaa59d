"""Query variety against plain BALD on the demo personas: held-out accuracy and repeated prompts.

Usage: .venv/bin/python bench/eval_query_variety.py [--db out/bench-demo.duckdb] [--n 5,10,20,30]
       [--starts 10] [--json out/variety.json]

For every persona held out of the demo crowd, a simulated session labels with BALD
through the Label page's own loop (``LiveSession`` with the persona's labels, skipping
pairs it never judged). "bald" is plain BALD; "varied" adds the two variety rules
(never the prompt just asked; the first pair drawn among the top ones by a per-user
seed), averaged over ``--starts`` user seeds; "no-repeat" has the prompt rule alone. Reported per n: held-out accuracy on the
persona's pairs not labelled yet (mean over personas), and how many times in the
first n asks the same prompt came twice in a row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hyre_engine import live  # noqa: E402
from hyre_engine.acquisition import start_seed  # noqa: E402
from hyre_engine.demo import DEMO_POOL_NAME, ensure_demo, load_personas  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def run(logits, truth, prompts, *, n_max: int, varied: bool, start: int | None):
    """Held-out accuracy after 0..n_max labels, and the prompts asked in order."""
    session = live.LiveSession(
        logits, strategy="bald", truth=truth, prompts=prompts if varied else None,
        start=start if varied else None,
    )
    asked = []
    while len(session.events) < n_max:
        item = session.next_item()
        if item is None:
            break
        asked.append(prompts[item])
        label = session.persona_label(item)
        if label is None:
            session.skip(item)
        else:
            session.add_label(item, label)
    return session.snapshot().held_out.hyre, asked


def repeats(asked, n: int) -> int:
    first = asked[:n]
    return sum(a == b for a, b in zip(first, first[1:], strict=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="out/bench-demo.duckdb")
    parser.add_argument("--n", default="5,10,20,30")
    parser.add_argument("--starts", type=int, default=10, help="user seeds averaged for the varied strategy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n_values = [int(v) for v in args.n.split(",")]
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = Store(args.db)
    ensure_demo(store)
    pool_id = store.get_pool(DEMO_POOL_NAME).pool_id
    ensemble_id = store.list_ensembles(pool_id)["ensemble_id"].iloc[-1]
    logits = store.get_head_predictions(ensemble_id, pool_id)
    pairs = store.pool_pairs(pool_id, with_meta=False)
    prompts = pairs["prompt"].to_numpy(dtype=object)
    held_out = [p.id for p in load_personas() if not p.in_crowd]
    names = ("bald", "no-repeat", "varied")
    acc = {name: {n: [] for n in n_values} for name in names}
    rep = {name: {n: [] for n in n_values} for name in names}
    for persona in held_out:
        truth = live.group_truth(store, pool_id, persona, len(pairs))
        runs = [("bald", None), ("no-repeat", None)]
        runs += [("varied", start_seed(f"user-{i}")) for i in range(args.starts)]
        for name, start in runs:
            curve, asked = run(logits, truth, prompts, n_max=max(n_values), varied=name != "bald", start=start)
            for n in n_values:
                acc[name][n].append(curve[min(n, len(curve) - 1)])
                rep[name][n].append(repeats(asked, n))
    result = {
        "n": n_values, "personas": held_out, "starts": args.starts,
        "methods": {
            name: {
                "held_out_accuracy": [float(np.mean(acc[name][n])) for n in n_values],
                "same_prompt_twice_in_a_row": [float(np.mean(rep[name][n])) for n in n_values],
            }
            for name in acc
        },
    }
    print(f"{len(held_out)} held-out personas; varied = mean over {args.starts} user seeds")
    print("| method | " + " | ".join(f"acc n={n}" for n in n_values) + " | "
          + " | ".join(f"repeats in {n}" for n in n_values) + " |")
    print("|---" * (1 + 2 * len(n_values)) + "|")
    for name, m in result["methods"].items():
        print(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in m["held_out_accuracy"]) + " | "
              + " | ".join(f"{r:.1f}" for r in m["same_prompt_twice_in_a_row"]) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
