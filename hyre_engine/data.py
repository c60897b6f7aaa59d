"""Preference files in, validated: one canonical table of pairwise judgements.

Every reader returns a pandas DataFrame with the columns

    pair_id, prompt, response_a, response_b, label, group, annotator, <metadata...>

one row per judgement; ``label`` is "a" or "b" (the preferred response).
Inputs (the project's own file format and three converters):

- ``design``: JSONL, JSON (a list of objects), CSV or Parquet with ``prompt`` and
  either ``response_a``/``response_b``/``label`` or ``chosen``/``rejected``.
  ``group`` defaults to ``DEFAULT_GROUP`` ("all"), ``annotator`` to the group,
  ``pair_id`` to a hash of the prompt and the unordered responses. Labels are
  case-insensitive ("A" reads as "a"). Other columns are kept as metadata.
- ``hh-rlhf``: ``{"chosen": transcript, "rejected": transcript}`` with
  transcripts ``\\n\\nHuman: ...\\n\\nAssistant: ...``; see `split_hh_transcript`.
- ``llmbar``: a list of ``{"input", "output_1", "output_2", "label": 1 | 2}``.
- ``ratings``: one row per (user, item, rating, item text); each user's ratings
  become preference pairs over items the user rated differently (the higher
  rated item is preferred), ``group = annotator = user``.

**A/B order.** The chosen/rejected form (and HH-RLHF, and ratings) would put
the preferred response always first, which a model could learn as a position
bias. Each pair's order is therefore drawn from a seeded hash of its pair_id:
deterministic, about half the labels are "b", and every row of the same pair
gets the same order. Rows of one pair_id given in opposite A/B orders are
flipped (label too) to the first row's order, so a pair_id always names one
(prompt, response_a, response_b).

**Cleaning.** NUL and other C0 control characters (tab, newline and carriage
return kept) and the Unicode bidirectional embedding, override and isolate
controls (U+202A-U+202E, U+2066-U+2069, which can make a text display
differently from what it says) are removed from every text and name; a pair
whose A and B texts are then identical carries no preference and is dropped.
The counts are in ``frame.attrs["cleaned"]`` (`CLEAN_KEYS`) for the caller to show.

**JSON** is refused past `MAX_JSON_DEPTH` levels of nesting (a RecursionError
never escapes), and an integer too long for Python to convert
is an error naming the file and line.

**Errors** are `DataError` (a ValueError) naming the file, the row and the
column. ``row`` is the 1-based line for JSONL and CSV (the CSV header is line
1; a quoted field spanning lines counts from the record's first line) and the
1-based record number for JSON lists and Parquet.

This module reads Parquet with pyarrow and CSV with the csv module: only
store.py imports duckdb.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from hyre_engine.numerics import PAIR_LABELS

# Uploads and imports beyond this are refused before parsing (the app has its own limit).
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
# The group of rows that name none: the whole file is one target distribution.
DEFAULT_GROUP = "all"
# Seed of the A/B order drawn per pair_id (see the module docstring).
AB_SEED = 0
# Ratings: a user with n rated items has up to n(n-1)/2 pairs (1225 for POPQUORN's
# 50 texts); 100 is plenty for accuracy-vs-n at n <= 20 plus a held-out test.
DEFAULT_MAX_PAIRS_PER_USER = 100
# Ratings: the prompt of every derived pair (POPQUORN: "Which text is more offensive?").
DEFAULT_QUESTION = "Which text do you rate higher?"
# Transcript marker of an assistant turn in HH-RLHF.
HH_ASSISTANT = "\n\nAssistant:"

# Preference records are flat; anything nested deeper than this is not a pool file
# and would exhaust the parser's recursion (Python's own limit is about 1000 frames).
MAX_JSON_DEPTH = 64
# Characters removed from texts and names (see the module docstring).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# What cleaning counts: rows with control characters removed, rows with bidi
# controls removed, rows dropped because A and B were the same text.
CLEAN_KEYS = ("control_characters", "bidi_controls", "identical_pairs")

# A preference frame must have these (never missing) and may have those; any other
# column is metadata, kept per row.
REQUIRED_COLUMNS = ("pair_id", "prompt", "response_a", "response_b")
OPTIONAL_COLUMNS = ("label", "group", "annotator")
CANONICAL_COLUMNS = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
# How many offending values an error message names: enough to find them, short enough to read.
MAX_NAMED_IN_ERROR = 5
FORMATS = ("auto", "design", "hh-rlhf", "llmbar", "ratings")
AB_COLUMNS = ("response_a", "response_b", "label")
CR_COLUMNS = ("chosen", "rejected")
LLMBAR_COLUMNS = ("input", "output_1", "output_2", "label")

_MISSING = object()


class DataError(ValueError):
    """Bad input, located: ``path``, ``row`` (see the module docstring) and ``column``."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
        unit: str = "row",
    ) -> None:
        self.path, self.row, self.column, self.reason = path, row, column, message
        where = [str(path or "<data>")]
        if row is not None:
            where.append(f"{unit} {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass
class _Source:
    """Parsed records and where each came from, for error messages."""

    path: str
    records: list[dict]
    rows: list[int]  # the row number of each record
    unit: str  # "line" or "record"
    columns: list[str] = field(default_factory=list)  # union of keys, first seen first
    cleaned: dict[str, set[int]] = field(default_factory=dict)  # CLEAN_KEYS -> record indices

    def error(self, message: str, *, index: int | None = None, column: str | None = None) -> DataError:
        row = self.rows[index] if index is not None else None
        return DataError(message, path=self.path, row=row, column=column, unit=self.unit)


# --- reading bytes ------------------------------------------------------------------


def read_preferences(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    format: str = "auto",
    filename: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    **options: Any,
) -> pd.DataFrame:
    """Read a preference file (path, bytes or binary file-like) into the canonical table.

    ``format``: one of `FORMATS`; "auto" picks by extension (.jsonl, .json, .csv,
    .parquet, each optionally .gz) and columns. ``filename`` names bytes or a
    file object (else its ``name``). ``options``: ``group`` (default group name),
    ``seed`` (A/B order), and for ratings ``user_col``, ``item_col``,
    ``rating_col``, ``text_col``, ``question``, ``max_pairs_per_user``.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    data, name = _read_bytes(source, filename=filename, max_bytes=max_bytes)
    parsed = _parse(data, name, max_bytes=max_bytes)
    return _convert(parsed, format=format, **options)


def read_preferences_bytes(data: bytes, filename: str, **kwargs: Any) -> pd.DataFrame:
    """`read_preferences` for an upload: ``filename`` gives the format and names errors."""
    return read_preferences(data, filename=filename, **kwargs)


def preferences_from_records(
    records: Iterable[dict], *, format: str = "auto", name: str = "<records>", **options: Any
) -> pd.DataFrame:
    """The canonical table from in-memory records (dicts), with the same checks as a file."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    records = list(records)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"expected an object, got {type(rec).__name__}", path=name, row=i + 1, unit="record")
    parsed = _with_columns(_Source(name, records, list(range(1, len(records) + 1)), "record"))
    if not records:
        raise parsed.error("no rows")
    return _convert(parsed, format=format, **options)


def _read_bytes(source: Any, *, filename: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        name = filename or "<bytes>"
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        name = filename or str(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {str(path)!r}")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"file is {size:,} bytes, over the limit of {max_bytes:,} bytes", path=name)
        data = path.read_bytes()
    elif hasattr(source, "read"):
        name = filename or str(getattr(source, "name", "<upload>"))
        data = source.read(max_bytes + 1)
        if isinstance(data, str):
            raise TypeError(f"{name}: open the file in binary mode ('rb')")
    else:
        raise TypeError(f"cannot read preferences from {type(source).__name__}")
    if len(data) > max_bytes:
        raise DataError(f"file is over the limit of {max_bytes:,} bytes", path=name)
    if name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = _gunzip(data, name, max_bytes)
    return data, name


def _gunzip(data: bytes, name: str, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(max_bytes + 1)  # bounded: a small .gz may inflate enormously
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"not a readable gzip file ({exc})", path=name) from exc
    if len(out) > max_bytes:
        raise DataError(f"decompressed data is over the limit of {max_bytes:,} bytes", path=name)
    return out


def _kind(data: bytes, name: str) -> str:
    lower = name.lower().removesuffix(".gz")
    for ext, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv"),
                      (".parquet", "parquet"), (".pq", "parquet")):
        if lower.endswith(ext):
            return kind
    if data[:4] == b"PAR1":
        return "parquet"
    head = data.lstrip()[:1]
    return {b"[": "json", b"{": "jsonl"}.get(head, "csv")


def _parse(data: bytes, name: str, *, max_bytes: int) -> _Source:
    kind = _kind(data, name)
    if not data.strip():
        raise DataError("the file is empty", path=name)
    if kind == "parquet":
        parsed = _parse_parquet(data, name)
    else:
        text = _decode(data, name)
        if kind == "json":
            parsed = _parse_json(text, name)
        elif kind == "jsonl":
            parsed = _parse_jsonl(text, name)
        else:
            parsed = _parse_csv(text, name)
    if not parsed.records:
        raise DataError("no rows (only a header or blank lines)", path=name)
    return parsed


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8",
            path=name, row=line, unit="line",
        ) from exc


def _parse_jsonl(text: str, name: str) -> _Source:
    records, rows = [], []
    # split on "\n" only: str.splitlines would also split inside strings at U+2028
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        rec = _json_value(line, name, lineno)
        if not isinstance(rec, dict):
            raise DataError(f"expected a JSON object, got {type(rec).__name__}", path=name, row=lineno, unit="line")
        records.append(rec)
        rows.append(lineno)
    return _with_columns(_Source(name, records, rows, "line"))


_CONTAINERS = (dict, list)  # what json.loads nests


def json_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counting no further than limit + 1.

    Iterative: a hostile document cannot exhaust the stack here.
    """
    if type(value) not in _CONTAINERS:
        return 0
    deepest, level, frontier = 0, 0, [value]
    while frontier:  # breadth first, one level at a time
        level += 1
        if level > limit:
            return level
        deepest = level
        nested = []
        for node in frontier:
            children = node.values() if type(node) is dict else node
            nested.extend([c for c in children if type(c) in _CONTAINERS])
        frontier = nested
    return deepest


def loads_json(text: str | bytes, *, name: str = "<json>", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that fails only with a `DataError` naming ``name`` (and the line).

    Refuses nesting deeper than ``max_depth``, integers too long to convert and
    malformed JSON: for profile documents as much as for pool files.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON: {exc.msg} (char {exc.colno})", path=name, row=exc.lineno,
                        unit="line") from None
    except RecursionError:
        raise DataError(f"JSON nested more than {max_depth} levels deep (the limit)", path=name) from None
    except ValueError as exc:
        # int("9" * 5000) is refused by Python's integer-string limit (a ValueError)
        reason = "an integer with too many digits" if "digits" in str(exc) else str(exc)
        raise DataError(f"unreadable JSON value ({reason})", path=name, row=_int_line(text),
                        unit="line") from None
    if json_depth(value, limit=max_depth) > max_depth:
        raise DataError(f"JSON nested more than {max_depth} levels deep (the limit)", path=name)
    return value


def _int_line(text: str | bytes) -> int | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    m = re.search(r"\d{4000,}", text)  # CPython refuses integers of more than 4300 digits
    return text.count("\n", 0, m.start()) + 1 if m else None


def _json_value(line: str, name: str, lineno: int) -> Any:
    try:
        return loads_json(line, name=name)
    except DataError as exc:
        raise DataError(exc.reason, path=name, row=lineno, unit="line") from None


def _parse_json(text: str, name: str) -> _Source:
    try:
        value = loads_json(text, name=name)
    except DataError as exc:
        if exc.reason.startswith("malformed JSON: Extra data"):  # one object per line in a .json file
            return _parse_jsonl(text, name)
        raise
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise DataError(f"expected a list of objects, got {type(value).__name__}", path=name)
    for i, rec in enumerate(value):
        if not isinstance(rec, dict):
            raise DataError(f"expected an object, got {type(rec).__name__}", path=name, row=i + 1, unit="record")
    return _with_columns(_Source(name, value, list(range(1, len(value) + 1)), "record"))


def _parse_csv(text: str, name: str) -> _Source:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("the file is empty", path=name) from None
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=name, row=1, unit="line") from exc
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError("duplicate column name in the header", path=name, row=1, column=dupes[0], unit="line")
    records, rows = [], []
    start = reader.line_num + 1
    try:
        for values in reader:
            line, start = start, reader.line_num + 1
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            if len(values) != len(header):
                raise DataError(f"expected {len(header)} fields, found {len(values)}", path=name, row=line, unit="line")
            records.append(dict(zip(header, values, strict=True)))
            rows.append(line)
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=name, row=reader.line_num, unit="line") from exc
    return _Source(name, records, rows, "line", columns=header)


def _parse_parquet(data: bytes, name: str) -> _Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
        records = table.to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=name) from exc
    return _Source(name, records, list(range(1, len(records) + 1)), "record", columns=list(table.column_names))


def _with_columns(src: _Source) -> _Source:
    seen: dict[str, None] = {}
    for rec in src.records:
        for key in rec:
            seen.setdefault(key, None)
    src.columns = list(seen)
    return src


# --- cell checks --------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(src: _Source, i: int, column: str, *, allow_empty: bool = False) -> str:
    value = src.records[i].get(column, _MISSING)
    if value is _MISSING:
        raise src.error(f"missing column '{column}' in this row", index=i, column=column)
    if _is_null(value):
        raise src.error("missing value (null / NaN)", index=i, column=column)
    if not isinstance(value, str):
        raise src.error(f"expected text, got {type(value).__name__} {value!r:.40}", index=i, column=column)
    value = _clean(src, i, value)
    if not allow_empty and not value.strip():
        raise src.error("empty text", index=i, column=column)
    return value


def _clean(src: _Source, i: int, value: str) -> str:
    """``value`` without control and bidi characters, counting the record if it had any."""
    for key, pattern in (("control_characters", _CONTROL), ("bidi_controls", _BIDI)):
        value, n = pattern.subn("", value)
        if n:
            src.cleaned.setdefault(key, set()).add(i)
    return value


def _key(src: _Source, i: int, column: str, default: str | None) -> str | None:
    """An id-like cell (group, annotator, pair_id, user, item) as a string; blank -> default."""
    value = src.records[i].get(column)
    if _is_null(value) or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float | np.integer | np.floating):
        raise src.error(f"expected a name or number, got {type(value).__name__}", index=i, column=column)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)  # 3.0 from a float column names the same user as 3
    text = _clean(src, i, str(value)).strip()
    return text or default


def _require(src: _Source, columns: Iterable[str], what: str) -> None:
    for column in columns:
        if column not in src.columns:
            have = ", ".join(src.columns) or "none"
            raise src.error(f"missing column '{column}' ({what}; the file has: {have})", column=column)


def _hash(*parts: str, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:n]


def content_pair_id(prompt: str, response_1: str, response_2: str) -> str:
    """A stable pair_id from the prompt and the unordered pair of responses."""
    low, high = sorted((response_1, response_2))
    return "p-" + _hash(prompt, low, high)


def a_first(pair_id: str, seed: int = AB_SEED) -> bool:
    """Whether a pair keeps its canonical (sorted) order as A, B: a seeded coin per pair_id."""
    return hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()[0] & 1 == 0


def _orient(pair_id: str, chosen: str, rejected: str, seed: int) -> tuple[str, str, str]:
    """(response_a, response_b, label) for a chosen/rejected pair, A/B order drawn per pair_id."""
    first, second = sorted((chosen, rejected))
    a, b = (first, second) if a_first(pair_id, seed) else (second, first)
    return a, b, "a" if a == chosen else "b"


# --- formats ------------------------------------------------------------------------


@dataclass
class _Row:
    index: int  # into src.records, for errors
    pair_id: str
    prompt: str
    a: str
    b: str
    label: str
    group: str
    annotator: str
    extras: dict


def _convert(src: _Source, *, format: str, **options: Any) -> pd.DataFrame:
    if format == "auto":
        format = detect_format(src.columns, src.records[0], **{
            k: v for k, v in options.items() if k in ("user_col", "item_col", "rating_col")
        })
    seed = int(options.pop("seed", AB_SEED))
    group = options.pop("group", None)
    group = DEFAULT_GROUP if group is None else str(group)
    if format == "ratings":
        rows = _from_ratings(src, seed=seed, **options)
    else:
        if options:
            raise TypeError(f"options {sorted(options)} only apply to format='ratings'")
        converter = {"design": _from_design, "hh-rlhf": _from_hh, "llmbar": _from_llmbar}[format]
        rows = converter(src, group=group, seed=seed)
    identical = {r.index for r in rows if r.a == r.b}
    if identical:
        src.cleaned["identical_pairs"] = identical
        rows = [r for r in rows if r.a != r.b]
        if not rows:
            raise src.error("every pair has identical A and B texts: no preferences to learn from")
    frame = _finish(src, rows)
    frame.attrs.update({"source": src.path, "format": format,
                        "cleaned": {k: len(src.cleaned.get(k, ())) for k in CLEAN_KEYS}})
    return frame


def describe_cleaning(frame: pd.DataFrame) -> str | None:
    """One sentence on what reading removed (see the module docstring), or None."""
    counts = frame.attrs.get("cleaned") or {}
    parts = []
    if counts.get("identical_pairs"):
        parts.append(f"dropped {counts['identical_pairs']} row(s) whose A and B texts are identical")
    if counts.get("control_characters"):
        parts.append(f"removed NUL/control characters from {counts['control_characters']} row(s)")
    if counts.get("bidi_controls"):
        parts.append(f"removed bidirectional override characters from {counts['bidi_controls']} row(s)")
    return "; ".join(parts) if parts else None


def detect_format(
    columns: Iterable[str], first: dict | None = None, *, user_col: str = "user",
    item_col: str = "item", rating_col: str = "rating",
) -> str:
    """The format a set of columns (and the first record) looks like: see `FORMATS`."""
    cols = set(columns)
    if set(LLMBAR_COLUMNS) <= cols and not {"prompt", "response_a"} & cols:
        return "llmbar"
    if set(CR_COLUMNS) <= cols and "prompt" not in cols:
        chosen = (first or {}).get("chosen")
        if isinstance(chosen, str) and HH_ASSISTANT in chosen:
            return "hh-rlhf"
    if {user_col, item_col, rating_col} <= cols:
        return "ratings"
    return "design"


def _common(src: _Source, i: int, group: str) -> tuple[str, str, str | None]:
    g = _key(src, i, "group", group)
    return g, _key(src, i, "annotator", g), _key(src, i, "pair_id", None)


def _extras(rec: dict, used: set[str]) -> dict:
    return {k: v for k, v in rec.items() if k not in used}


def _from_design(src: _Source, *, group: str, seed: int) -> list[_Row]:
    cols = set(src.columns)
    has_ab, has_cr = cols & set(AB_COLUMNS), cols & set(CR_COLUMNS)
    if has_ab and has_cr:
        raise src.error(
            "mixes the two forms: use response_a/response_b/label or chosen/rejected, not both",
            column=sorted(has_cr)[0],
        )
    form = "cr" if has_cr else "ab"
    needed = ("prompt", *(CR_COLUMNS if form == "cr" else AB_COLUMNS))
    what = "need prompt plus response_a, response_b, label or chosen, rejected"
    _require(src, needed, what)
    used = {"prompt", "group", "annotator", "pair_id", *needed}
    rows = []
    for i, rec in enumerate(src.records):
        prompt = _text(src, i, "prompt", allow_empty=True)
        g, annotator, pair_id = _common(src, i, group)
        if form == "ab":
            a, b = _text(src, i, "response_a"), _text(src, i, "response_b")
            label = rec.get("label")
            norm = label.strip().lower() if isinstance(label, str) else None
            if norm not in ("a", "b"):
                raise src.error(f"label must be 'a' or 'b', got {label!r}", index=i, column="label")
            rows.append(_Row(i, pair_id or content_pair_id(prompt, a, b), prompt, a, b, norm, g, annotator,
                             _extras(rec, used)))
        else:
            chosen, rejected = _text(src, i, "chosen"), _text(src, i, "rejected")
            pair_id = pair_id or content_pair_id(prompt, chosen, rejected)
            a, b, label = _orient(pair_id, chosen, rejected, seed)
            rows.append(_Row(i, pair_id, prompt, a, b, label, g, annotator, _extras(rec, used)))
    return rows


def split_hh_transcript(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of an HH-RLHF pair of transcripts.

    The prompt is everything before the last ``\\n\\nAssistant:`` that both
    transcripts share; the responses are what follows it (stripped). Looking
    only inside the shared prefix keeps the split right when a response itself
    contains a "Human:" or "Assistant:" turn (a few test rows do). A response
    may be empty: the data set has empty assistant turns (11 rows of the test
    splits), a real (bad) answer that is kept rather than refused.
    """
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(HH_ASSISTANT)
    if cut < 0:
        raise ValueError("the transcripts share no '\\n\\nAssistant:' turn")
    start = cut + len(HH_ASSISTANT)
    return chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip()


def _from_hh(src: _Source, *, group: str, seed: int) -> list[_Row]:
    _require(src, CR_COLUMNS, "HH-RLHF rows are {'chosen': transcript, 'rejected': transcript}")
    used = {"chosen", "rejected", "group", "annotator", "pair_id", "prompt"}
    rows = []
    for i, rec in enumerate(src.records):
        chosen_t, rejected_t = _text(src, i, "chosen"), _text(src, i, "rejected")
        try:
            prompt, chosen, rejected = split_hh_transcript(chosen_t, rejected_t)
        except ValueError as exc:
            raise src.error(str(exc), index=i, column="chosen") from None
        g, annotator, pair_id = _common(src, i, group)
        pair_id = pair_id or content_pair_id(prompt, chosen, rejected)
        a, b, label = _orient(pair_id, chosen, rejected, seed)
        rows.append(_Row(i, pair_id, prompt, a, b, label, g, annotator, _extras(rec, used)))
    return rows


def _from_llmbar(src: _Source, *, group: str, seed: int) -> list[_Row]:
    _require(src, LLMBAR_COLUMNS, "LLMBar rows are {'input', 'output_1', 'output_2', 'label': 1 or 2}")
    used = {*LLMBAR_COLUMNS, "group", "annotator", "pair_id"}
    rows = []
    for i, rec in enumerate(src.records):
        prompt = _text(src, i, "input", allow_empty=True)
        a, b = _text(src, i, "output_1"), _text(src, i, "output_2")
        raw = rec.get("label")
        label = {1: "a", 2: "b", "1": "a", "2": "b"}.get(raw if not isinstance(raw, bool) else None)
        if label is None:
            raise src.error(f"label must be 1 or 2, got {raw!r}", index=i, column="label")
        g, annotator, pair_id = _common(src, i, group)
        rows.append(_Row(i, pair_id or content_pair_id(prompt, a, b), prompt, a, b, label, g, annotator,
                         _extras(rec, used)))
    return rows


def _from_ratings(
    src: _Source,
    *,
    seed: int,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    text_col: str = "text",
    question: str = DEFAULT_QUESTION,
    max_pairs_per_user: int = DEFAULT_MAX_PAIRS_PER_USER,
) -> list[_Row]:
    if max_pairs_per_user < 1:
        raise ValueError(f"max_pairs_per_user must be >= 1, got {max_pairs_per_user}")
    _require(src, (user_col, item_col, rating_col, text_col), "ratings need user, item, rating and text columns")
    ratings = _collect_ratings(src, user_col=user_col, item_col=item_col, rating_col=rating_col, text_col=text_col)
    rows = []
    for user, items in ratings.by_user.items():
        meta = {k: v for k, v in ratings.user_meta[user].items() if k not in ratings.varying}
        for x, y in _user_pairs(user, items, seed=seed, max_pairs=max_pairs_per_user):
            pair_id = "r-" + _hash(x, y)
            a, b = (x, y) if a_first(pair_id, seed) else (y, x)
            label = "a" if items[a][0] > items[b][0] else "b"
            extras = {**meta, "item_a": a, "item_b": b, "rating_a": items[a][0], "rating_b": items[b][0]}
            rows.append(_Row(items[x][1], pair_id, question, ratings.item_text[a][0], ratings.item_text[b][0],
                             label, user, user, extras))
    if not rows:
        raise src.error("no user rated two items differently: no preference pairs")
    return rows


@dataclass
class _Ratings:
    """A ratings file checked and grouped by user, before any pair is formed."""

    item_text: dict[str, tuple[str, int]] = field(default_factory=dict)  # item -> (text, first index)
    by_user: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)  # user -> item -> (rating, index)
    user_meta: dict[str, dict] = field(default_factory=dict)
    varying: set[str] = field(default_factory=set)  # columns that are not a property of the user


