import dataclasses
import random
from collections import Counter

import numpy as np
import pytest

from hyre_engine import demo
from hyre_engine.cli import build_parser

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def responses():
    return demo.load_responses()


@pytest.fixture(scope="module")
def personas():
    return demo.load_personas()


@pytest.fixture(scope="module")
def pairs(responses, personas):
    return demo.generate_pairs(responses, personas)


@pytest.fixture(scope="module")
def persona_rows(pairs):
    """group -> pair_id -> row (crowd rows under "crowd")."""
    out = {}
    for row in pairs:
        out.setdefault(row["group"], {})[row["pair_id"]] = row
    return out


def _text(n_words, tag, *, tail=""):
    return " ".join(f"{tag}{i}" for i in range(n_words)) + tail


def _tiny_pool():
    """Two prompts x six variants with texts that respect the word limits."""
    rows = []
    for p in ("p1", "p2"):
        for depth in demo.DEPTHS:
            for style in demo.STYLES:
                n = 20 if style == "short" else 100
                rows.append(
                    {
                        "prompt_id": p,
                        "topic": "t",
                        "prompt": f"Question {p}?",
                        "depth": depth,
                        "style": style,
                        "text": _text(n, f"{p}{depth}{style}"),
                    }
                )
    return rows


def _persona(**changes):
    base = dict(
        id="x",
        name="X",
        description="d",
        summary="s",
        depth={},
        style={},
        features={},
        noise=0.0,
        in_crowd=True,
        crowd_weight=1.0,
    )
    base.update(changes)
    return demo.Persona(**base)


def _raw_persona(**changes):
    raw = {
        "id": "x",
        "name": "X",
        "description": "d",
        "summary": "s",
        "depth": {"child": 1.0},
        "style": {"short": 0.5},
        "features": {"has_list": 1.0},
        "noise": 0.1,
        "in_crowd": True,
        "crowd_weight": 1.0,
    }
    raw.update(changes)
    return raw


# --------------------------------------------------------------------------- features


def test_text_features_known_values():
    text = "Imagine a pond.\n- frogs\n- ducks\n1. first\nWhat lives there?"
    assert demo.count_words(text) == 10  # bullets are not words, "1." is
    assert demo.text_features(text) == {
        "words_per_100": 0.1,
        "has_list": 1.0,
        "asks_question": 1.0,
        "has_example": 1.0,
    }
    plain = "A pond - where frogs live, e.g. on lily pads. Really? No."
    feats = demo.text_features(plain)
    assert feats["has_list"] == 0.0  # a dash inside a line is no list
    assert feats["asks_question"] == 0.0  # a question mid-text is not asking back
    assert feats["has_example"] == 1.0
    assert demo.text_features("Nothing here.")["has_example"] == 0.0


def test_utility_is_the_documented_linear_sum():
    p = _persona(
        depth={"child": 1.0, "expert": -1.0},
        style={"thorough": 0.5},
        features={"words_per_100": -0.5, "asks_question": 2.0},
    )
    r = {"depth": "expert", "style": "thorough", "text": _text(120, "w", tail=" ok?")}
    assert demo.utility(p, r) == pytest.approx(-1.0 + 0.5 - 0.5 * 1.21 + 2.0)


def test_persona_label_follows_utility_without_noise_and_is_reproducible():
    p = _persona(depth={"child": 1.0})
    child = {"depth": "child", "style": "short", "text": "one two"}
    expert = {"depth": "expert", "style": "short", "text": "three four"}
    assert demo.persona_label(p, child, expert, "q") == "a"
    assert demo.persona_label(p, expert, child, "q") == "b"
    # a tie is a seeded coin: reproducible, and both outcomes happen over pair ids
    indifferent = _persona()
    ties = [demo.persona_label(indifferent, child, expert, f"q{i}") for i in range(200)]
    assert ties == [demo.persona_label(indifferent, child, expert, f"q{i}") for i in range(200)]
    assert 60 < ties.count("a") < 140


