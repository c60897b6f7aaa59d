"""The demo pool, its simulated users, and the bootstrap that builds it for the app.

The pool (``data/demo/responses.jsonl``) answers each prompt six ways: three
depths (child / newcomer / expert) x two styles (short / thorough). Personas
(``data/demo/personas.json``) are simulated users with an explicit linear
utility over a response::

    u(r) = depth[r.depth] + style[r.style] + sum_f features[f] * text_features(r.text)[f]

A persona prefers the response with the higher utility (exact ties: a seeded
coin), then its answer is flipped with probability ``noise``. All randomness
comes from hashing (persona id, pair id, purpose), so every label is
reproducible and independent of file order.

``generate_pairs`` labels every unordered pair of responses to the same prompt
once per persona (``group`` = persona id) and once by the training crowd
(``group`` = ``"crowd"``, ``annotator`` = the persona drawn from the crowd's
mixture for that pair). ``data/demo/pairs.jsonl`` is its committed output.

The files are authored in ``data/demo`` and ship inside the package as
``hyre_engine/demo_data`` (a link to that folder in the repository, real files in
the wheel), so an installed package finds them without a source checkout.
``ensure_demo`` imports the pool into a store and builds its ensemble.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Package data next to this file: found from any cwd, in a checkout or an installed wheel.
DEMO_DIR = Path(__file__).resolve().parent / "demo_data"
RESPONSES_FILE = DEMO_DIR / "responses.jsonl"
PERSONAS_FILE = DEMO_DIR / "personas.json"
PAIRS_FILE = DEMO_DIR / "pairs.jsonl"

# The two axes the demo users disagree on (in the spirit of the paper's ELIX data);
# the order is the canonical variant order used for pair ids.
DEPTHS = ("child", "newcomer", "expert")
STYLES = ("short", "thorough")
VARIANTS = tuple(f"{d}-{s}" for d in DEPTHS for s in STYLES)

# Word limits of the two styles, far enough apart that length alone tells them apart:
# short <= 45 words, thorough 80-160.
SHORT_MAX_WORDS = 45
THOROUGH_MIN_WORDS = 80
THOROUGH_MAX_WORDS = 160

# Label noise a persona may carry: up to 15%, as noisy as real annotators tend to be
# while a persona's taste still shows in a handful of labels.
MAX_NOISE = 0.15

# The group (and pair-file value) of the training crowd's rows.
CROWD_GROUP = "crowd"

# Salt of every hash draw; bump it only to deliberately re-draw all labels.
SEED_SALT = "hyre-demo-v1"

# Two utilities closer than this are a tie (float sums of the same weights).
TIE_TOLERANCE = 1e-9

RESPONSE_KEYS = ("prompt_id", "topic", "prompt", "depth", "style", "text")
PERSONA_KEYS = (
    "id",
    "name",
    "description",
    "summary",
    "depth",
    "style",
    "features",
    "noise",
    "in_crowd",
)

# A word is a whitespace token with a letter or digit in it: list bullets ("-",
# "*") and dashes are not words.
_WORD_RE = re.compile(r"\S*[^\W_]\S*")
# A list line: "- x", "* x", "• x", "1. x" or "1) x".
_LIST_LINE_RE = re.compile(r"^\s*(?:[-*\u2022]\s+|\d+[.)]\s+)\S", re.MULTILINE)
# Phrases that introduce an example or a picture to hold on to.
_EXAMPLE_RE = re.compile(
    r"\bexamples?\b|for instance|e\.g\.|such as|\bimagine\b|\bpicture\b|think of",
    re.IGNORECASE,
)

# Measured text features a persona may weigh, each with what it measures.
FEATURES = {
    "words_per_100": "word count / 100 (a 120-word answer scores 1.2)",
    "has_list": "1 if some line is a list item ('- ', '* ', '1.', '1)'), else 0",
    "asks_question": "1 if the text ends with '?', else 0",
    "has_example": (
        "1 if it gives an example: 'example', 'for instance', 'e.g.', 'such as', "
        "'imagine', 'picture' or 'think of', else 0"
    ),
}


def count_words(text: str) -> int:
    """Number of words: whitespace tokens holding a letter or digit."""
    return len(_WORD_RE.findall(text))


def text_features(text: str) -> dict[str, float]:
    """The measured features of ``text`` (keys: ``FEATURES``)."""
    return {
        "words_per_100": count_words(text) / 100.0,
        "has_list": float(_LIST_LINE_RE.search(text) is not None),
        "asks_question": float(text.rstrip().endswith("?")),
        "has_example": float(_EXAMPLE_RE.search(text) is not None),
    }


# --------------------------------------------------------------------------- responses


def variant(response: Mapping[str, str]) -> str:
    """The variant name of a response, e.g. ``"child-short"``."""
    return f"{response['depth']}-{response['style']}"


def response_problems(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Every way ``rows`` breaks the pool's contract (empty list: valid).

    Checks keys, depth/style names, word limits, duplicate variants and texts,
    one topic and prompt per prompt id, and all six variants per prompt.
    """
    problems: list[str] = []
    seen_variants: dict[tuple[str, str], int] = {}
    seen_texts: dict[str, int] = {}
    prompt_info: dict[str, tuple[object, object]] = {}
    variants_of: dict[str, set[str]] = {}
    for i, row in enumerate(rows):
        where = f"row {i} ({row.get('prompt_id', '?')})"
        missing = [k for k in RESPONSE_KEYS if k not in row]
        if missing:
            problems.append(f"{where}: missing keys {missing}")
            continue
        bad = [k for k in RESPONSE_KEYS if not isinstance(row[k], str) or not row[k].strip()]
        if bad:
            problems.append(f"{where}: empty or non-string {bad}")
            continue
        depth, style, text = row["depth"], row["style"], row["text"]
        if depth not in DEPTHS:
            problems.append(f"{where}: unknown depth {depth!r}; valid: {list(DEPTHS)}")
            continue
        if style not in STYLES:
            problems.append(f"{where}: unknown style {style!r}; valid: {list(STYLES)}")
            continue
        pid = row["prompt_id"]
        name = f"{depth}-{style}"
        where = f"{pid} {name}"
        if (pid, name) in seen_variants:
            problems.append(f"{where}: duplicate variant (rows {seen_variants[(pid, name)]}, {i})")
        seen_variants[(pid, name)] = i
        norm = " ".join(text.split()).lower()
        if norm in seen_texts:
            problems.append(f"{where}: same text as row {seen_texts[norm]}")
        seen_texts[norm] = i
        info = (row["topic"], row["prompt"])
        if prompt_info.setdefault(pid, info) != info:
            problems.append(f"{where}: topic/prompt differ from the prompt's first row")
        variants_of.setdefault(pid, set()).add(name)
        n = count_words(text)
        if style == "short" and n > SHORT_MAX_WORDS:
            problems.append(f"{where}: {n} words > {SHORT_MAX_WORDS}")
        if style == "thorough" and not THOROUGH_MIN_WORDS <= n <= THOROUGH_MAX_WORDS:
            problems.append(
                f"{where}: {n} words outside [{THOROUGH_MIN_WORDS}, {THOROUGH_MAX_WORDS}]"
            )
    for pid, names in variants_of.items():
        absent = [v for v in VARIANTS if v not in names]
        if absent:
            problems.append(f"{pid}: missing variants {absent}")
    return problems


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from exc
    return rows


