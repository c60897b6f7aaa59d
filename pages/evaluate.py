"""Evaluate page: how fast does HyRe adapt to each group of the current pool?

Runs the `evaluate` command's protocol (hyre_engine.evaluate.evaluate_pools) on
the pool in the sidebar: the ensemble trained on the training groups adapts to
each target group with n of its labels and is scored on the group's other
pairs, against the uniform ensemble, a single model, fine-tuning and the
best-head oracle. Results are cached in the store under a hash of everything
that changes them, so a revisit shows them at once.
"""

from __future__ import annotations

import streamlit as st

from hyre_engine.backbone import BackboneNotFoundError
from hyre_engine.evaluate import ALL_METHODS, LOSSES, STRATEGIES, evaluate_pools
from pages import _data_helpers as dh
from pages import common

# Few seeds keep a page run to seconds; the `evaluate` command defaults to 20.
DEFAULT_SEEDS = 5
MAX_SEEDS = 50
# The few-label regime: 0 (no labels) to 20.
DEFAULT_N_TEXT = "0, 1, 5, 10, 20"
# Fine-tuning trains every head once per (group, seed, n): minutes, so opt-in.
DEFAULT_METHODS = [m for m in ALL_METHODS if m != "finetune"]
STRATEGY_TEXT = {
    "random": "Random: the n labels are drawn at random (the paper's main protocol)",
    "entropy": "Entropy: each next label is where the weighted model is least sure",
    "bald": "BALD: each next label is where the heads disagree most",
}
LOSS_TEXT = {"zero-one": "0-1 error (the paper's choice)", "cross-entropy": "cross-entropy"}
# Stage -> what the progress bar says (stages of build_pool and evaluate_pools).
STAGE_TEXT = {
    "embed": "Embedding texts",
    "calibrate": "Calibrating beta",
    "train": "Training the heads",
    "predict": "Caching head predictions",
    "evaluate": "Evaluating groups",
}
# Charts per row in the per-group grid.
GRID_COLUMNS = 2


def _backbone_path(ctx: common.Context) -> str | None:
    """None for the embedded backbone, else the folder the Data page recorded (or one typed here)."""
    backbone_id = ctx.ensemble["backbone_id"]
    if dh.is_embedded_backbone(backbone_id):
        return None
    known = ctx.store.get_result(dh.BACKBONE_PATH_PREFIX + backbone_id) or {}
    return st.text_input(
        "Backbone folder",
        value=known.get("path", ""),
        key="eval_backbone_path",
        help=f"This ensemble was trained on {common.backbone_label(backbone_id)}, a local model "
        "folder: give its path so the evaluation can embed with it.",
    ).strip() or None


