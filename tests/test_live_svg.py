"""The Label page's live charts (pages/_shared/live_svg.py): valid SVG over sessions of every
kind, every panel's elements for each state, names from data shown as text only, nothing
that refers outside the chart."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from hyre_engine.live import LiveSession
from pages._shared import live_svg
from pages._shared.charts import COLOR_GAIN, COLOR_HEAD, COLOR_PERSONAL, HEADLINE_HEIGHT

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "Ann & 'Bob' <b>", "]]><x y='&"]
STATES = [  # (personal diffs, persona truth, method)
    (False, False, None), (True, False, None), (True, False, "hyre"), (False, True, None), (True, True, None),
]


def _session(*, personal: bool, persona: bool, method: str | None = None, n_heads: int = 12):
    rng = np.random.default_rng(int(personal) + 2 * int(persona))
    z = rng.normal(scale=2.0, size=(40, n_heads)).astype(np.float32)
    truth = np.array(rng.choice(["a", "b", None], size=40), dtype=object) if persona else None
    diffs = rng.normal(size=(40, 6)).astype(np.float32) if personal else None
    return LiveSession(z, truth=truth, diffs=diffs, method=method), rng


def _snapshots(*, personal: bool, persona: bool, method: str | None = None, n: int = 12):
    """Snapshots of one session after 0, 1, ..., n labels (and one skip)."""
    session, rng = _session(personal=personal, persona=persona, method=method)
    yield session.snapshot()
    session.skip(session.next_item())
    for i in range(n):
        session.add_label(session.next_item(), "ab"[int(rng.random() < 0.3 + 0.4 * (i % 2))])
        yield session.snapshot()


def _after(n: int, **kind):
    return list(_snapshots(n=n, **kind))[-1]


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == "svg"
    return root


def _assert_inert(svg: str) -> None:
    """Nothing that runs or loads: no script, link, foreign object, event handler or URL."""
    root = _parse(svg)
    tags = {el.tag for el in root.iter()}
    assert not tags & {"script", "foreignObject", "a", "image", "img", "iframe", "use", "style"}, tags
    for el in root.iter():
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on") and "href" not in name.lower(), (el.tag, name)
            assert "url(" not in value and "javascript:" not in value.lower(), (el.tag, name, value)
    assert "http" not in svg and "<script" not in svg.lower()


def _texts(root: ET.Element, tag: str = "text") -> list[str]:
    return ["".join(el.itertext()) for el in root.iter(tag)]


def _charts(snap, who="you"):
    return {
        "weights": live_svg.weights_svg(snap),
        "pca": live_svg.pca_svg(snap, who),
        "accuracy": live_svg.accuracy_svg(snap, who),
        "accuracy_log": live_svg.accuracy_svg(snap, who, log_x=True),
        "headline": live_svg.headline_svg(snap, who),
    }


@pytest.mark.parametrize(("personal", "persona", "method"), STATES)
def test_every_chart_is_valid_inert_svg_in_every_state(personal, persona, method):
    for snap in _snapshots(personal=personal, persona=persona, method=method):
        for name, svg in _charts(snap).items():
            _assert_inert(svg)
            assert _parse(svg).get("data-chart") == ("weights" if name == "weights" else "pca" if name == "pca"
                                                     else "headline" if name == "headline" else "accuracy")


@pytest.mark.parametrize("n", [0, 1, 7])
def test_weights_have_one_bar_per_head_with_its_exact_weight_amber_when_it_gained(n):
    snap = _after(n, personal=True, persona=False)
    root = _parse(live_svg.weights_svg(snap))
    bars = [r for r in root.iter("rect") if "data-head" in r.attrib]
    assert [int(b.get("data-head")) for b in bars] == snap.heaviest_first.tolist()  # heaviest first
    assert [float(b.get("data-weight")) for b in bars] == snap.weights[snap.heaviest_first].tolist()
    assert [b.get("fill") == COLOR_GAIN for b in bars] == snap.gained[snap.heaviest_first].tolist()
    assert all(b.get("fill") in (COLOR_GAIN, COLOR_HEAD) for b in bars)
    # taller means heavier
    heights = [float(b.get("height")) for b in bars]
    assert heights == sorted(heights, reverse=True) and heights[0] > 0
    assert "head 0" in _texts(root, "title")[1 + [int(b.get("data-head")) for b in bars].index(0)]
    texts = _texts(root)
    assert ("gained on last label" in texts) == bool(snap.gained.any())
    assert {"head", "uniform", "weight", f"{snap.n_heads} heads, heaviest first"} <= set(texts)
    assert n == 0 or snap.gained.any()  # the states above do show both legends


@pytest.mark.parametrize(("personal", "persona", "method"), STATES)
def test_function_space_shows_every_head_and_the_star_exactly_when_there_is_a_person(personal, persona, method):
    for snap in _snapshots(personal=personal, persona=persona, method=method, n=4):
        root = _parse(live_svg.pca_svg(snap, "you"))
        dots = [c for c in root.iter("circle") if "data-head" in c.attrib]
        assert sorted(int(c.get("data-head")) for c in dots) == list(range(snap.n_heads))
        radius = {int(c.get("data-head")): float(c.get("r")) for c in dots}
        heaviest = int(snap.heaviest_first[0])
        assert radius[heaviest] == max(radius.values())
        stars = [s for s in root.iter("svg") if s.get("class") == "person"]
        assert len(stars) == (snap.person_coords is not None)
        if stars:
            star = stars[0]
            assert (float(star.get("data-x")), float(star.get("data-y"))) == tuple(snap.person_coords[:2].tolist())
            assert star.find("polygon").get("fill") == COLOR_PERSONAL
            expected = "you (HyRe + personal head)" if snap.personal else "you (HyRe)"
            assert _texts(star, "title") == [expected]
        texts = _texts(root)
        assert any(t.startswith("PC1 (") for t in texts) and any(t.startswith("PC2 (") for t in texts)


def _curve_names(svg: str) -> list[str]:
    """The legend's entries."""
    return [t for s in _parse(svg).iter("svg") if s.get("class") == "legend" for t in _texts(s)]


