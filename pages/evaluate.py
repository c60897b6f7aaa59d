"""Evaluate page: how fast does HyRe adapt to each group of the current pool?

Runs the `evaluate` command's protocol (hyre_engine.evaluate.evaluate_pools) on
the pool in the sidebar: the ensemble trained on the training groups adapts to
each target group with n of its labels and is scored on the group's other
pairs, against the uniform ensemble, a single model, fine-tuning and the
best-head oracle. Results are cached in the store under a hash of everything
that changes them, so a revisit shows them at once.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from hyre_engine.backbone import BackboneNotFoundError
from hyre_engine.demo import CROWD_GROUP
from hyre_engine.evaluate import evaluate_pools
from hyre_engine.pipeline import BuildConfig
from hyre_engine.protocol import ALL_METHODS, LOSSES, STRATEGIES
from pages._shared import charts, data_forms, signin
from pages._shared.context import Context, backbone_label, get_context
from pages._shared.evaluation import (
    BACKBONE_PATH_PREFIX,
    Options,
    is_embedded_backbone,
    method_help,
    parse_n_values,
    result_csv,
    result_key,
    summary_table,
)
from pages._shared.labels import EVAL_STRATEGY_TEXT, LOSS_TEXT, METHOD_TEXT, STAGE_TEXT
from pages._shared.widgets import escape_markdown

# Few seeds keep a page run to seconds; the `evaluate` command defaults to 20.
DEFAULT_SEEDS = 5
MAX_SEEDS = 50
# The few-label regime: 0 (no labels) to 20.
DEFAULT_N_TEXT = "0, 1, 5, 10, 20"
# Fine-tuning trains every head once per (group, seed, n): minutes, so opt-in.
DEFAULT_METHODS = [m for m in ALL_METHODS if m != "finetune"]
# Charts per row in the per-group grid.
GRID_COLUMNS = 2


def _backbone_path(ctx: Context) -> str | None:
    """None for the embedded backbone, else the folder a fine-tuning build wrote, or the
    one the Data page recorded, or (admins) one typed here inside HYRE_MODEL_DIRS."""
    backbone_id = ctx.backbone_id
    if is_embedded_backbone(backbone_id):
        return None
    if ctx.ensemble.meta.backbone_path:  # a fine-tuned backbone: the folder its build wrote
        return ctx.ensemble.meta.backbone_path
    known = ctx.store.get_result(BACKBONE_PATH_PREFIX + backbone_id)
    if not signin.can("build"):  # a folder on the server is the admins' to name
        return ((known.value or {}).get("path") if known is not None else None) or None
    return data_forms.model_folder_field(
        "Backbone folder", "eval_backbone_path",
        value=known.value.get("path", "") if known is not None else "",
        help=f"This ensemble was trained on {backbone_label(backbone_id)}, a local model "
        "folder: give its path so the evaluation can embed with it.",
    )


def _default_train(ctx: Context, groups: list[str]) -> list[str]:
    if ctx.train_groups:
        return [g for g in ctx.train_groups if g in groups]
    return [CROWD_GROUP] if CROWD_GROUP in groups else list(groups)


def _group_fields(ctx: Context, groups: list[str]) -> dict[str, Any]:
    """The two columns of the form: who trains and who is adapted to, n, seeds, strategy, loss."""
    trained_on = ctx.train_groups
    left, right = st.columns(2)
    with left:
        train = st.multiselect(
            "Train groups", groups, default=_default_train(ctx, groups), key="eval_train",
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
            "How the n labels are chosen", STRATEGIES, format_func=EVAL_STRATEGY_TEXT.get, key="eval_strategy"
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
    return {"train": train, "n_text": n_text, "strategy": strategy, "targets": targets,
            "seeds": seeds, "loss": loss}


def _method_fields(ctx: Context) -> tuple[list[str], float | None]:
    methods = st.multiselect(
        "Methods", ALL_METHODS, default=DEFAULT_METHODS, format_func=lambda m: METHOD_TEXT.get(m, m),
        key="eval_methods",
        help="Single model: one head trained on the same data. Convex fit: weights fitted to the n "
        "labels. Best head (oracle): the best single head chosen on the test labels, an upper "
        "reference. Fine-tuning: the heads trained further on the n labels (slow).",
    )
    beta = st.number_input(
        "Beta (reweighting temperature)", min_value=0.01, max_value=100.0, value=None, step=0.5,
        key="eval_beta", placeholder=f"the ensemble's: {ctx.beta:g}",
        help="Empty: the ensemble's own beta (calibrated on held-out training annotators when the "
        "build did so, else the paper's 1).",
    )
    if "finetune" in methods:
        st.caption(":material/schedule: Fine-tuning trains the heads again for every group, seed and "
                   "n: expect minutes rather than seconds.")
    return methods, beta


def _problems(ctx: Context, fields: dict[str, Any], methods: list[str], backbone: str | None) -> tuple[list[str], list[int]]:
    """What keeps the form from running (as sentences), and the parsed n values."""
    problems = []
    try:
        n_values = parse_n_values(fields["n_text"])
    except ValueError as exc:
        problems.append(f"Numbers of labels: {exc}.")
        n_values = []
    if not fields["train"]:
        problems.append("Choose at least one train group.")
    if not fields["targets"]:
        problems.append("Choose at least one target group.")
    if not methods:
        problems.append("Choose at least one method.")
    if not is_embedded_backbone(ctx.backbone_id) and backbone is None:
        problems.append("Give the backbone folder of this ensemble.")
    return problems, n_values


def _options(ctx: Context, groups: list[str]) -> Options | None:
    """The form of evaluation settings; None while they are incomplete."""
    fields = _group_fields(ctx, groups)
    methods, beta = _method_fields(ctx)
    backbone = _backbone_path(ctx)
    problems, n_values = _problems(ctx, fields, methods, backbone)
    for problem in problems:
        st.warning(problem)
    if problems:
        return None
    train, targets = list(fields["train"]), fields["targets"]
    overlap = sorted(set(train) & set(targets))
    if overlap:
        st.info(f"Target groups {escape_markdown(', '.join(overlap))} also train the ensemble: their accuracy is "
                "measured on labels it has seen.", icon=":material/info:")
    config = BuildConfig.from_settings(ctx.config, backbone=backbone, train_groups=train)
    if sorted(train) != sorted(ctx.train_groups or groups) or not config.reproduces(ctx.config):
        st.info("No ensemble of these settings on these train groups yet: running will train one "
                "(with the current ensemble's settings) and add it to the pool.", icon=":material/info:")
    return Options(
        config=config, train=train, targets=[g for g in groups if g in targets], n_values=n_values,
        seeds=int(fields["seeds"]), strategy=fields["strategy"], loss=fields["loss"], beta=beta,
        methods=[m for m in ALL_METHODS if m in methods],
    )


def _key(ctx: Context, opts: Options) -> str:
    pool = ctx.pool
    return result_key(
        pool_id=pool.pool_id, n_pairs=pool.n_pairs, n_labels=pool.n_labels,
        backbone=ctx.backbone_id, settings=opts.config.ensemble_settings(), **opts.key_parts(),
    )


def _run(ctx: Context, opts: Options, key: str) -> dict | None:
    bar = st.progress(0.0, text="Loading the backbone…")

    def progress(stage: str, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar.progress(min(1.0, frac), text=f"{STAGE_TEXT.get(stage, stage)} ({done}/{total})")

    try:
        result = evaluate_pools(
            ctx.store, ctx.pool_id, ctx.pool_id, config=opts.config, n_values=opts.n_values,
            seeds=opts.seeds, strategy=opts.strategy, loss=opts.loss, beta=opts.beta,
            methods=opts.methods, target_groups=opts.targets, progress=progress,
        )
    except (BackboneNotFoundError, ValueError) as exc:
        bar.empty()
        st.error(f"The evaluation stopped: {exc}")
        return None
    bar.empty()
    if not result["groups"]:
        st.warning("No target group has two labelled pairs: nothing to evaluate.")
        return None
    result["pool_name"] = ctx.pool_name
    result["train_groups"] = opts.train
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
        charts.curves_figure(result["n"], result["summary"], std_key="std_over_groups"),
        config=charts.PLOTLY_CONFIG, key="eval_summary_chart",
    )
    st.caption("Bands: ± one standard deviation over the target groups (people differ, so they are wide).")
    summary = summary_table(result)
    st.dataframe(
        summary * 100,
        column_config={c: st.column_config.NumberColumn(c, format="%.1f%%") for c in summary.columns}
        # short names (the long ones were cut at 1280 px); the column's help has the long forms
        | {"_index": st.column_config.TextColumn("method", help=method_help(summary))},
    )
    eff = summary.attrs.get("effective_heads")
    if eff:
        st.caption("Effective heads of HyRe's weights (1 / Σw²): "
                   + " · ".join(f"n={n}: {v:.1f}" for n, v in zip(result["n"], eff, strict=True)))
    st.download_button(
        "Download CSV", result_csv(result),
        file_name=f"hyre-evaluation-{result.get('pool_name', 'pool')}.csv",
        mime="text/csv", icon=":material/download:", key="eval_download",
        help="Every group, method and n with the mean and standard deviation.",
    )

    st.subheader("Per target group")
    st.caption("Lines and colours as in the chart above (point at a line for its method). "
               "Bands: ± one standard deviation over the seeds (the draws of the n labels).")
    names = list(result["groups"])
    for start in range(0, len(names), GRID_COLUMNS):
        for col, name in zip(st.columns(GRID_COLUMNS), names[start : start + GRID_COLUMNS], strict=False):
            group = result["groups"][name]
            with col:
                st.plotly_chart(
                    charts.curves_figure(result["n"], group["methods"],
                                         title=f"{name} · {group['n_examples']} labelled pairs", legend=False),
                    config=charts.PLOTLY_CONFIG, key=f"eval_chart_{name}",
                )


def main() -> None:
    ctx = get_context()
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
    stored = ctx.store.get_result(key)
    cached = None if stored is None else stored.value
    if not signin.can("build"):
        if cached:
            _show(cached, cached=True)
        else:
            signin.refuse("Running an evaluation (it trains and stores models)")
        return
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