def _collect_ratings(src: _Source, *, user_col: str, item_col: str, rating_col: str, text_col: str) -> _Ratings:
    """Check every rating (keys present, one text per item, one rating per user and item) and group them."""
    out = _Ratings()
    used = {user_col, item_col, rating_col, text_col}
    for i, rec in enumerate(src.records):
        user = _key(src, i, user_col, None)
        item = _key(src, i, item_col, None)
        for column, value in ((user_col, user), (item_col, item)):
            if value is None:
                raise src.error("missing value", index=i, column=column)
        text = _text(src, i, text_col)
        rating = _rating(src, i, rating_col)
        if item in out.item_text and out.item_text[item][0] != text:
            first = src.rows[out.item_text[item][1]]
            raise src.error(f"item {item!r} has a different text than at {src.unit} {first}", index=i, column=text_col)
        out.item_text.setdefault(item, (text, i))
        items = out.by_user.setdefault(user, {})
        if item in items:
            first = src.rows[items[item][1]]
            raise src.error(f"user {user!r} rated item {item!r} twice (also at {src.unit} {first})",
                            index=i, column=item_col)
        items[item] = (rating, i)
        meta = _extras(rec, used)
        known = out.user_meta.setdefault(user, meta)
        out.varying.update(k for k in meta if k not in known or known[k] != meta[k])
    return out


