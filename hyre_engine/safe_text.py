"""Text from data and from URLs, made safe to show in a browser.

Anything a pool file or an address bar supplies is hostile until shown otherwise:
a Markdown image ``![x](http://host/x.png)`` makes every viewer's browser fetch a
URL, a ``javascript:`` link runs script on a click, and plotly renders a subset
of HTML (``<a href>``, ``<b>``, ``<br>``) in every label.

- `markdown_html`: a response text rendered as Markdown (CommonMark by markdown-it-py,
  raw HTML off), then cleaned by nh3 (the ammonia sanitiser): no images at all, links
  only with http(s) URLs, every link ``rel="noopener noreferrer nofollow"``.
- `escape_markdown`: a name or group placed inside a Markdown string shows literally
  (and a URL in it is no autolink).
- `escape_plotly`: a name or group placed in a plotly label, hover text or tick shows
  literally (plotly decodes ``&lt;`` back to ``<`` as text, never as a tag).
"""

from __future__ import annotations

import functools
import html
import re

# Tags a rendered Markdown text may keep: text structure only. No <img> (a remote
# image is a request to a third party on every view), no forms, no media.
MARKDOWN_TAGS = frozenset({
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a",
    "table", "thead", "tbody", "tr", "th", "td",
})
# Only links a browser opens as an ordinary page; javascript:, data:, file: and
# relative URLs (which would point into the app itself) are dropped.
LINK_SCHEMES = frozenset({"http", "https"})
MARKDOWN_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}

# Every ASCII punctuation character CommonMark lets a backslash escape: escaping all
# of them leaves no Markdown syntax (links, images, emphasis, HTML, autolinks) alive.
_MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|<>~$:&\"'=/^%@;,?"
# One pass of str.translate: a regex substitution with a template expanded it per character.
_ESCAPE_TABLE = str.maketrans({c: "\\" + c for c in _MARKDOWN_SPECIAL})


# Texts up to this many characters keep their cleaned HTML (the Label page shows the same
# pair texts on every label of every labeller); longer ones are rendered each time, so the
# cache holds at most about MARKDOWN_CACHE_SIZE x MARKDOWN_CACHE_CHARS characters (40 MB).
MARKDOWN_CACHE_CHARS = 10_000
MARKDOWN_CACHE_SIZE = 4096


def markdown_html(text: str) -> str:
    """Sanitised HTML of ``text`` read as Markdown (see the module docstring)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _cached_html(text) if len(text) <= MARKDOWN_CACHE_CHARS else _clean_html(text)


@functools.lru_cache(maxsize=MARKDOWN_CACHE_SIZE)
def _cached_html(text: str) -> str:
    return _clean_html(text)


@functools.cache
def _parser():
    """The one Markdown parser, made on first use (building one costs more than a render; its
    render keeps no state between calls, so the server's threads share it)."""
    from markdown_it import MarkdownIt

    # html=False: raw HTML in the source is shown as text, never parsed as tags.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def _clean_html(text: str) -> str:
    import nh3

    rendered = _parser().render(text)
    return nh3.clean(
        rendered,
        tags=set(MARKDOWN_TAGS),
        attributes={k: set(v) for k, v in MARKDOWN_ATTRIBUTES.items()},
        url_schemes=set(LINK_SCHEMES),
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


# GitHub-flavoured Markdown (Streamlit's) links bare URLs, www. names and e-mail addresses
# in plain text even when every character is escaped: a word joiner (U+2060, invisible)
# after "scheme:", after "www" and before "@" breaks each of those patterns.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=\\:)|(?i:(?<=www)(?=\\\.))|(?=\\@)")


def escape_markdown(text: object) -> str:
    """``text`` with every Markdown metacharacter backslash-escaped, newlines as spaces, and
    no bare URL or e-mail address left for an autolink."""
    s = " ".join(str(text).splitlines())
    escaped = s.translate(_ESCAPE_TABLE)
    # the autolink patterns need ":", "@" or "www": most texts have none, and the search is slow
    if ":" in s or "@" in s or "www" in s.lower():
        escaped = _AUTOLINK.sub(WORD_JOINER, escaped)
    return escaped


def escape_plotly(text: object) -> str:
    """``text`` with ``& < >`` as entities: plotly shows it literally, never as a tag."""
    return html.escape(str(text), quote=False)