def test_preference_and_crowd_probabilities_known_values():
    kid = _persona(id="kid", depth={"child": 1.0}, noise=0.1, crowd_weight=3.0)
    pro = _persona(id="pro", depth={"expert": 1.0}, noise=0.0, crowd_weight=1.0)
    out = _persona(id="out", depth={"expert": 5.0}, in_crowd=False, crowd_weight=0.0)
    child = {"depth": "child", "style": "short", "text": "x"}
    expert = {"depth": "expert", "style": "short", "text": "y"}
    assert demo.preference_probability(kid, child, expert) == pytest.approx(0.9)
    assert demo.preference_probability(kid, expert, child) == pytest.approx(0.1)
    assert demo.preference_probability(_persona(), child, expert) == 0.5
    # 3/4 of the crowd is kid (0.9 for the child answer), 1/4 is pro (0.0); out never votes
    assert demo.crowd_probability([kid, pro, out], child, expert) == pytest.approx(0.675)


def test_noise_flips_the_documented_fraction():
    p = _persona(depth={"child": 1.0}, noise=0.15)
    child = {"depth": "child", "style": "short", "text": "x"}
    expert = {"depth": "expert", "style": "short", "text": "y"}
    labels = [demo.persona_label(p, child, expert, f"pair{i}") for i in range(4000)]
    assert labels.count("b") / 4000 == pytest.approx(0.15, abs=0.02)
    # the crowd's occasion draws its own noise
    crowd = [
        demo.persona_label(p, child, expert, f"pair{i}", occasion="crowd") for i in range(4000)
    ]
    assert crowd != labels


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"noise": 0.2}, r"persona 'x'.*'noise'"),
        ({"noise": -0.01}, r"persona 'x'.*'noise'"),
        ({"depth": {"toddler": 1.0}}, r"persona 'x'.*'depth'.*'toddler'"),
        ({"style": {"long": 1.0}}, r"persona 'x'.*'style'.*'long'"),
        ({"features": {"emoji": 1.0}}, r"persona 'x'.*'features'.*'emoji'"),
        ({"features": {"has_list": "high"}}, r"persona 'x'.*'features'"),
        ({"in_crowd": True, "crowd_weight": 0.0}, r"persona 'x'.*'crowd_weight'"),
        ({"in_crowd": False, "crowd_weight": 0.5}, r"persona 'x'.*'crowd_weight'"),
        ({"id": "crowd"}, r"persona 'crowd'.*reserved"),
    ],
)
def test_parse_personas_rejects_bad_fields(changes, match):
    doc = {"personas": [_raw_persona(id="ok"), _raw_persona(**changes)]}
    with pytest.raises(ValueError, match=match):
        demo.parse_personas(doc)


def test_parse_personas_rejects_missing_and_duplicate():
    raw = _raw_persona()
    del raw["noise"]
    with pytest.raises(ValueError, match=r"persona 'x': missing field 'noise'"):
        demo.parse_personas({"personas": [raw]})
    with pytest.raises(ValueError, match=r"persona 'x'.*'id' is duplicated"):
        demo.parse_personas({"personas": [_raw_persona(), _raw_persona()]})
    with pytest.raises(ValueError, match="no persona is in the crowd"):
        demo.parse_personas({"personas": [_raw_persona(in_crowd=False, crowd_weight=0)]})


def test_response_problems_finds_each_defect():
    pool = _tiny_pool()
    assert demo.response_problems(pool) == []
    bad = [dict(r) for r in pool[:-1]]  # p2 expert-thorough missing
    bad[0]["text"] = _text(46, "long")  # p1 child-short over the short limit
    bad[1]["text"] = _text(79, "brief")  # p1 child-thorough under the thorough minimum
    bad[2]["text"] = bad[3]["text"]  # duplicate text
    bad[4]["depth"] = "toddler"
    problems = "\n".join(demo.response_problems(bad))
    assert "p1 child-short: 46 words > 45" in problems
    assert "p1 child-thorough: 79 words outside [80, 160]" in problems
    assert "same text as row" in problems
    assert "unknown depth 'toddler'" in problems
    assert "p2: missing variants ['expert-thorough']" in problems