def load_responses(path: str | Path | None = None, *, validate: bool = True) -> list[dict]:
    """The pool's responses (keys ``RESPONSE_KEYS``), validated unless told not to."""
    path = RESPONSES_FILE if path is None else Path(path)
    rows = read_jsonl(path)
    if validate:
        problems = response_problems(rows)
        if problems:
            shown = "; ".join(problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise ValueError(f"{path}: {len(problems)} problems: {shown}{more}")
    return rows


# --------------------------------------------------------------------------- personas


@dataclass(frozen=True)
class Persona:
    """A simulated user: a linear utility over depth, style and text features.

    ``depth``/``style``/``features`` map names to weights (absent names weigh 0);
    ``crowd_weight`` is the persona's relative share of the training crowd.
    """

    id: str
    name: str
    description: str
    summary: str
    depth: dict[str, float]
    style: dict[str, float]
    features: dict[str, float]
    noise: float
    in_crowd: bool
    crowd_weight: float = 0.0


def _weights(raw: object, valid: Iterable[str], pid: str, field: str) -> dict[str, float]:
    valid = tuple(valid)
    if not isinstance(raw, dict):
        raise ValueError(f"persona {pid!r}: field {field!r} must be an object of weights")
    out = {}
    for key, value in raw.items():
        if key not in valid:
            raise ValueError(
                f"persona {pid!r}: field {field!r} has unknown name {key!r}; valid: {list(valid)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"persona {pid!r}: field {field!r}[{key!r}] must be a finite number")
        out[key] = float(value)
    return out


def parse_personas(doc: Mapping[str, object]) -> list[Persona]:
    """Personas from the parsed ``personas.json`` document, validated.

    Raises ValueError naming the persona and field for missing keys, unknown
    depth/style/feature names, noise outside [0, MAX_NOISE], duplicate ids or a
    crowd weight that does not match ``in_crowd``.
    """
    raw_list = doc.get("personas") if isinstance(doc, Mapping) else None
    if not isinstance(raw_list, list) or not raw_list:
        raise ValueError("personas file: needs a non-empty list under 'personas'")
    personas: list[Persona] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_list):
        persona = _parse_persona(raw, i)
        if persona.id in seen:
            raise ValueError(f"persona {persona.id!r}: field 'id' is duplicated")
        seen.add(persona.id)
        personas.append(persona)
    if not any(p.in_crowd for p in personas):
        raise ValueError("personas file: no persona is in the crowd")
    return personas


def _parse_persona(raw: object, i: int) -> Persona:
    """One persona (the ``i``-th in the file) checked field by field."""
    if not isinstance(raw, dict):
        raise ValueError(f"persona #{i}: must be an object")
    pid = raw.get("id", f"#{i}")
    for key in PERSONA_KEYS:
        if key not in raw:
            raise ValueError(f"persona {pid!r}: missing field {key!r}")
    for key in ("id", "name", "description", "summary"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ValueError(f"persona {pid!r}: field {key!r} must be a non-empty string")
    if pid == CROWD_GROUP:
        raise ValueError(f"persona {pid!r}: field 'id' is reserved for the crowd's rows")
    noise = raw["noise"]
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise <= MAX_NOISE:
        raise ValueError(f"persona {pid!r}: field 'noise' must be in [0, {MAX_NOISE}], got {noise!r}")
    if not isinstance(raw["in_crowd"], bool):
        raise ValueError(f"persona {pid!r}: field 'in_crowd' must be true or false")
    return Persona(
        id=pid,
        name=raw["name"],
        description=raw["description"],
        summary=raw["summary"],
        depth=_weights(raw["depth"], DEPTHS, pid, "depth"),
        style=_weights(raw["style"], STYLES, pid, "style"),
        features=_weights(raw["features"], FEATURES, pid, "features"),
        noise=float(noise),
        in_crowd=raw["in_crowd"],
        crowd_weight=_crowd_weight(raw, pid),
    )


def _crowd_weight(raw: dict, pid: str) -> float:
    """A finite crowd weight, > 0 exactly when the persona is in the crowd."""
    weight = raw.get("crowd_weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise ValueError(f"persona {pid!r}: field 'crowd_weight' must be a finite number")
    if raw["in_crowd"] and weight <= 0:
        raise ValueError(f"persona {pid!r}: field 'crowd_weight' must be > 0 when in_crowd")
    if not raw["in_crowd"] and weight != 0:
        raise ValueError(f"persona {pid!r}: field 'crowd_weight' must be 0 when not in_crowd")
    return float(weight)


def load_personas(path: str | Path | None = None) -> list[Persona]:
    """The personas of ``personas.json`` (default: the demo's), validated."""
    path = PERSONAS_FILE if path is None else Path(path)
    with open(path, encoding="utf-8") as f:
        return parse_personas(json.load(f))


def crowd_mixture(personas: Sequence[Persona]) -> dict[str, float]:
    """Persona id -> probability of being drawn for a crowd row (sums to 1)."""
    total = sum(p.crowd_weight for p in personas if p.in_crowd)
    if total <= 0:
        raise ValueError("crowd_mixture: no persona is in the crowd")
    return {p.id: p.crowd_weight / total for p in personas if p.in_crowd}


# --------------------------------------------------------------------------- labels


def _uniform(*key: str) -> float:
    """A reproducible draw in [0, 1) from a hash of ``key``."""
    digest = hashlib.sha256("|".join((SEED_SALT, *key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def utility(persona: Persona, response: Mapping[str, str]) -> float:
    """The persona's utility of one response (depth + style + feature weights)."""
    feats = text_features(response["text"])
    value = persona.depth.get(response["depth"], 0.0) + persona.style.get(response["style"], 0.0)
    return value + sum(w * feats[name] for name, w in persona.features.items())


def persona_label(
    persona: Persona,
    resp_a: Mapping[str, str],
    resp_b: Mapping[str, str],
    pair_id: str,
    *,
    occasion: str = "own",
) -> str:
    """``"a"`` or ``"b"``: the persona's (noisy) choice on this pair.

    ``occasion`` keys the noise draw: the persona's own rows and its crowd rows
    are separate judgements, so their flips are independent.
    """
    u_a, u_b = utility(persona, resp_a), utility(persona, resp_b)
    if abs(u_a - u_b) <= TIE_TOLERANCE:
        prefers_a = _uniform("tie", persona.id, pair_id, occasion) < 0.5
    else:
        prefers_a = u_a > u_b
    if _uniform("noise", persona.id, pair_id, occasion) < persona.noise:
        prefers_a = not prefers_a
    return "a" if prefers_a else "b"


def preference_probability(
    persona: Persona, resp_a: Mapping[str, str], resp_b: Mapping[str, str]
) -> float:
    """Probability that the persona labels A (its noise included; a tie is 0.5)."""
    u_a, u_b = utility(persona, resp_a), utility(persona, resp_b)
    if abs(u_a - u_b) <= TIE_TOLERANCE:
        return 0.5
    return 1.0 - persona.noise if u_a > u_b else persona.noise


def crowd_probability(
    personas: Sequence[Persona], resp_a: Mapping[str, str], resp_b: Mapping[str, str]
) -> float:
    """Probability that a crowd row on this pair says A: the mixture of its personas.

    A model fitted perfectly to the crowd predicts A when this is above 0.5.
    """
    by_id = {p.id: p for p in personas}
    return sum(
        w * preference_probability(by_id[pid], resp_a, resp_b)
        for pid, w in crowd_mixture(personas).items()
    )


def crowd_annotator(mixture: Mapping[str, float], pair_id: str) -> str:
    """The persona id the crowd draws for ``pair_id`` (inverse CDF of a hash draw)."""
    u = _uniform("crowd", pair_id)
    cumulative = 0.0
    for pid, prob in mixture.items():
        cumulative += prob
        if u < cumulative:
            return pid
    return next(reversed(mixture))  # u within rounding of 1


def generate_pairs(
    responses: Sequence[Mapping[str, str]], personas: Sequence[Persona]
) -> list[dict]:
    """Preference rows: every pair of responses to a prompt, per persona and by the crowd.

    Rows follow the preference file format of ``data.py`` (pair_id, prompt, response_a,
    response_b, label, group, annotator) plus metadata (prompt_id, topic,
    depth_a, style_a, depth_b, style_b). Pairs come in prompt order of first
    appearance; per pair, one row per persona (file order) then the crowd row.
    A/B order is a per-pair hash coin, so "a" is not always the same variant.
    """
    by_prompt: dict[str, dict[str, Mapping[str, str]]] = {}
    for r in responses:
        by_prompt.setdefault(r["prompt_id"], {})[variant(r)] = r
    mixture = crowd_mixture(personas)
    by_id = {p.id: p for p in personas}
    rows: list[dict] = []
    for pid, variants in by_prompt.items():
        present = [v for v in VARIANTS if v in variants]
        for v1, v2 in itertools.combinations(present, 2):
            pair_id = f"{pid}:{v1}~{v2}"
            a, b = variants[v1], variants[v2]
            if _uniform("order", pair_id) < 0.5:
                a, b = b, a
            base = {
                "pair_id": pair_id,
                "prompt_id": pid,
                "topic": a["topic"],
                "prompt": a["prompt"],
                "response_a": a["text"],
                "response_b": b["text"],
                "depth_a": a["depth"],
                "style_a": a["style"],
                "depth_b": b["depth"],
                "style_b": b["style"],
            }
            for p in personas:
                label = persona_label(p, a, b, pair_id)
                rows.append({**base, "label": label, "group": p.id, "annotator": p.id})
            drawn = crowd_annotator(mixture, pair_id)
            label = persona_label(by_id[drawn], a, b, pair_id, occasion=CROWD_GROUP)
            rows.append({**base, "label": label, "group": CROWD_GROUP, "annotator": drawn})
    return rows


def pairs_to_jsonl(rows: Iterable[Mapping[str, object]]) -> str:
    """The exact text of a pairs file: one compact JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def build_pairs_text(
    *, responses_path: str | Path | None = None, personas_path: str | Path | None = None
) -> str:
    """What ``pairs.jsonl`` should contain, generated from the two source files."""
    return pairs_to_jsonl(
        generate_pairs(load_responses(responses_path), load_personas(personas_path))
    )


# --------------------------------------------------------------------------- analysis


def agreement_matrix(
    pairs: Sequence[Mapping[str, object]], *, include_crowd: bool = False
) -> tuple[list[str], np.ndarray]:
    """How often each two groups give the same label on the pairs they share.

    Returns (ids, M): ids are the groups in order of first appearance (the crowd
    only when ``include_crowd``), M has shape (n_ids, n_ids), M[i, j] = fraction
    of shared pair_ids with equal labels (NaN when they share none).
    """
    labels: dict[str, dict[str, str]] = {}
    for row in pairs:
        group = str(row["group"])
        if include_crowd or group != CROWD_GROUP:
            labels.setdefault(group, {})[str(row["pair_id"])] = str(row["label"])
    ids = list(labels)
    matrix = np.full((len(ids), len(ids)), np.nan)
    for i, gi in enumerate(ids):
        for j, gj in enumerate(ids):
            shared = labels[gi].keys() & labels[gj].keys()
            if shared:
                same = sum(labels[gi][k] == labels[gj][k] for k in shared)
                matrix[i, j] = same / len(shared)
    return ids, matrix


def format_agreement(ids: Sequence[str], matrix: np.ndarray) -> str:
    """A markdown table of the agreement matrix in percent."""
    n = len(ids)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix has shape {matrix.shape}, expected ({n}, {n}) for {n} ids")
    lines = ["| | " + " | ".join(ids) + " |", "|---" * (n + 1) + "|"]
    for gi, row in zip(ids, matrix, strict=True):
        cells = ["-" if not np.isfinite(v) else f"{100 * v:.0f}" for v in row]
        lines.append(f"| **{gi}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- bootstrap

DEMO_POOL_NAME = "demo"
# The demo ensemble trains on the crowd's labels only: the personas held out of
# the crowd are users it never saw on their own.
DEMO_TRAIN_GROUPS = [CROWD_GROUP]
# The demo ensemble's frozen-prior scale. With 7 crowd annotators and heads on 20% of them,
# prior scale 1 leaves 24 distinct head functions of 100 (heads correlating > 0.98 count
# once); 10 keeps all 100 distinct at the same held-out persona accuracy (docs/results.md,
# "Heads that do not collapse", bench/eval_personal.py).
DEMO_PRIOR_SCALE = 10.0
# The persona the Label page's persona mode opens on. It is held out of the crowd, like
# four others; of those five it shows the method best in one minute (measured with
# bench/eval_presenter_personas.py, every persona's figures in docs/results.md, "Which
# persona the demo opens on"): 56.8% for the uniform ensemble, 77.9% for HyRe + personal
# head after 10 labels, above the best single head (74.6%). Ben and Tom barely move
# (the heads do not hold them); they stay one click away in the picker.
DEMO_PRESENTER_PERSONA = "jun"


def ensure_demo(store, *, config=None, backbone=None, pairs_path: Path | None = None, progress=None,
                defer_calibration: bool = False):
    """Import the shipped demo pool if needed and build its ensemble and Z (cached).

    Returns the ``pipeline.BuildReport``; ``config`` defaults to a BuildConfig that
    trains on DEMO_TRAIN_GROUPS with DEMO_PRIOR_SCALE. ``defer_calibration`` as in
    ``pipeline.build_pool`` (the app's first launch calibrates in the background).
    """
    # The build stack (torch, duckdb) is imported here: the rest of this module is
    # numpy only, for the app's persona panels and the demo-data command.
    from hyre_engine.pipeline import BuildConfig, build_pool

    pool_id = import_demo_pool(store, pairs_path=pairs_path)
    config = config or BuildConfig(train_groups=DEMO_TRAIN_GROUPS, prior_scale=DEMO_PRIOR_SCALE)
    return build_pool(store, pool_id, config, backbone=backbone, progress=progress,
                      defer_calibration=defer_calibration)


def needs_build(store) -> bool:
    """Whether the demo still needs its first build: no ensemble HyRe can reweight has head
    predictions cached for every pair of the demo pool (a fresh install, or an interrupted
    first build). A store without a demo pool but with other built pools needs none."""
    ensembles = store.reweightable_ensembles()
    if ensembles.empty:
        return True
    pools = store.list_pools()
    demo = pools[pools["name"] == DEMO_POOL_NAME]
    if demo.empty:
        return False
    pool = store.get_pool(demo["pool_id"].iloc[0])
    for ensemble_id in ensembles.loc[ensembles["pool_id"] == pool.pool_id, "ensemble_id"]:
        logits = store.get_head_predictions(ensemble_id, pool.pool_id)
        if logits is not None and logits.shape[0] == pool.n_pairs:
            return False
    return True


def import_demo_pool(store, *, pairs_path: Path | None = None) -> str:
    """The demo pool's id, importing the shipped pairs file first if the store has no demo pool."""
    from hyre_engine.data import read_preferences

    pools = store.list_pools()
    if len(pools) and DEMO_POOL_NAME in set(pools["name"]):
        return store.get_pool(DEMO_POOL_NAME).pool_id
    path = pairs_path or PAIRS_FILE
    return store.add_pool(DEMO_POOL_NAME, read_preferences(path), source=str(path))
