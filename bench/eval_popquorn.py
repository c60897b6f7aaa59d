"""HyRe on POPQUORN offensiveness: adapt an aggregate-trained ensemble to held-out annotators.

Usage:
  .venv/bin/python bench/eval_popquorn.py [--seeds 10] [--fractions none,0.05] [--json out/popquorn.json]
  .venv/bin/python bench/eval_popquorn.py --markdown out/popquorn.json   # tables for docs/results.md

Each annotator's 1-5 offensiveness ratings become preference pairs ("which text is
more offensive?", up to --max-pairs per annotator). Annotators are split
deterministically (a seeded permutation of the sorted ids): --n-train of them
label the training pool (the aggregate the ensemble learns from, one annotator
per row), the rest are the targets, each its own group. Beta calibration inside
`build_pool` only ever sees the training pool.

For every fraction, one ensemble is trained (calibrated when --calibrate) and
evaluated with each fixed beta of --betas and, when calibrated, with its own
beta ("beta=cal"). Seeds are adaptation draws (which n rows a target labels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from hyre_engine.data import read_preferences  # noqa: E402
from hyre_engine.evaluate import evaluate_pools  # noqa: E402
from hyre_engine.pipeline import BuildConfig  # noqa: E402
from hyre_engine.protocol import format_table  # noqa: E402
from hyre_engine.store import Store  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "popquorn" / "offensiveness_raw_data.csv.gz"
# The reference split for POPQUORN: 200 training annotators, the other 62 as targets,
# up to 80 pairs each.
N_TRAIN_USERS = 200
MAX_PAIRS = 80
SPLIT_SEED = 0


def prepare(store: Store, *, path: Path = DATA, n_train: int = N_TRAIN_USERS, max_pairs: int = MAX_PAIRS,
            train_pairs: int | None = None, split_seed: int = SPLIT_SEED) -> tuple[str, str, list[str]]:
    """Import (once) the training and target pools; returns (train_pool, target_pool, target users).

    ``train_pairs`` caps the pairs per training annotator (default ``max_pairs``; the
    targets always keep up to ``max_pairs``).
    """
    train_pairs = train_pairs or max_pairs
    train_name = f"popquorn-train-{n_train}-{train_pairs}-{split_seed}"
    target_name = f"popquorn-target-{n_train}-{max_pairs}-{split_seed}"
    pools = store.list_pools()
    names = set(pools["name"]) if len(pools) else set()
    if train_name in names and target_name in names:
        train_id, target_id = store.get_pool(train_name).pool_id, store.get_pool(target_name).pool_id
        targets = sorted(store.pool_labels(target_id)["group"].unique())
        return train_id, target_id, targets
    def read(cap: int):
        return read_preferences(
            path, format="ratings", user_col="user_id", item_col="instance_id", rating_col="offensiveness",
            text_col="text", question="Which text is more offensive?", max_pairs_per_user=cap,
        )

    frame = read(max_pairs)
    users = sorted(frame["group"].astype(str).unique())
    order = np.random.default_rng(split_seed).permutation(len(users))
    train_users = {users[i] for i in order[:n_train]}
    is_target = ~frame["group"].astype(str).isin(train_users)
    train = read(train_pairs) if train_pairs != max_pairs else frame
    train = train[train["group"].astype(str).isin(train_users)]
    if train_name in names:
        train_id = store.get_pool(train_name).pool_id
    else:
        train_id = store.add_pool(train_name, train.reset_index(drop=True), source=str(path))
    if target_name in names:
        target_id = store.get_pool(target_name).pool_id
    else:
        target_id = store.add_pool(target_name, frame[is_target].reset_index(drop=True), source=str(path))
    targets = sorted(frame.loc[is_target, "group"].astype(str).unique())
    return train_id, target_id, targets


def markdown_tables(results: dict) -> str:
    """Markdown tables of a --json file: mean over targets, ± the per-target std over seeds (averaged)."""
    out = []
    for key, r in results.items():
        n = r["n"]
        lines = [f"`{key}`: beta {r['beta']:g} ({r.get('beta_source', '?')}), {len(r['groups'])} targets, "
                 f"{r['seeds']} seeds, ensemble {r['ensemble_id']}", "",
                 "| method | " + " | ".join(f"n = {v}" for v in n) + " |", "|---|" + "---|" * len(n)]
        for m, stats in r["summary"].items():
            seed_std = np.mean([g["methods"][m]["std"] for g in r["groups"].values() if m in g["methods"]], axis=0)
            lines.append(f"| {m} | " + " | ".join(f"{a:.3f} ± {b:.3f}" for a, b in zip(stats["mean"], seed_std,
                                                                                     strict=True)) + " |")
        for field, label, fmt in (("effective_heads", "effective heads", ".1f"),
                                  ("weight_entropy", "weight entropy (nats)", ".2f")):
            rows = [g[field]["mean"] for g in r["groups"].values() if g.get(field)]
            if rows:
                lines.append(f"| ({label}) | " + " | ".join(format(v, fmt) for v in np.mean(rows, axis=0)) + " |")
        cal = r.get("calibration") or {}
        if cal.get("scores"):
            lines += ["", f"Calibration: {len(cal['holdout_annotators'])} held-out training annotators; mean HyRe "
                      f"accuracy at n = {cal['n']} by beta {cal['scores']} (uniform {cal['uniform']}); "
                      f"chose beta = {cal['beta']:g}."]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        print(markdown_tables(json.loads(Path(sys.argv[2]).read_text())))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="adaptation draws per target")
    parser.add_argument("--n", default="0,1,5,10,20")
    parser.add_argument("--fractions", default="none,0.05", help="annotator fractions; none = priors only")
    parser.add_argument("--betas", default="1", help="fixed reweighting temperatures to evaluate")
    parser.add_argument("--calibrate", action="store_true", help="also calibrate beta on held-out training annotators")
    parser.add_argument("--strategies", default="random", help="comma-separated: random, bald, entropy")
    parser.add_argument("--methods", default="single,uniform,hyre,best_head_oracle")
    parser.add_argument("--heads", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--prior-scale", type=float, default=1.0)
    parser.add_argument("--ensemble-seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=N_TRAIN_USERS)
    parser.add_argument("--max-pairs", type=int, default=MAX_PAIRS, help="pairs per target annotator")
    parser.add_argument("--train-pairs", type=int, help="pairs per training annotator (default --max-pairs)")
    parser.add_argument("--db", default="out/bench-popquorn.duckdb")
    parser.add_argument("--prepare-only", action="store_true", help="import and embed, then stop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = Store(args.db)
    train_pool, target_pool, targets = prepare(
        store, n_train=args.n_train, max_pairs=args.max_pairs, train_pairs=args.train_pairs
    )
    print(f"{len(store.pool_labels(train_pool))} training rows, {len(targets)} target annotators", flush=True)
    if args.prepare_only:
        from hyre_engine.backbone import load_backbone
        from hyre_engine.pipeline import ensure_embeddings

        backbone = load_backbone(None)
        for pool in (train_pool, target_pool):
            print("embedded (computed, reused):", ensure_embeddings(store, pool, backbone), flush=True)
        return 0

    n_values = [int(v) for v in args.n.split(",")]
    results = {}
    for fraction in args.fractions.split(","):
        frac = None if fraction == "none" else float(fraction)
        config = BuildConfig(
            n_heads=args.heads, hidden=args.hidden, prior_scale=args.prior_scale, annotator_fraction=frac,
            seed=args.ensemble_seed, calibrate=args.calibrate,
        )
        betas: list[float | None] = [float(b) for b in args.betas.split(",") if b.strip()]
        if args.calibrate:
            betas.append(None)
        for strategy in args.strategies.split(","):
            for beta in betas:
                key = (f"fraction={fraction},beta={'cal' if beta is None else f'{beta:g}'},strategy={strategy},"
                       f"K={args.heads},hidden={args.hidden},prior={args.prior_scale:g},seed={args.ensemble_seed}")
                started = time.perf_counter()
                result = evaluate_pools(
                    store, train_pool, target_pool, config=config, n_values=n_values, seeds=args.seeds,
                    strategy=strategy, beta=beta, methods=args.methods.split(","), target_groups=targets,
                )
                results[key] = result
                cal = result.get("calibration") or {}
                print(format_table(result, title=f"\n{key}: {len(result['groups'])} held-out annotators, "
                                   f"{args.seeds} seeds, beta used {result['beta']:g}"
                                   + (f" (calibrated: {cal.get('scores')})" if cal else "")
                                   + f", {time.perf_counter() - started:.0f} s"), flush=True)
                if args.json:
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