# --------------------------------------------------------------------------- generator


def test_generator_on_a_tiny_pool():
    pool = _tiny_pool()
    people = [
        _persona(id="kid", depth={"child": 1.0, "expert": -1.0}),
        _persona(id="pro", depth={"child": -1.0, "expert": 1.0}, in_crowd=False, crowd_weight=0.0),
    ]
    rows = demo.generate_pairs(pool, people)
    assert len(rows) == 2 * 15 * 3
    assert len({(r["pair_id"], r["group"]) for r in rows}) == len(rows)
    for r in rows:
        assert r["group"] in {"kid", "pro", "crowd"}
        assert r["annotator"] == ("kid" if r["group"] == "crowd" else r["group"])
        a = next(x for x in pool if x["text"] == r["response_a"])
        assert (a["depth"], a["style"]) == (r["depth_a"], r["style_a"])
    # opposite utilities, no noise: they disagree exactly where depths differ
    by = {(r["pair_id"], r["group"]): r["label"] for r in rows}
    for r in rows:
        if r["group"] == "kid" and r["depth_a"] != r["depth_b"]:
            assert by[(r["pair_id"], "pro")] != r["label"]
    # shuffling the responses changes no label
    shuffled = pool[:]
    random.Random(0).shuffle(shuffled)
    again = {(r["pair_id"], r["group"]): r["label"] for r in demo.generate_pairs(shuffled, people)}
    assert again == by


def test_cli_writes_then_checks(tmp_path, capsys):
    src = tmp_path / "responses.jsonl"
    src.write_text(demo.pairs_to_jsonl(_tiny_pool()), encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    parser = build_parser(["demo-data"])

    def run(*extra):
        args = parser.parse_args(["demo-data", "--responses", str(src), "--out", str(out), *extra])
        return args.func(args)

    assert run("--check") == 1  # nothing written yet
    assert run() == 0
    assert len(out.read_text().splitlines()) == 2 * 15 * (len(demo.load_personas()) + 1)
    assert run("--check", "--matrix") == 0
    assert "| **maya** |" in capsys.readouterr().out
    out.write_text(out.read_text().replace('"label": "a"', '"label": "b"', 1))
    assert run("--check") == 1


def test_agreement_matrix_known_values():
    rows = [
        {"pair_id": p, "group": g, "label": lab}
        for p, g, lab in [
            ("1", "u", "a"),
            ("2", "u", "a"),
            ("3", "u", "b"),
            ("4", "u", "b"),
            ("1", "v", "a"),
            ("2", "v", "b"),
            ("3", "v", "b"),
            ("4", "v", "a"),
            ("1", "w", "b"),
            ("1", "crowd", "a"),
        ]
    ]
    ids, m = demo.agreement_matrix(rows)
    assert ids == ["u", "v", "w"]
    np.testing.assert_allclose(m, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])
    ids, m = demo.agreement_matrix(rows, include_crowd=True)
    assert ids == ["u", "v", "w", "crowd"]
    np.testing.assert_allclose(m[3], [1, 1, 0, 1])
    assert np.isnan(
        demo.agreement_matrix(rows + [{"pair_id": "9", "group": "z", "label": "a"}])[1][0, 3]
    )


# --------------------------------------------------------------------------- the demo pool


def test_pool_counts_and_structure(responses):
    assert demo.response_problems(responses) == []  # 6 variants, word limits, no duplicates
    prompts = {r["prompt_id"] for r in responses}
    assert len(prompts) >= 48
    assert len({r["topic"] for r in responses}) >= 8
    assert len(responses) == 6 * len(prompts)
    assert len({(r["prompt_id"], r["depth"], r["style"]) for r in responses}) == len(responses)
    assert len({r["text"] for r in responses}) == len(responses)
    for r in responses:
        n = demo.count_words(r["text"])
        assert (n <= 45) if r["style"] == "short" else (80 <= n <= 160), (r["prompt_id"], n)
    # the measured features actually vary across the pool
    feats = [demo.text_features(r["text"]) for r in responses]
    for name in ("has_list", "asks_question", "has_example"):
        share = sum(f[name] for f in feats) / len(feats)
        assert 0.03 < share < 0.97, (name, share)