def _user_pairs(user: str, items: dict[str, tuple[float, int]], *, seed: int, max_pairs: int) -> list[tuple[str, str]]:
    """The item pairs of one user that were rated differently, at most ``max_pairs`` of them."""
    names = sorted(items)
    candidates = [(x, y) for j, x in enumerate(names) for y in names[j + 1 :] if items[x][0] != items[y][0]]
    if len(candidates) > max_pairs:
        # seeded per user: a user's pairs do not depend on the other users in the file
        rng = np.random.default_rng(int(_hash(str(seed), user), 16))
        keep = np.sort(rng.choice(len(candidates), size=max_pairs, replace=False))
        candidates = [candidates[k] for k in keep]
    return candidates


def _rating(src: _Source, i: int, column: str) -> float:
    value = src.records[i].get(column)
    try:
        rating = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        rating = math.nan
    if not math.isfinite(rating):
        raise src.error(f"rating must be a finite number, got {value!r}", index=i, column=column)
    return rating


# --- shared checks and output -------------------------------------------------------


def _finish(src: _Source, rows: list[_Row]) -> pd.DataFrame:
    """Check pair_id consistency and duplicates, unify A/B order per pair_id, build the table."""
    pairs: dict[str, _Row] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        first = pairs.setdefault(row.pair_id, row)
        if first is not row and (first.prompt, first.a, first.b) != (row.prompt, row.a, row.b):
            if (first.prompt, first.a, first.b) == (row.prompt, row.b, row.a):
                row.a, row.b = row.b, row.a
                row.label = "a" if row.label == "b" else "b"
            else:
                column = "prompt" if first.prompt != row.prompt else "response_a"
                raise src.error(
                    f"pair_id {row.pair_id!r} has different texts than at {src.unit} {src.rows[first.index]}",
                    index=row.index, column=column,
                )
        key = (row.pair_id, row.group, row.annotator)
        if key in seen:
            raise src.error(
                f"duplicate judgement: pair_id {row.pair_id!r}, group {row.group!r}, annotator "
                f"{row.annotator!r} already at {src.unit} {src.rows[seen[key]]}",
                index=row.index, column="pair_id",
            )
        seen[key] = row.index
    data = {
        "pair_id": [r.pair_id for r in rows],
        "prompt": [r.prompt for r in rows],
        "response_a": [r.a for r in rows],
        "response_b": [r.b for r in rows],
        "label": [r.label for r in rows],
        "group": [r.group for r in rows],
        "annotator": [r.annotator for r in rows],
    }
    extra_names: dict[str, None] = {}
    for r in rows:
        for k in r.extras:
            if k not in data:
                extra_names.setdefault(k, None)
    for k in extra_names:
        data[k] = [r.extras.get(k) for r in rows]
    return pd.DataFrame(data)