def _options(ctx: common.Context, groups: list[str]) -> dict | None:
    """The form of evaluation settings; None while they are incomplete."""
    trained_on = ctx.ensemble["meta"].get("train_groups")
    if trained_on:
        default_train = [g for g in trained_on if g in groups]
    else:
        default_train = [common.CROWD_GROUP] if common.CROWD_GROUP in groups else list(groups)
    left, right = st.columns(2)
    with left:
        train = st.multiselect(
            "Train groups", groups, default=default_train, key="eval_train",
            help="The groups whose labels train the ensemble (the aggregate data). "
            "The current ensemble was trained on "
            + (", ".join(trained_on) if trained_on else "every group") + ".",
        )
        n_text = st.text_input(
            "Numbers of labels (n)", DEFAULT_N_TEXT, key="eval_n",
            help="Each target group adapts with this many of its labels; accuracy is measured on "
            "its other pairs.",
        )
        strategy = st.selectbox(
            "How the n labels are chosen", STRATEGIES, format_func=STRATEGY_TEXT.get, key="eval_strategy"
        )
    with right:
        targets = st.multiselect(
            "Target groups", groups, default=[g for g in groups if g not in train] or list(groups),
            key="eval_targets",
            help="The users or distributions to adapt to, one curve each.",
        )
        seeds = st.number_input(
            "Seeds (repeats)", min_value=1, max_value=MAX_SEEDS, value=DEFAULT_SEEDS, step=1,
            key="eval_seeds",
            help="Independent draws of the n labels per group; the bands show the spread over them. "
            "The `evaluate` command uses 20.",
        )
        loss = st.selectbox("Reweighting loss", LOSSES, format_func=LOSS_TEXT.get, key="eval_loss")
    methods = st.multiselect(
        "Methods", ALL_METHODS, default=DEFAULT_METHODS, format_func=lambda m: dh.METHOD_LABELS.get(m, m),
        key="eval_methods",
        help="Single model: one head trained on the same data. Convex fit: weights fitted to the n "
        "labels. Best head (oracle): the best single head chosen on the test labels, an upper "
        "reference. Fine-tuning: the heads trained further on the n labels (slow).",
    )
    beta = st.number_input(
        "Beta (reweighting temperature)", min_value=0.01, max_value=100.0, value=None, step=0.5,
        key="eval_beta", placeholder=f"the ensemble's: {float(ctx.ensemble['meta'].get('beta', 1.0)):g}",
        help="Empty: the ensemble's own beta (calibrated on held-out training annotators when the "
        "build did so, else the paper's 1).",
    )
    if "finetune" in methods:
        st.caption(":material/schedule: Fine-tuning trains the heads again for every group, seed and "
                   "n: expect minutes rather than seconds.")
    backbone = _backbone_path(ctx)

    problems = []
    try:
        n_values = dh.parse_n_values(n_text)
    except ValueError as exc:
        problems.append(f"Numbers of labels: {exc}.")
        n_values = []
    if not train:
        problems.append("Choose at least one train group.")
    if not targets:
        problems.append("Choose at least one target group.")
    if not methods:
        problems.append("Choose at least one method.")
    if not dh.is_embedded_backbone(ctx.ensemble["backbone_id"]) and backbone is None:
        problems.append("Give the backbone folder of this ensemble.")
    for problem in problems:
        st.warning(problem)
    if problems:
        return None
    overlap = sorted(set(train) & set(targets))
    if overlap:
        st.info(f"Target groups {', '.join(overlap)} also train the ensemble: their accuracy is "
                "measured on labels it has seen.", icon=":material/info:")
    config = dh.config_for_ensemble(ctx.ensemble, backbone=backbone, train_groups=list(train))
    if sorted(train) != sorted(trained_on or groups) or not dh.settings_match(config, ctx.ensemble):
        st.info("No ensemble of these settings on these train groups yet: running will train one "
                "(with the current ensemble's settings) and add it to the pool.", icon=":material/info:")
    return {
        "config": config,
        "train": list(train),
        "targets": [g for g in groups if g in targets],
        "n_values": n_values,
        "seeds": int(seeds),
        "strategy": strategy,
        "loss": loss,
        "beta": beta,
        "methods": [m for m in ALL_METHODS if m in methods],
    }


def _key(ctx: common.Context, opts: dict) -> str:
    pool = ctx.pool
    return dh.result_key(
        pool_id=pool["pool_id"], n_pairs=pool["n_pairs"], n_labels=pool["n_labels"],
        backbone=ctx.ensemble["backbone_id"], settings=opts["config"].ensemble_settings(),
        **{k: v for k, v in opts.items() if k != "config"},
    )