def test_personas_and_crowd(personas):
    assert len(personas) >= 10
    assert len({p.id for p in personas}) == len(personas)
    held_out = [p for p in personas if not p.in_crowd]
    assert len(held_out) >= 4
    assert all(0 <= p.noise <= demo.MAX_NOISE for p in personas)
    mixture = demo.crowd_mixture(personas)
    assert sum(mixture.values()) == pytest.approx(1.0)
    assert set(mixture) == {p.id for p in personas if p.in_crowd}


def test_committed_pairs_file_is_what_the_generator_writes(pairs):
    text = demo.pairs_to_jsonl(pairs)
    assert demo.PAIRS_FILE.read_text(encoding="utf-8") == text
    assert demo.build_pairs_text() == text  # generating twice gives the same bytes


def test_pairs_cover_every_pair_once_per_group(responses, personas, pairs):
    n_prompts = len({r["prompt_id"] for r in responses})
    pair_ids = {r["pair_id"] for r in pairs}
    assert len(pair_ids) == 15 * n_prompts
    assert len(pairs) == len(pair_ids) * (len(personas) + 1)
    assert Counter(Counter(r["group"] for r in pairs).values()) == {
        len(pair_ids): len(personas) + 1
    }
    for r in pairs:
        for key in ("pair_id", "prompt", "response_a", "response_b", "label", "group", "annotator"):
            assert key in r
        assert r["label"] in ("a", "b") and r["response_a"] != r["response_b"]
    # A/B order is randomised: the canonically earlier variant is "a" about half the time
    first = [
        demo.VARIANTS.index(f"{r['depth_a']}-{r['style_a']}")
        < demo.VARIANTS.index(f"{r['depth_b']}-{r['style_b']}")
        for r in pairs
        if r["group"] == demo.CROWD_GROUP
    ]
    assert 0.4 < sum(first) / len(first) < 0.6


def test_crowd_rows_come_from_the_crowd_mixture(personas, persona_rows):
    crowd = persona_rows[demo.CROWD_GROUP]
    mixture = demo.crowd_mixture(personas)
    counts = Counter(r["annotator"] for r in crowd.values())
    assert set(counts) <= set(mixture)
    for pid, prob in mixture.items():
        assert counts[pid] / len(crowd) == pytest.approx(prob, abs=0.05), pid
    # a crowd row is its annotator's judgement: it agrees with that persona's own
    # row except where one of the two independent noise draws flipped
    agree = np.mean(
        [r["label"] == persona_rows[r["annotator"]][k]["label"] for k, r in crowd.items()]
    )
    assert agree > 0.75


def test_crowd_majority_suits_some_personas_and_fails_held_out_ones(
    personas, responses, persona_rows
):
    by_text = {r["text"]: r for r in responses}
    majority = {
        k: "a"
        if demo.crowd_probability(personas, by_text[r["response_a"]], by_text[r["response_b"]])
        > 0.5
        else "b"
        for k, r in persona_rows[demo.CROWD_GROUP].items()
    }
    fit = {
        p.id: np.mean([r["label"] == majority[k] for k, r in persona_rows[p.id].items()])
        for p in personas
    }
    assert max(fit[p.id] for p in personas if p.in_crowd) > 0.7
    assert min(fit[p.id] for p in personas if not p.in_crowd) < 0.5


def test_labels_match_noise_rates(personas, responses, persona_rows):
    by_text = {r["text"]: r for r in responses}
    for p in personas:
        clean = dataclasses.replace(p, noise=0.0)
        rows = persona_rows[p.id].values()
        flipped = np.mean(
            [
                demo.persona_label(
                    clean, by_text[r["response_a"]], by_text[r["response_b"]], r["pair_id"]
                )
                != r["label"]
                for r in rows
            ]
        )
        assert flipped == pytest.approx(p.noise, abs=0.035), p.id