# --- frames built in code ----------------------------------------------------------


def name_some(items: Iterable[Any]) -> str:
    """The first `MAX_NAMED_IN_ERROR` of ``items`` (repr), and how many more there are."""
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:MAX_NAMED_IN_ERROR])
    more = f" and {len(items) - MAX_NAMED_IN_ERROR} more" if len(items) > MAX_NAMED_IN_ERROR else ""
    return shown + more


def validate_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a canonical preference frame, however it was made; returns it unchanged.

    The readers above return frames that pass; this is the check for frames built in
    code (tests, benchmarks, the Ray engine), and what `Store.add_pool` / `add_pairs`
    call before writing. ValueError naming the problem: not a DataFrame, no rows, a
    required column absent or with missing values, duplicated column names, a label
    other than "a" / "b" (missing is allowed: the pair is added unlabelled), or a
    pair_id given with two different texts.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing required columns {missing}; has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("frame has no rows")
    if frame.columns.duplicated().any():
        raise ValueError(
            f"frame has duplicated column names {list(frame.columns[frame.columns.duplicated()])}"
        )
    for col in REQUIRED_COLUMNS:
        bad = np.flatnonzero(frame[col].isna().to_numpy())
        if bad.size:
            raise ValueError(f"column {col!r} has missing values in rows {name_some(bad.tolist())}")
    if "label" in frame.columns:
        label = frame["label"]
        known = label.isna().to_numpy() | label.isin(PAIR_LABELS).to_numpy()
        if not known.all():
            bad = pd.unique(label[~known].astype(str))
            raise ValueError(f"label must be one of {PAIR_LABELS} (or missing), got {name_some(bad)}")
    texts = pd.DataFrame({c: frame[c].astype(str).to_numpy(dtype=object) for c in REQUIRED_COLUMNS})
    unique_texts = texts.drop_duplicates(list(REQUIRED_COLUMNS))
    if len(unique_texts) != texts["pair_id"].nunique():
        conflicted = unique_texts["pair_id"][unique_texts["pair_id"].duplicated()].unique()
        raise ValueError(f"pair_id {name_some(conflicted)} appear with different prompt/response texts")
    return frame


# --- summaries ----------------------------------------------------------------------


def group_label_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group of a preference table: ``judgements`` and ``share_a`` (share of "a").

    Columns group, judgements, share_a; groups in first-seen order. A table without
    the ``group`` or ``label`` column raises ValueError naming what is missing.
    """
    missing = [c for c in ("group", "label") if c not in frame.columns]
    if missing:
        raise ValueError(f"a preference table needs columns {missing}, got {list(frame.columns)}")
    is_a = (frame["label"] == "a").astype(float)
    grouped = is_a.groupby(frame["group"], sort=False)
    return pd.DataFrame({"judgements": grouped.size(), "share_a": grouped.mean()}).reset_index()
