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

import streamlit as st  # noqa: E402

from hyre_engine import first_launch  # noqa: E402 (light: no torch, duckdb or pandas)
from pages._shared.assets import FAVICON_FILE, STYLE_FILE  # noqa: E402

# The modules the pages need that take seconds to import, loaded on a thread at the
# server's start (first_launch.warm_start) while Streamlit starts and the first launch
# builds: the first page run finds them in sys.modules.
WARM_IMPORTS = (
    "torch", "pandas", "plotly.graph_objects", "hyre_engine.pipeline", "hyre_engine.live",
    "hyre_engine.profiles", "hyre_engine.diversity", "scipy.cluster.hierarchy", "pages._shared.context",
    "pages._shared.sidebar", "pages._shared.live_panels", "pages._shared.label_actions",
)

# Where `python app.py` serves when neither --server.address nor this is given:
# .streamlit/config.toml's loopback address (docs/deploy.md).
ADDRESS_ENV = "HYRE_ADDRESS"


def _bind_address(args: list[str]) -> str | None:
    """The address the server will bind: --server.address, else $HYRE_ADDRESS, else the config's."""
    for i, arg in enumerate(args):
        if arg.startswith("--server.address="):
            return arg.split("=", 1)[1]
        if arg == "--server.address" and i + 1 < len(args):
            return args[i + 1]
    from streamlit import config

    return os.environ.get(ADDRESS_ENV) or os.environ.get("STREAMLIT_SERVER_ADDRESS") or config.get_option(
        "server.address")


def _launch() -> None:
    """`python app.py [streamlit options]`: start the server with st.navigation in charge.

    It refuses (one `error:` line, exit 2) to serve on anything but a loopback
    address unless sign-in is configured (auth.check_bind). Streamlit treats a
    main script with a `pages/` folder beside it as an old-style multipage app
    until the script has called st.navigation once: the first visitor after a
    start would get an automatic menu of every file in pages/ (helpers included)
    and a deep link would run a page without this script. Clearing the flag before
    the server starts gives every session this file's navigation. With a users file
    the server runs serve.py: this script as an st.App with the sign-in cookie routes.
    """
    import sys

    from hyre_engine import auth

    args = sys.argv[1:]
    address = _bind_address(args)
    try:
        how = auth.sign_in_method(auth.read_secrets())
        auth.check_bind(address, sign_in=how is not None)
        auth.signin_hours()  # a bad HYRE_SIGNIN_HOURS is an error now, not at the first sign-in
    except auth.AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if os.environ.get(ADDRESS_ENV) and not any(a.startswith("--server.address") for a in args):
        args = [f"--server.address={os.environ[ADDRESS_ENV]}", *args]

    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    # A fresh install's demo build starts now, with the server: its imports, model load and
    # embedding overlap Streamlit's start and the browser's first connection.
    first_launch.warm_start(imports=WARM_IMPORTS)
    # With a users file: serve.py, this script as an st.App with the routes that keep a
    # sign-in in a cookie; otherwise (local use, OIDC) no route is needed.
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve.py") if how == auth.USERS else __file__
    sys.argv = ["streamlit", "run", script, *args]
    raise SystemExit(cli.main())


if __name__ == "__main__" and not st.runtime.exists():
    _launch()

# A local file: an emoji or :material: icon would be fetched from a CDN by every browser.
st.set_page_config(page_title="HyRe Studio", page_icon=str(FAVICON_FILE), layout="wide")
if STYLE_FILE.exists():
    st.html(STYLE_FILE)

# The first launch (a fresh install, or while its build runs on the server): its screen is
# the only page, drawn before the heavy imports below, which take seconds.
_launching = first_launch.current()
if _launching is not None:
    from pages._shared.first_launch import first_launch_screen

    def _getting_ready() -> None:
        first_launch_screen(_launching.db_path)

    st.navigation([st.Page(_getting_ready, title="HyRe Studio", icon=":material/hourglass_top:",
                           url_path="getting-ready", default=True)], position="hidden").run()
    st.stop()

# Heavy imports, before any page runs: a rerun that interrupts a lazy import breaks the page.
import numpy  # noqa: E402, F401
import pandas  # noqa: E402, F401
import plotly.graph_objects  # noqa: E402, F401
import torch  # noqa: E402, F401

import hyre_engine.auth  # noqa: E402
import hyre_engine.live  # noqa: E402, F401
import hyre_engine.pipeline  # noqa: E402, F401
import hyre_engine.profiles  # noqa: E402, F401
import hyre_engine.store  # noqa: E402, F401
from pages._shared import context as app_context  # noqa: E402
from pages._shared import signin  # noqa: E402
from pages._shared.sidebar import render_sidebar  # noqa: E402

# The imports above are the server's life-long objects: moved out of the collector's
# reach once (the first run), so a full collection no longer walks torch's and pandas'
# millions of objects; later runs freeze nothing (their garbage stays collectable).
if not gc.get_freeze_count():
    gc.freeze()

# The pages, in menu order; each file runs as its own page (st.Page). Data is for admins.
PAGES = [
    st.Page("pages/label.py", title="Label", icon=":material/thumbs_up_down:", default=True),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/people.py", title="People", icon=":material/groups:"),
    st.Page("pages/profiles.py", title="Profiles", icon=":material/group:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
]
DATA_PAGE = st.Page("pages/data.py", title="Data", icon=":material/database:")


def _gate():
    """This run's identity, or None after showing the sign-in page or why nobody is served."""
    try:
        problem = signin.refusal()
        user = None if problem else signin.current_identity()
    except hyre_engine.auth.AuthError as exc:
        problem, user = f"The users file cannot be read: {exc}", None
    st.session_state[signin.IDENTITY_KEY] = user
    if user is None:
        # the only page until signed in: any other address lands here too
        only = st.Page(signin.sign_in_page if problem is None else lambda: signin.refused_page(problem),
                       title="Sign in", icon=":material/login:", url_path="sign-in")
        st.navigation([only], position="hidden").run()
    return user


user = _gate()
if user is not None:
    page = st.navigation(PAGES + ([DATA_PAGE] if user.can("import") else []), position="sidebar")
    context = app_context.resolve_context()
    st.session_state[app_context.CONTEXT_KEY] = context
    if context is not None:
        with st.sidebar:
            st.markdown("### HyRe Studio")
            st.caption("Personalise a reward model from a handful of your choices.")
        render_sidebar(context)
        page.run()