def _run(ctx: common.Context, opts: dict, key: str) -> dict | None:
    bar = st.progress(0.0, text="Loading the backbone…")

    def progress(stage: str, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar.progress(min(1.0, frac), text=f"{STAGE_TEXT.get(stage, stage)} ({done}/{total})")

    try:
        result = evaluate_pools(
            ctx.store, ctx.pool_id, ctx.pool_id, config=opts["config"], n_values=opts["n_values"],
            seeds=opts["seeds"], strategy=opts["strategy"], loss=opts["loss"], beta=opts["beta"],
            methods=opts["methods"], target_groups=opts["targets"], progress=progress,
        )
    except (BackboneNotFoundError, ValueError) as exc:
        bar.empty()
        st.error(f"The evaluation stopped: {exc}")
        return None
    bar.empty()
    if not result["groups"]:
        st.warning("No target group has two labelled pairs: nothing to evaluate.")
        return None
    result["pool_name"] = ctx.pool["name"]
    result["train_groups"] = opts["train"]
    ctx.store.put_result(key, result)
    return result


def _show(result: dict, *, cached: bool) -> None:
    n_groups = len(result["groups"])
    beta = result.get("beta")
    how = f"{result['seeds']} seeds · strategy {result['strategy']} · {result['loss']} loss"
    if beta is not None:
        how += f" · beta {beta:g}" + (f" ({result['beta_source']})" if result.get("beta_source") else "")
    when = "cached result" if cached else f"computed in {result.get('seconds', 0):.1f} s"
    st.caption(f"{n_groups} target group{'s' if n_groups != 1 else ''} · {how} · {when}")

    st.subheader("Mean over target groups")
    st.plotly_chart(
        dh.curves_figure(result["n"], result["summary"], std_key="std_over_groups"),
        config=common.PLOTLY_CONFIG, key="eval_summary_chart",
    )
    st.caption("Bands: ± one standard deviation over the target groups (people differ, so they are wide).")
    summary = dh.summary_table(result)
    st.dataframe(
        summary * 100,
        column_config={c: st.column_config.NumberColumn(c, format="%.1f%%") for c in summary.columns},
    )
    eff = summary.attrs.get("effective_heads")
    if eff:
        st.caption("Effective heads of HyRe's weights (1 / Σw²): "
                   + " · ".join(f"n={n}: {v:.1f}" for n, v in zip(result["n"], eff, strict=True)))
    st.download_button(
        "Download CSV", dh.result_csv(result),
        file_name=f"hyre-evaluation-{result.get('pool_name', 'pool')}.csv",
        mime="text/csv", icon=":material/download:", key="eval_download",
        help="Every group, method and n with the mean and standard deviation.",
    )

    st.subheader("Per target group")
    st.caption("Bands: ± one standard deviation over the seeds (the draws of the n labels).")
    names = list(result["groups"])
    for start in range(0, len(names), GRID_COLUMNS):
        for col, name in zip(st.columns(GRID_COLUMNS), names[start : start + GRID_COLUMNS], strict=False):
            group = result["groups"][name]
            with col:
                st.plotly_chart(
                    dh.curves_figure(result["n"], group["methods"],
                                     title=f"{name} · {group['n_examples']} labelled pairs"),
                    config=common.PLOTLY_CONFIG, key=f"eval_chart_{name}",
                )


def main() -> None:
    ctx = common.get_context()
    if ctx is None:
        return
    st.title("Evaluate")
    st.markdown(
        "How fast does the ensemble adapt to a new person? Each **target group** gives HyRe *n* of "
        "its labels; accuracy is measured on the group's other pairs and compared with the "
        "uniform ensemble, a single model, fine-tuning and the best single head (an oracle). "
        "The same protocol as `python -m hyre_engine evaluate`."
    )
    groups = [str(g) for g in ctx.store.pool_groups(ctx.pool_id)["group"].dropna()]
    if not groups:
        st.info("This pool has no labelled groups to evaluate on. Import labelled data on the Data page.")
        return
    with st.container(border=True):
        opts = _options(ctx, groups)
    if opts is None:
        return
    key = _key(ctx, opts)
    cached = ctx.store.get_result(key)
    if st.button("Run again" if cached else "Run the evaluation", type="secondary" if cached else "primary",
                 icon=":material/play_arrow:", key="eval_run"):
        result = _run(ctx, opts, key)
        if result is not None:
            _show(result, cached=False)
        return
    if cached:
        _show(cached, cached=True)
    else:
        st.info("Choose the settings and run the evaluation: the curves and the table appear here, "
                "and are kept for the next visit.", icon=":material/insights:")


main()
