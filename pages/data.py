"""Data page: import preference files, build ensembles, manage the store.

1. Import: a file by upload or by path (DESIGN format, HH-RLHF, LLMBar, per-user
   ratings), validated by hyre_engine.data; errors name the file, row and
   column, and nothing is written unless the whole file reads.
2. Build: backbone, ensemble kind, K, prior scale, training groups. The build runs
   on the server (hyre_engine.jobs, pages/_shared/build_jobs.py), not in this tab: its
   progress shows in every tab and survives a reload.
3. Manage: the pools and ensembles in the store, each deletable after a confirm.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from hyre_engine import auth
from hyre_engine import ensemble as ens
from hyre_engine import joint_training as jt
from hyre_engine.backbone import DEFAULT_BACKBONE, load_backbone
from hyre_engine.data import FORMATS, DataError
from hyre_engine.demo import CROWD_GROUP
from hyre_engine.pipeline import DEFAULT_ANNOTATOR_FRACTION, BuildConfig
from hyre_engine.safe_text import escape_markdown
from hyre_engine.store import PoolExistsError
from pages._shared import build_jobs, data_forms, data_io, signin
from pages._shared.context import (
    current_user,
    store,
)
from pages._shared.guidelines import guidelines_section
from pages._shared.labels import FORMAT_TEXT, KIND_TEXT
from pages._shared.manage import manage_section

SOURCES = {"upload": "Upload a file", "path": "A file in the data folders"}
BACKBONES = {"embedded": f"Embedded {DEFAULT_BACKBONE}", "folder": "A local Hugging Face folder"}
# K and hidden: bounds that keep a CPU build in minutes; defaults are the paper's.
MAX_HEADS = 500
MAX_HIDDEN = 1024

SOURCE_KEY = "data_source"
UPLOAD_KEY = "data_upload"
PATH_KEY = "data_path"
FORMAT_KEY = "data_format"
NAME_KEY = "data_pool_name"
READ_KEY = "data_read"  # {"signature", "frame"} of the last file read, for the preview
BUILD_POOL_KEY = "data_build_pool"
NOTICE_KEY = "data_notice"


@st.cache_resource(show_spinner=False, max_entries=2)
def _backbone(path: str | None):
    return load_backbone(path)


# ---------------------------------------------------------------- import


def _source() -> tuple[tuple, Callable[[], pd.DataFrame]] | None:
    """(signature, reader) of the chosen file, or None when none is chosen yet."""
    fmt = st.session_state.get(FORMAT_KEY, "auto")
    if st.session_state.get(SOURCE_KEY, "upload") == "upload":
        upload = st.session_state.get(UPLOAD_KEY)
        if upload is None:
            return None

        def read_upload():
            message = data_io.size_error(upload.name, upload.size, data_io.MAX_UPLOAD_BYTES, upload=True)
            if message:  # refused before reading a byte of it
                raise DataError(message, path=upload.name)
            return data_io.read_upload(upload.getvalue(), upload.name, format=fmt)

        return ("upload", upload.file_id, upload.name, upload.size, fmt), read_upload
    path = (st.session_state.get(PATH_KEY) or "").strip()
    if not path:
        return None
    return ("path", path, fmt), lambda: data_io.read_path(path, format=fmt)


def _read(signature: tuple, reader) -> pd.DataFrame | None:
    """The parsed table (cached per signature), or None after showing why it could not be read."""
    cached = st.session_state.get(READ_KEY)
    if cached and cached["signature"] == signature:
        return cached["frame"]
    try:
        frame = reader()
    except (DataError, FileNotFoundError, ValueError) as exc:
        st.session_state.pop(READ_KEY, None)
        st.error(f"**Nothing was imported.** {exc}", icon=":material/error:")
        return None
    st.session_state[READ_KEY] = {"signature": signature, "frame": frame}
    return frame


def _import_section(db) -> None:
    st.subheader("1 · Import a preference file")
    st.segmented_control("Source", list(SOURCES), format_func=SOURCES.get, key=SOURCE_KEY,
                         default="upload", required=True, label_visibility="collapsed")
    left, right = st.columns(2)
    with left:
        if st.session_state.get(SOURCE_KEY, "upload") == "upload":
            st.file_uploader(
                "Preference file", type=data_io.UPLOAD_TYPES, key=UPLOAD_KEY, max_upload_size=data_io.MAX_UPLOAD_MB,
                help=f"JSONL, JSON, CSV or Parquet (optionally .gz), up to {data_io.MAX_UPLOAD_MB} MB.",
            )
        else:
            folders = auth.data_dirs()
            if not folders:
                st.info("Import by path is off: no data folders are configured. Start the app with "
                        f"`{auth.DATA_DIRS_ENV}=/path/to/folder` to allow the files in it.",
                        icon=":material/folder_off:")
                return
            st.text_input("File path", key=PATH_KEY, placeholder=str(folders[0] / "preferences.jsonl"),
                          help="A file in " + ", ".join(str(f) for f in folders) + f" ({auth.DATA_DIRS_ENV}); "
                          "a name alone is looked up in the first folder. Larger files than an "
                          f"upload allows are fine (up to {data_io.MAX_PATH_BYTES // 2**20} MB).")
    with right:
        st.selectbox("Format", FORMATS, format_func=FORMAT_TEXT.get, key=FORMAT_KEY)
        st.text_input("Pool name", key=NAME_KEY, placeholder="default: the file's name",
                      help="The name the pool gets in the store (and in the sidebar).")
    source = _source()
    buttons = st.container(horizontal=True)
    preview = buttons.button("Preview", icon=":material/visibility:", key="data_preview",
                                disabled=source is None)
    do_import = buttons.button("Import", type="primary", icon=":material/upload:", key="data_import",
                                  disabled=source is None)
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice, icon=":material/check_circle:")
    if source is None:
        st.caption("Choose a file to preview and import it. Columns: `prompt` and either "
                   "`response_a`, `response_b`, `label` (a or b) or `chosen`, `rejected`; optional "
                   "`group`, `annotator`, `pair_id`.")
        return
    signature, reader = source
    cached = st.session_state.get(READ_KEY)
    shown = cached is not None and cached["signature"] == signature
    if not (preview or do_import or shown):
        return
    frame = _read(signature, reader)
    if frame is None:
        return
    if do_import:
        name = (st.session_state.get(NAME_KEY) or "").strip() or data_io.default_pool_name(signature[2] if signature[0] == "upload" else signature[1])
        try:
            pool_id = db.add_pool(name, frame, source=str(frame.attrs.get("source", "")))
        except PoolExistsError:
            st.error(f"**Nothing was imported.** A pool named '{escape_markdown(name)}' already exists: give this one another "
                     "name, or delete the old one under Pools and ensembles first.", icon=":material/error:")
            data_forms.preview(frame)
            return
        except ValueError as exc:
            st.error(f"**Nothing was imported.** {exc}", icon=":material/error:")
            data_forms.preview(frame)
            return
        st.session_state.pop(READ_KEY, None)
        st.session_state[BUILD_POOL_KEY] = pool_id
        st.session_state[NOTICE_KEY] = (
            f"Imported pool '{name}': {frame['pair_id'].nunique():,} pairs, {len(frame):,} judgements. "
            "Build an ensemble for it below."
        )
        st.rerun()
    data_forms.preview(frame)


# ---------------------------------------------------------------- build


def _build_section(db) -> None:
    st.subheader("2 · Build an ensemble")
    pools = db.list_pools()
    if pools.empty:
        st.info("Import a pool first.")
        return
    names = dict(zip(pools["pool_id"], pools["name"], strict=True))
    sizes = dict(zip(pools["pool_id"], pools["n_pairs"], strict=True))
    if st.session_state.get(BUILD_POOL_KEY) not in names:
        st.session_state[BUILD_POOL_KEY] = pools["pool_id"].iloc[-1]
    with st.container(border=True):
        left, right = st.columns(2)
        with left:
            pool_id = st.selectbox("Pool", list(names), key=BUILD_POOL_KEY,
                                   format_func=lambda p: f"{names[p]} · {sizes[p]:,} pairs")
            groups = [str(g) for g in db.pool_groups(pool_id)["group"].dropna()]
            default = [CROWD_GROUP] if CROWD_GROUP in groups else groups
            train = st.multiselect(
                "Train on the labels of", groups, default=default, key=f"data_train_{pool_id}",
                help="The aggregate data the heads learn from. Leave the people you want to "
                "personalise to out, so they are new to the ensemble.",
            )
            backbone_choice = st.radio("Backbone", list(BACKBONES), format_func=BACKBONES.get,
                                       key="data_backbone", horizontal=True)
            folder = None
            if backbone_choice == "folder":
                folder = data_forms.model_folder_field(
                    "Model folder", "data_backbone_path",
                    help="A sentence-transformers or Hugging Face folder; nothing is ever downloaded.")
            kind = st.selectbox("Ensemble kind", ens.KINDS, format_func=KIND_TEXT.get, key="data_kind")
        with right:
            k = st.number_input("Heads (K)", min_value=2, max_value=MAX_HEADS, value=ens.DEFAULT_HEADS,
                                step=10, key="data_heads", help="The paper uses 100.")
            hidden = st.number_input("Hidden units per head", min_value=4, max_value=MAX_HIDDEN,
                                     value=ens.DEFAULT_HIDDEN, step=16, key="data_hidden")
            prior = st.number_input("Prior scale", min_value=0.0, max_value=100.0,
                                    value=float(ens.DEFAULT_PRIOR_SCALE), step=0.5, key="data_prior",
                                    help="Weight of each head's frozen random prior network: larger "
                                    "keeps the heads more diverse away from the training data.")
            fraction = st.slider(
                "Annotator fraction", 0.0, 1.0, float(DEFAULT_ANNOTATOR_FRACTION or 0.0), step=0.05,
                key="data_fraction",
                help="Each head trains on the rows of this share of the training annotators, so "
                "heads specialise; 0 trains every head on every row.",
            )
            calibrate = st.checkbox(
                "Calibrate beta on held-out training annotators", value=True, key="data_calibrate",
                help="Trains a second ensemble once to choose the reweighting temperature; "
                "needs at least 5 training annotators.",
            )
        finetune = data_forms.finetune_fields(kind)
        start = st.button("Build", type="primary", icon=":material/construction:", key="data_build",
                       disabled=not train or (backbone_choice == "folder" and folder is None))
    if start:
        _start(db, pool_id, finetune, BuildConfig(
            backbone=folder, kind=kind, n_heads=int(k), hidden=int(hidden), prior_scale=float(prior),
            train_groups=list(train), annotator_fraction=float(fraction) if fraction > 0 else None,
            calibrate=calibrate))
    build_jobs.started_notice()


def _start(db, pool_id: str, finetune: dict | None, config: BuildConfig) -> None:
    """Start the build on the server (its progress shows below, in every tab)."""
    try:
        config.finetune = jt.JointTrainingConfig(**finetune) if finetune is not None else None
    except ValueError as exc:
        st.error(f"**Fine-tuning settings:** {exc}", icon=":material/error:")
        return
    # the cached backbone has its own window: a fine-tuning with another loads its own
    window = config.finetune.max_length if config.finetune is not None else None
    loader = (lambda: _backbone(config.backbone)) if window is None else None
    build_jobs.start(db, pool_id, config, backbone=loader, user=current_user())


def main() -> None:
    st.title("Data")
    if not signin.can("import"):
        signin.refuse("The Data page (importing, building and deleting)")
        return
    db = store()
    st.markdown("Bring your own preference data: import a file, build an ensemble of reward heads "
                "on it, and manage what the store holds.")
    build_jobs.jobs_panel(db)  # the builds running on the server, first: what a reload comes back to
    _import_section(db)
    st.divider()
    _build_section(db)
    st.divider()
    guidelines_section(db, current_user())
    st.divider()
    manage_section(db)


main()