def _share(rows, prefer, avoid):
    """Fraction of pairs won by the ``prefer`` side, among pairs pitting a variant
    in ``prefer`` against one in ``avoid`` (both predicates on (depth, style))."""
    wins = total = 0
    for r in rows.values():
        va, vb = (r["depth_a"], r["style_a"]), (r["depth_b"], r["style_b"])
        if prefer(*va) and avoid(*vb):
            wins, total = wins + (r["label"] == "a"), total + 1
        elif prefer(*vb) and avoid(*va):
            wins, total = wins + (r["label"] == "b"), total + 1
    return wins / total


def test_personas_act_on_their_stated_preferences(persona_rows):
    def depth(d, style=None):  # depth d, at a fixed style when given
        return lambda dd, ss: dd == d and style in (None, ss)

    def style(s, depth=None):  # style s, at a fixed depth when given
        return lambda dd, ss: ss == s and depth in (None, dd)

    def share_same(pid, make, x, y, axis_values):
        # x over y with the other axis held fixed, pooled over its values
        return np.mean([_share(persona_rows[pid], make(x, v), make(y, v)) for v in axis_values])

    assert _share(persona_rows["maya"], depth("child"), depth("expert")) > 0.85
    assert share_same("maya", style, "thorough", "short", demo.DEPTHS) > 0.7
    assert share_same("leo", style, "short", "thorough", demo.DEPTHS) > 0.8
    assert _share(persona_rows["leo"], depth("child"), depth("expert")) > 0.8
    assert _share(persona_rows["ada"], depth("expert"), depth("child")) > 0.85
    assert share_same("ada", style, "thorough", "short", demo.DEPTHS) > 0.8
    assert _share(persona_rows["sam"], style("short"), style("thorough")) > 0.8
    assert share_same("sam", depth, "expert", "child", demo.STYLES) > 0.8
    assert _share(persona_rows["kai"], depth("newcomer"), depth("expert")) > 0.75
    assert _share(persona_rows["nora"], depth("newcomer"), depth("child")) > 0.85
    assert _share(persona_rows["rosa"], depth("child"), depth("expert")) > 0.8


def test_feature_personas_follow_their_feature(personas, responses, persona_rows):
    by_text = {r["text"]: demo.text_features(r["text"]) for r in responses}

    def share(pid, feature, sign):
        wins = total = 0
        for r in persona_rows[pid].values():
            fa, fb = by_text[r["response_a"]][feature], by_text[r["response_b"]][feature]
            if fa != fb:
                preferred = "a" if (fa > fb) == (sign > 0) else "b"
                wins, total = wins + (r["label"] == preferred), total + 1
        return wins / total

    assert share("priya", "has_list", +1) > 0.7
    assert share("tom", "has_list", -1) > 0.7
    assert share("grace", "asks_question", +1) > 0.7
    assert share("ben", "asks_question", -1) > 0.7
    assert share("jun", "words_per_100", +1) > 0.7


def test_personas_really_differ(pairs, personas):
    ids, m = demo.agreement_matrix(pairs)
    assert ids == [p.id for p in personas]
    print("\nagreement between personas (% of pairs labelled the same):")
    print(demo.format_agreement(ids, m))
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T)
    off = m[~np.eye(len(ids), dtype=bool)]
    assert off.max() < 1.0  # no two personas identical
    assert (np.triu(m, 1)[np.triu_indices(len(ids), 1)] < 0.6).sum() >= 2  # >40% disagreement
    # the conflicting pairs the README names really conflict
    at = {pid: i for i, pid in enumerate(ids)}
    for x, y in [("leo", "ada"), ("maya", "sam"), ("priya", "tom"), ("grace", "ben")]:
        assert m[at[x], at[y]] < 0.5, (x, y, m[at[x], at[y]])


def test_readme_shows_the_measured_agreement_matrix(pairs, personas):
    readme = (demo.DEMO_DIR / "README.md").read_text(encoding="utf-8")
    assert demo.format_agreement(*demo.agreement_matrix(pairs)) in readme
    for p in personas:
        assert f"`{p.id}`" in readme
    assert "python -m hyre_engine demo-data" in readme
