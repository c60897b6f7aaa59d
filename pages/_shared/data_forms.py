"""The Data page's forms that need no store: the preview of a read file, the fine-tuning
settings, a model folder (also on the Evaluate page)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hyre_engine import auth
from hyre_engine import joint_training as jt
from pages._shared import data_io
from pages._shared.labels import FINETUNE_MODE_TEXT


def preview(frame: pd.DataFrame) -> None:
    info = data_io.summarize(frame)
    cols = st.columns(5)
    cols[0].metric("Judgements", f"{info.rows:,}")
    cols[1].metric("Pairs", f"{info.pairs:,}")
    cols[2].metric("Groups", f"{info.groups:,}")
    cols[3].metric("Annotators", f"{info.annotators:,}")
    cols[4].metric("Format", info.format)
    left, right = st.columns([1, 3])
    with left:
        st.dataframe(data_io.group_counts(frame), hide_index=True,
                     column_config={"A preferred": st.column_config.NumberColumn(format="percent")})
    with right:
        st.dataframe(data_io.preview_table(frame), hide_index=True, height=260)
        st.caption(f"The first {min(data_io.PREVIEW_ROWS, info.rows)} of {info.rows:,} judgements, as read.")


def model_folder_field(label: str, key: str, *, value: str = "", help: str = "") -> str | None:
    """A model folder typed by an admin: its resolved path if it lies inside HYRE_MODEL_DIRS,
    else None with one plain message that says nothing about the path (auth.resolve_model_path)."""
    folders = auth.model_dirs()
    if not folders:
        st.info("Model folders are off: none are configured. Start the app with "
                f"`{auth.MODEL_DIRS_ENV}=/path/to/models` to allow the folders in it.",
                icon=":material/folder_off:")
        return None
    typed = st.text_input(label, value=value, key=key, placeholder=str(folders[0] / "my-encoder"),
                          help=f"{help} A folder in " + ", ".join(str(f) for f in folders)
                          + f" ({auth.MODEL_DIRS_ENV}); a name alone is looked up in the first.").strip()
    if not typed:
        return None
    try:
        return str(auth.resolve_model_path(typed, folders))
    except auth.AuthError as exc:
        st.error(f"**Not a usable model folder:** {exc}", icon=":material/folder_off:")
        return None


def finetune_fields(kind: str) -> dict | None:
    """The joint fine-tuning checkbox and, when ticked, its key settings (JointTrainingConfig kwargs)."""
    tune = st.checkbox(
        "Fine-tune the backbone with the heads", value=False, key="data_finetune",
        disabled=kind != "shared",
        help="Trains the text encoder together with the heads: slow on a CPU (minutes per hundred "
        "pairs), and the result is a new backbone. Each finished epoch is kept, so a build that "
        "stops (or an app that closes) resumes from it when you build again.",
    )
    if not tune or kind != "shared":
        return None
    with st.expander("Fine-tuning settings", expanded=True):
        left, middle, right = st.columns(3)
        mode = left.selectbox("Mode", jt.MODES, format_func=FINETUNE_MODE_TEXT.get, key="data_ft_mode")
        epochs = left.number_input("Epochs", min_value=1, max_value=100, value=jt.DEFAULT_EPOCHS,
                                   key="data_ft_epochs", help="The epoch with the lowest validation loss is kept.")
        backbone_lr = None
        if mode != "auto":
            default = jt.DEFAULT_LORA_LR if mode == "lora" else jt.DEFAULT_BACKBONE_LR
            backbone_lr = middle.number_input("Backbone learning rate", min_value=1e-8, max_value=1e-1,
                                              value=default, format="%.1e", key=f"data_ft_blr_{mode}")
        else:
            middle.caption(f"Backbone learning rate: {jt.DEFAULT_BACKBONE_LR:g} for full weights, "
                           f"{jt.DEFAULT_LORA_LR:g} for LoRA adapters.")
        head_lr = middle.number_input("Head learning rate", min_value=1e-8, max_value=1.0,
                                      value=jt.DEFAULT_HEAD_LR, format="%.1e", key="data_ft_hlr")
        max_length = right.number_input("Tokens per text (0: the backbone's window)", min_value=0,
                                        max_value=32768, value=0, step=32, key="data_ft_maxlen")
        grad_accum = right.number_input("Gradient accumulation", min_value=1, max_value=256,
                                        value=jt.DEFAULT_GRAD_ACCUM, key="data_ft_accum",
                                        help=f"Steps of {jt.DEFAULT_BATCH_PAIRS} pairs whose gradients "
                                        "add up before each update.")
    return {"mode": mode, "epochs": int(epochs), "backbone_lr": backbone_lr, "head_lr": float(head_lr),
            "max_length": int(max_length) or None, "grad_accum": int(grad_accum)}
