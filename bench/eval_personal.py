"""The personal head on real per-user data: uniform, HyRe, personal, residual, probe, ceiling.

Usage:
  .venv/bin/python bench/eval_personal.py popquorn [--seeds 10] [--fraction 0.1] [--json out/personal-pq.json]
  .venv/bin/python bench/eval_personal.py demo     [--seeds 10] [--fraction 0.2] [--json out/personal-demo.json]

POPQUORN: the split of bench/eval_popquorn.py (200 training annotators, 62 targets, up
to 80 pairs each). Demo: the crowd trains, the five personas held out of it are the
targets. The ensemble trains on the training annotators only; lambda is calibrated on
held-out *training* annotators with a calibration ensemble that never saw them (unless
--lam is given); beta is fixed (--beta, default 1). Every method is scored, per target
and seed, on the rows not yet labelled; the summary is the mean over targets.

--rhos 0,1,10,100 also tries a structured prior for v: covariance (I + rho U diag(e/e_max)
U^T) / lambda, with U, e the eigenvectors and eigenvalues of how the training annotators
deviate from the population (the second moment of per-annotator heads fitted over the
uniform ensemble's margin). rho and lambda are calibrated together on the held-out
training annotators, the prior then coming from the other training annotators only; the
evaluation uses the prior from all training annotators. rho = 0 is the isotropic head.
The prior is the engine's (hyre_engine/personal_prior.py, protocol.calibrate_prior,
pipeline.ensemble_prior, which stores it with the ensemble), as a calibrated build uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from hyre_engine.personal import DEFAULT_CALIBRATION_LAMBDAS  # noqa: E402
from hyre_engine.personal_prior import annotator_basis  # noqa: E402
from hyre_engine.protocol import (  # noqa: E402
    PERSONAL_METHODS,
    calibrate_lambda,
    calibrate_prior,
    evaluate_group,
)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _group_arrays(store, backbone_id, pool_id, logits, labels, name):
    from hyre_engine.pipeline import pool_differences

    D = pool_differences(store, pool_id, backbone_id)  # noqa: N806 - the stored D of the pool
    rows = labels[labels["group"] == name] if "group" in labels else labels
    idx = rows["row_index"].to_numpy()
    y = (rows["label"] == "a").to_numpy().astype(np.float64)
    return logits[idx], D[idx], y


def calibrate(store, backbone, pool_id, config, *, beta, lambdas, train_groups=None, rhos=(0.0,)) -> dict:
    """Lambda (and the structured prior's rho) from held-out training annotators, with a
    calibration ensemble trained without them and a prior from the other training annotators
    (the engine's own ``protocol.calibrate_prior``, as a calibrated build runs it)."""
    from hyre_engine.pipeline import (
        annotator_groups,
        pair_embeddings,
        pair_rows,
        train_on_rows,
        training_rows,
    )
    from hyre_engine.reweight import holdout_annotators

    pairs = store.pool_pairs(pool_id)
    labels = training_rows(store, pool_id, train_groups)  # training rows only: never the targets
    annotators = labels["annotator"].astype(str)
    held = holdout_annotators(sorted(annotators.unique()), fraction=0.15, seed=config.seed)
    model = train_on_rows(store, backbone.id, pairs, labels[~annotators.isin(held).to_numpy()], config)
    xa, xb = pair_embeddings(store, backbone.id, pairs)
    index = pair_rows(pairs)
    groups = annotator_groups(labels, held, index, model, xa, xb)
    if rhos == (0.0,):
        out = calibrate_lambda(groups, beta=beta, lambdas=lambdas)
        out["holdout_annotators"] = held
        return out
    others = sorted(set(annotators) - set(held))
    basis = annotator_basis(annotator_groups(labels, others, index, model, xa, xb))
    out = calibrate_prior(groups, beta=beta, basis=basis, rhos=rhos, lambdas=lambdas)
    for rho, result in out["by_rho"].items():
        _log(f"  rho {rho}: {result['scores']}")
    out["holdout_annotators"] = held
    return out


def _summary(groups: dict, n_values: list[int], started: float) -> dict:
    summary = {m: {"mean": np.mean([g["methods"][m]["mean"] for g in groups.values()], axis=0).round(6).tolist(),
                   "std_over_seeds": np.mean([g["methods"][m]["std"] for g in groups.values()], axis=0)
                   .round(6).tolist()}
               for m in PERSONAL_METHODS}
    flip = np.mean([g["flip_share"]["mean"] for g in groups.values()], axis=0).round(4).tolist()
    return {"n": n_values, "groups": groups, "summary": summary, "flip_share": flip,
            "seconds": round(time.perf_counter() - started, 1)}


def _print(result: dict, title: str) -> None:
    print(f"\n{title}")
    print(f"{'method':<14}" + "".join(f"{'n=' + str(n):>8}" for n in result["n"]))
    for m, s in result["summary"].items():
        print(f"{m:<14}" + "".join(f"{v:>8.3f}" for v in s["mean"]))
    print(f"{'(flip share)':<14}" + "".join(f"{v:>8.3f}" for v in result["flip_share"]), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=["popquorn", "demo"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", default="0,1,5,10,20")
    parser.add_argument("--fraction", type=float, default=0.1, help="annotator fraction of each head")
    parser.add_argument("--heads", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--prior-scale", type=float,
                        help="the heads' frozen prior scale (default: the demo's DEMO_PRIOR_SCALE on demo, else 1)")
    parser.add_argument("--ensemble-seed", type=int, default=0)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--lam", type=float, help="fixed lambda (default: calibrated)")
    parser.add_argument("--lambdas", default=",".join(map(str, DEFAULT_CALIBRATION_LAMBDAS)))
    parser.add_argument("--strategies", default="random,personal_bald")
    parser.add_argument("--train-pairs", type=int, help="POPQUORN: pairs per training annotator")
    parser.add_argument("--prior-lam", type=float,
                        help="with --lam and one --rhos value: the structured prior's own fixed lambda "
                        "(default: --lam), e.g. the pair a calibration chose")
    parser.add_argument("--rhos", default="0",
                        help="structured prior strengths to calibrate (0 = isotropic only); e.g. 0,1,10,100")
    parser.add_argument("--db", help="DuckDB file (default out/bench-<data>.duckdb)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from hyre_engine.backbone import load_backbone
    from hyre_engine.pipeline import BuildConfig, build_pool, ensemble_prior, predict_pool
    from hyre_engine.store import Store

    if args.prior_scale is None:
        from hyre_engine.demo import DEMO_PRIOR_SCALE

        args.prior_scale = DEMO_PRIOR_SCALE if args.data == "demo" else 1.0
    rhos = tuple(float(v) for v in args.rhos.split(","))
    db = args.db or f"out/bench-{args.data}.duckdb"
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    store = Store(db)
    backbone = load_backbone(None)
    common = dict(n_heads=args.heads, hidden=args.hidden, prior_scale=args.prior_scale,
                  annotator_fraction=args.fraction, seed=args.ensemble_seed, calibrate=False)
    if args.data == "popquorn":
        from eval_popquorn import prepare

        train_pool, target_pool, targets = prepare(store, train_pairs=args.train_pairs)
        config = BuildConfig(**common)
        train_groups = None
    else:
        from hyre_engine.demo import DEMO_TRAIN_GROUPS, ensure_demo, load_personas

        train_pool = target_pool = ensure_demo(
            store, config=BuildConfig(train_groups=DEMO_TRAIN_GROUPS, annotator_fraction=None, calibrate=False)
        ).pool_id
        targets = [p.id for p in load_personas() if not p.in_crowd]
        train_groups = DEMO_TRAIN_GROUPS
        config = BuildConfig(train_groups=DEMO_TRAIN_GROUPS, **common)

    started = time.perf_counter()
    report = build_pool(store, train_pool, config, backbone=backbone)
    _log(f"ensemble {report.ensemble_id} ({'trained' if report.trained else 'reused'}, "
         f"{time.perf_counter() - started:.0f} s), prior scale {args.prior_scale:g}: "
         f"{report.distinct_heads} distinct head functions of {args.heads}")
    calibration = None
    lam = args.lam
    if lam is None:
        started = time.perf_counter()
        calibration = calibrate(store, backbone, train_pool, config, beta=args.beta,
                                lambdas=[float(v) for v in args.lambdas.split(",")], train_groups=train_groups,
                                rhos=rhos)
        lam = calibration["lam"]
        _log(f"lambda calibrated: {calibration.get('scores', calibration.get('by_rho'))} -> {lam:g}, "
             f"rho {calibration.get('rho', 0):g} ({time.perf_counter() - started:.0f} s)")
    rho = calibration.get("rho", 0.0) if calibration else rhos[-1]
    isotropic_lam = lam  # the isotropic head runs too, at its own calibrated lambda
    if rho and calibration:
        isotropic_lam = calibration["by_rho"].get("0", {}).get("lam")
    runs = [("", 0.0, isotropic_lam)] if isotropic_lam is not None else []
    if rho:  # the structured prior, with its own lambda
        runs.append(("+prior", rho, args.prior_lam if calibration is None and args.prior_lam else lam))
    # the engine's prior from every training annotator over the evaluated ensemble (stored with it)
    prior = ensemble_prior(store, report.ensemble_id, rho=rho) if rho else None
    logits = predict_pool(store, report.ensemble_id, target_pool, backbone)
    labels = store.pool_labels(target_pool)
    labels = labels[labels["label"].isin(["a", "b"])]
    n_values = [int(v) for v in args.n.split(",")]
    results = {}
    for strategy in args.strategies.split(","):
        for suffix, run_rho, run_lam in runs:
            started = time.perf_counter()
            groups = {}
            for name in targets:
                Z, D, y = _group_arrays(store, backbone.id, target_pool, logits, labels, name)  # noqa: N806
                if len(y) < 4:
                    continue
                groups[name] = evaluate_group(Z, y, diffs=D, n_values=n_values, seeds=args.seeds,
                                              strategy=strategy, beta=args.beta, lam=run_lam,
                                              methods=PERSONAL_METHODS,
                                              prior=prior.with_rho(run_rho) if run_rho else None).to_json()
            results[strategy + suffix] = _summary(groups, n_values, started)
            _print(results[strategy + suffix], f"{args.data}, strategy {strategy}: {len(groups)} targets, "
                   f"{args.seeds} seeds, beta {args.beta:g}, lambda {run_lam:g}, structured prior rho {run_rho:g}, "
                   f"prior scale {args.prior_scale:g}, ensemble {report.ensemble_id}")
    out = {"data": args.data, "config": config.ensemble_settings(), "ensemble_id": report.ensemble_id,
           "distinct_heads": report.distinct_heads,
           "beta": args.beta, "lam": lam, "rho": rho, "calibration": calibration, "seeds": args.seeds, "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