def test_accuracy_curves_per_state():
    # a person, no label yet: an empty chart says how to start
    empty = live_svg.accuracy_svg(_after(0, personal=True, persona=False))
    assert "Label a pair to start the curve" in _texts(_parse(empty))
    assert not list(_parse(empty).iter("polyline"))
    # a person with labels: personal, HyRe only and uniform, running accuracy
    person = live_svg.accuracy_svg(_after(5, personal=True, persona=False))
    assert set(_curve_names(person)) == {"personal", "HyRe only", "uniform"}
    assert "running accuracy" in _texts(_parse(person))
    # the personal head off: its curve is dotted and says so
    off = _after(5, personal=True, persona=False, method="hyre")
    root = _parse(live_svg.accuracy_svg(off))
    dotted = [p for p in root.iter("polyline") if p.get("stroke") == COLOR_PERSONAL]
    assert dotted and all(p.get("stroke-dasharray") for p in dotted)
    assert "personal (off)" in _curve_names(live_svg.accuracy_svg(off))
    # no personal head at all: HyRe alone is called HyRe
    plain = live_svg.accuracy_svg(_after(5, personal=False, persona=False))
    assert set(_curve_names(plain)) == {"HyRe", "uniform"}
    # a persona: held-out accuracy from 0 labels on, with the oracle as a reference
    for n in (0, 5):
        held = live_svg.accuracy_svg(_after(n, personal=True, persona=True))
        assert set(_curve_names(held)) == {"HyRe + personal head", "HyRe only", "uniform ensemble",
                                           "best single head (oracle)"}
        assert "held-out accuracy" in _texts(_parse(held))
    # before a persona's first label every curve has one point, and each is drawn (as a dot):
    # the references (uniform, the oracle) show from the start of a demo
    start = _parse(live_svg.accuracy_svg(_after(0, personal=True, persona=True)))
    drawn = {t.split(":")[0] for t in _texts(start, "title") if t.endswith("after 0 labels")}
    assert drawn == {"HyRe + personal head", "HyRe only", "uniform ensemble", "best single head (oracle)"}
    # each marker tells its value and count
    marks = [t for t in _texts(_parse(person), "title") if t.startswith("HyRe only: ")]
    assert len(marks) == 5 and marks[-1].endswith("after 5 labels")


def test_accuracy_axis_has_whole_label_ticks_and_a_log_scale_on_request():
    snap = _after(7, personal=False, persona=True)
    ticks = [t for t in _texts(_parse(live_svg.accuracy_svg(snap))) if t.isdigit()]
    assert ticks == [str(i) for i in range(8)]  # every count, no 0.5
    log = _parse(live_svg.accuracy_svg(snap, log_x=True))
    assert [t for t in _texts(log) if t.isdigit()] == ["1", "2", "5"]
    assert "labels given (log scale, 1 + labels)" in _texts(log)


def test_headline_is_projector_sized_and_turns_logarithmic_after_30_labels():
    short = _after(5, personal=True, persona=True)
    root = _parse(live_svg.headline_svg(short, "Ada"))
    assert root.get("height") == str(HEADLINE_HEIGHT)
    assert "labels given" in _texts(root)
    sizes = {int(t.get("font-size")) for t in root.iter("text")}
    assert min(sizes) >= live_svg.HEADLINE_FONT - 2
    assert all(float(p.get("stroke-width")) >= live_svg.HEADLINE_LINE // 2 for p in root.iter("polyline"))
    long = _after(live_svg.HEADLINE_LOG_AFTER + 1, personal=True, persona=True)
    assert "labels given (log scale, 1 + labels)" in _texts(_parse(live_svg.headline_svg(long, "Ada")))


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_text_never_markup(name):
    for snap in (_after(3, personal=True, persona=True), _after(3, personal=False, persona=False)):
        for chart, svg in _charts(snap, name).items():
            _assert_inert(svg)
            root = _parse(svg)
            assert {el.tag for el in root.iter()} <= {"svg", "title", "text", "line", "rect", "circle",
                                                     "polygon", "polyline"}, chart
            if chart == "weights":
                continue
            # the name comes back exactly, as the chart's accessible title
            assert name in root.get("aria-label") and name in _texts(root, "title")[0], chart
        stars = [s for s in _parse(live_svg.pca_svg(snap, name)).iter("svg") if s.get("class") == "person"]
        if stars:
            assert _texts(stars[0], "title")[0].startswith(name)
            assert name.split(",")[0][:live_svg.NAME_CHARS] in _texts(stars[0])
    assert not re.search(r"<(script|img)\b", live_svg.pca_svg(snap, name))


def test_nice_ticks_are_round_and_bad_ranges_fail():
    assert live_svg.nice_ticks(0.0, 1.0) == ([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 1)
    assert live_svg.nice_ticks(0.0, 0.0115, count=4) == ([0.0, 0.005, 0.01], 3)
    assert live_svg.nice_ticks(0.0, 0.01, count=4) == ([0.0, 0.0025, 0.005, 0.0075, 0.01], 4)
    assert live_svg.nice_ticks(-7.3, 8.1, count=5) == ([-5.0, 0.0, 5.0], 0)
    with pytest.raises(ValueError, match="lo < hi"):
        live_svg.nice_ticks(1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        live_svg.nice_ticks(0.0, float("nan"))
