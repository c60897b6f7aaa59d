"""Small widgets and text helpers the pages share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from hyre_engine.pca import WORDS, EndContrast
from hyre_engine.profiles import Weights
from hyre_engine.safe_text import escape_markdown, markdown_html  # noqa: F401 (pages import escape_markdown here)
from pages._shared.assets import ASSETS_DIR, FAVICON_FILE, STYLE_FILE  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from pages._shared.context import Context

# Prompt and answers are cut to this many characters in tables (full text in the cards).
SNIPPET_CHARS = 90



def data_text(text: object, *, empty: str = "(empty)") -> None:
    """A text from data (a prompt, an answer) as sanitised Markdown (hyre_engine.safe_text):
    no images, no raw HTML, links only to http(s) pages. st.html shows the cleaned HTML as
    is; st.markdown would read Markdown again inside it."""
    text = str(text)
    if not text.strip():
        st.caption(empty)
        return
    st.html(f'<div class="hyre-data-text">{markdown_html(text)}</div>')


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Text on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_picker(ctx: Context, label: str, *, key: str, default_user: bool = True, only=None,
                  **kwargs) -> Weights:
    """A selectbox over the weight sources (the current user's first when they have one); returns its weights.

    ``only``: a predicate on WeightSource keeping some of them (an annotator exports only their own)."""
    sources = [s for s in ctx.sources() if only is None or only(s)]
    by_key = {s.key: s for s in sources}
    if st.session_state.get(key) not in by_key:
        mine = [s.key for s in sources if s.kind in ("session", "profile") and s.name == ctx.user]
        st.session_state[key] = mine[0] if (mine and default_user) else sources[0].key
    chosen = st.selectbox(label, list(by_key), format_func=lambda k: by_key[k].label, key=key, **kwargs)
    return ctx.weights_of(by_key[chosen])


def axis_table(contrasts: list[EndContrast]) -> pd.DataFrame:
    """The engine's end contrasts as the page's table: attribute, what each end favours."""

    def text(counts) -> str:
        return ", ".join(f"{value} ×{count}" for value, count in counts)

    rows = []
    for c in contrasts:
        if c.attribute == WORDS:
            rows.append(("words (mean)", f"{c.plus[0][0]:.0f}", f"{c.minus[0][0]:.0f}"))
        else:
            rows.append((c.attribute, text(c.plus), text(c.minus)))
    return pd.DataFrame(rows, columns=["attribute", "+ end favours", "− end favours"])
