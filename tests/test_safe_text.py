"""Text from data and URLs shown safely: sanitised Markdown, escaped names and labels."""

import re

import pytest

from hyre_engine.safe_text import escape_markdown, escape_plotly, markdown_html

HOSTILE = [
    "![p](http://evil.example/x.png)",
    "![p](data:image/png;base64,AAAA)",
    '<img src="http://evil.example/x.png">',
    "<script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox)",
    "[x](file:///etc/passwd)",
    "[x](/relative/into/the/app)",
    "[x](//evil.example/protocol-relative)",
    '<iframe src="http://evil.example"></iframe>',
    '<svg onload="alert(1)"></svg>',
    '<div style="background:url(http://evil.example/x)">x</div>',
    "<style>@import 'http://evil.example/x.css';</style>",
    '[ref]\n\n[ref]: javascript:alert(1)',
    "<http://evil.example/auto>",  # allowed: an http(s) link, but inert (no fetch)
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_has_no_fetch_no_script_no_odd_link(text):
    out = markdown_html(text)
    tags = re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)([^>]*)>", out)  # real tags (text is entity-escaped)
    for name, attrs in tags:
        assert name.lower() in {"p", "a", "br"}, out
        attr_names = set(re.findall(r'\s([a-zA-Z-]+)=', attrs))
        assert attr_names <= {"href", "rel"}, out
    for href in re.findall(r'<a [^>]*href="([^"]*)"', out):
        assert re.match(r"https?://", href, re.IGNORECASE), href
    assert all("noopener" in attrs for name, attrs in tags if name == "a")


def test_markdown_structure_survives():
    out = markdown_html("**bold** *it* `code`\n\n- one\n- two\n\n[ok](https://example.org/a)")
    assert "<strong>bold</strong>" in out and "<em>it</em>" in out and "<code>code</code>" in out
    assert "<li>one</li>" in out
    assert '<a href="https://example.org/a" rel="noopener noreferrer nofollow">ok</a>' in out


def test_markdown_refuses_non_text():
    with pytest.raises(ValueError, match="must be a str"):
        markdown_html(None)


def test_escape_markdown_leaves_no_syntax():
    name = "![p](http://evil.example/x.png) <a href=x>**b**</a>\nline"
    out = markdown_html(escape_markdown(name))
    assert "<img" not in out and "<a" not in out and "<strong>" not in out and "\n" not in escape_markdown(name)
    # and what shows is the original text
    assert "![p](http://evil.example/x.png)" in out.replace("&lt;", "<").replace("&gt;", ">").replace("\u2060", "")


@pytest.mark.parametrize("name", ["see http://evil.example/x", "HTTPS://evil.example", "www.evil.example",
                                  "WWW.evil.example", "mail me@evil.example", "ftp://evil.example"])
def test_escape_markdown_leaves_nothing_to_autolink(name):
    """GFM links bare URLs, www. names and e-mail addresses even when escaped: none is left."""
    plain = escape_markdown(name).replace("\\", "")
    assert not re.search(r"(?i)[a-z]+://|www\.|[\w.+-]@", plain), plain
    assert plain.replace("\u2060", "") == name


def test_escape_plotly():
    assert escape_plotly('<a href="http://x">g</a> & co') == '&lt;a href="http://x"&gt;g&lt;/a&gt; &amp; co'
    assert escape_plotly(3) == "3"
