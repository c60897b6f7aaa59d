"""HyRe Studio: the Streamlit entry point (`streamlit run app.py`).

Resolves what the pages work on (pool, ensemble, user; builds the demo on a
fresh install), draws the shared sidebar, and runs the page chosen in the
navigation. Pages live in pages/ and only call hyre_engine and render.
"""

import gc
import os

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
import hyre_engine.profiles  # noqa: E402, F401
import hyre_engine.store  # noqa: E402, F401
from pages._shared import context as app_context  # noqa: E402
from pages._shared.sidebar import render_sidebar  # noqa: E402
from pages._shared.widgets import STYLE_FILE  # noqa: E402

# The imports above are the server's life-long objects: moved out of the collector's
# reach once (the first run), so a full collection no longer walks torch's and pandas'
# millions of objects; later runs freeze nothing (their garbage stays collectable).
if not gc.get_freeze_count():
    gc.freeze()


def _launch() -> None:
    """`python app.py [streamlit options]`: start the server with st.navigation in charge.

    Streamlit treats a main script with a `pages/` folder beside it as an old-style
    multipage app until the script has called st.navigation once: the first visitor
    after a start would get an automatic menu of every file in pages/ (helpers
    included) and a deep link would run a page without this script. Clearing the
    flag before the server starts gives every session this file's navigation.
    """
    import sys

    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", __file__, *sys.argv[1:]]
    raise SystemExit(cli.main())


if __name__ == "__main__" and not st.runtime.exists():
    _launch()

# The pages, in menu order; each file runs as its own page (st.Page).
PAGES = [
    st.Page("pages/label.py", title="Label", icon=":material/thumbs_up_down:", default=True),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/people.py", title="People", icon=":material/groups:"),
    st.Page("pages/profiles.py", title="Profiles", icon=":material/group:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    st.Page("pages/data.py", title="Data", icon=":material/database:"),
]

st.set_page_config(page_title="HyRe Studio", page_icon=":material/balance:", layout="wide")
if STYLE_FILE.exists():
    st.html(STYLE_FILE)

page = st.navigation(PAGES, position="sidebar")
context = app_context.resolve_context()
st.session_state[app_context.CONTEXT_KEY] = context
if context is not None:
    with st.sidebar:
        st.markdown("### HyRe Studio")
        st.caption("Personalise a reward model from a handful of your choices.")
    render_sidebar(context)
    page.run()
