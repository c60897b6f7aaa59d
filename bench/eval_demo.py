"""HyRe on the demo personas: adapt the crowd-trained ensemble to each persona.

Usage: .venv/bin/python bench/eval_demo.py [--seeds 10] [--fractions none,0.2] [--betas 1] [--calibrate]
       [--strategies random,bald,entropy] [--json out/demo.json]
Targets are the personas held out of the crowd. With --calibrate each ensemble also
chooses its beta on held-out crowd personas (never the targets) and is evaluated
with it ("beta=cal") besides the fixed --betas.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyre_engine.demo import (  # noqa: E402
    DEMO_TRAIN_GROUPS,
    ensure_demo,
    load_personas,  # noqa: E402
)
from hyre_engine.evaluate import evaluate_pools  # noqa: E402
from hyre_engine.pipeline import BuildConfig  # noqa: E402
from hyre_engine.protocol import format_table  # noqa: E402
from hyre_engine.store import Store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", default="0,1,5,10,20")
    parser.add_argument("--fractions", default="none,0.2", help="annotator fractions; none = priors only")
    parser.add_argument("--betas", default="1", help="comma-separated reweighting temperatures")
    parser.add_argument("--calibrate", action="store_true", help="also evaluate with the calibrated beta")
    parser.add_argument("--strategies", default="random", help="comma-separated: random, bald, entropy")
    parser.add_argument("--heads", type=int, default=100)
    parser.add_argument("--ensemble-seed", type=int, default=0)
    parser.add_argument("--methods", default="single,uniform,hyre,best_head_oracle")
    parser.add_argument("--db", default="out/bench-demo.duckdb")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = Store(args.db)
    pool_id = ensure_demo(
        store, config=BuildConfig(train_groups=DEMO_TRAIN_GROUPS, annotator_fraction=None, calibrate=False)
    ).pool_id
    personas = load_personas()
    held_out = [p.id for p in personas if not p.in_crowd]
    n_values = [int(v) for v in args.n.split(",")]
    results = {}
    for fraction in args.fractions.split(","):
        frac = None if fraction == "none" else float(fraction)
        config = BuildConfig(train_groups=DEMO_TRAIN_GROUPS, annotator_fraction=frac, n_heads=args.heads,
                             seed=args.ensemble_seed, calibrate=args.calibrate)
        betas: list[float | None] = [float(b) for b in args.betas.split(",") if b.strip()]
        if args.calibrate:
            betas.append(None)
        for strategy in args.strategies.split(","):
            for beta in betas:
                key = (f"fraction={fraction},beta={'cal' if beta is None else f'{beta:g}'},strategy={strategy},"
                       f"K={args.heads},seed={args.ensemble_seed}")
                result = evaluate_pools(
                    store, pool_id, pool_id, config=config, n_values=n_values, seeds=args.seeds,
                    strategy=strategy, beta=beta, methods=args.methods.split(","),
                    target_groups=held_out,
                )
                results[key] = result
                cal = result.get("calibration") or {}
                print(format_table(result, title=f"\n{key}: held-out personas {held_out}, {args.seeds} seeds, "
                                   f"beta used {result['beta']:g}"
                                   + (f" (calibration scores {cal.get('scores')})" if cal.get("scores") else "")),
                      flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
