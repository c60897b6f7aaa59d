"""People's labels as a dataset, in the formats reward models are trained with.

What is exported is every judgement a person gave in a labelling session, for one
user, one pool, or all of them:

- ``trl``: TRL / RewardBench rows ``prompt``, ``chosen``, ``rejected`` (JSONL and
  Parquet), plus ``pool``, ``pair_id`` and ``annotator`` so rows can be traced back,
  and the person's ``comment`` ("" when none) and review ``flagged`` on the pair;
- ``pairs``: the project's own preference format (``prompt``, ``response_a``,
  ``response_b``, ``label``, ``group``, ``annotator``, ``pair_id``), which
  ``hyre_engine.data.read_preferences`` reads back;
- ``dataset``: a ``datasets.Dataset`` of the TRL rows written with ``save_to_disk``.

Judgements that prefer neither response (tie, both bad, can't judge, skip) have no
chosen side, so a TRL file cannot hold them; they go to their own file
(``<name>.no_preference.jsonl``) and the pair format keeps them with an empty
``label`` and a ``judgement`` column. A comment or flag on a pair the person did not
label (yet, or any more) is no judgement either: those notes go to
``<name>.unlabelled_notes.jsonl`` beside every format. Nothing a person said is dropped
in silence.

Persona sessions are simulated labels replayed from a group of the pool: they are
exported only when asked for (``include_personas``), with the persona as annotator.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hyre_engine import people
from hyre_engine.numerics import LABEL_A, LABEL_B, NO_PREFERENCE, PAIR_LABELS

if TYPE_CHECKING:
    from hyre_engine.store import Store

# Export formats, in the order the CLI and the pages offer them.
FORMATS = ("trl-jsonl", "trl-parquet", "pairs-jsonl", "dataset")
DEFAULT_FORMATS = FORMATS
# Columns of a TRL / RewardBench row, then the provenance this project adds.
TRL_COLUMNS = ("prompt", "chosen", "rejected")
TRL_EXTRA = ("pool", "pair_id", "annotator", "comment", "flagged")
# The project's pair format (the columns hyre_engine.data reads) plus the judgement.
PAIR_COLUMNS = ("prompt", "response_a", "response_b", "label", "group", "annotator", "pair_id", "judgement",
                "comment", "flagged")
# The rows with no preferred side, one file beside the preferences.
NO_PREFERENCE_COLUMNS = ("prompt", "response_a", "response_b", "judgement", "pool", "pair_id", "annotator",
                         "comment", "flagged")
# A note on a pair its session holds no label for, as its file has it.
UNLABELLED_NOTE_COLUMNS = ("prompt", "response_a", "response_b", "pool", "pair_id", "annotator", "comment",
                           "flagged", "noted_at")
# Every judgement row before it is shaped into a format.
JUDGEMENT_COLUMNS = (
    "pool", "pool_id", "user", "mode", "persona", "annotator", "session_id", "seq",
    "row_index", "pair_id", "prompt", "response_a", "response_b", "judgement", "created_at",
    "comment", "flagged",
)
# Characters allowed in a file stem made from user and pool names.
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: how many rows of each kind, and where."""

    n_preferences: int  # rows with a chosen side (a / b)
    n_no_preference: int  # ties, both bad, can't judge, skips
    n_users: int
    n_pools: int
    # format (or "no_preference", "unlabelled_notes") -> path
    paths: dict[str, Path] = field(default_factory=dict)
    n_unlabelled_notes: int = 0  # comments and flags on pairs without a label

    def summary(self) -> str:
        files = ", ".join(f"{k}: {p}" for k, p in self.paths.items())
        notes = f", and {self.n_unlabelled_notes} note(s) on pairs not labelled" if self.n_unlabelled_notes else ""
        return (
            f"exported {self.n_preferences} preferences and {self.n_no_preference} judgements "
            f"without a preferred side from {self.n_users} user(s) on {self.n_pools} pool(s){notes}"
            + (f" -> {files}" if files else "")
        )


def _selected_sessions(store: Store, *, user: str | None, pool: str | None,
                       include_personas: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pools, sessions) that `judgements` exports; ValueError naming an unknown user or pool."""
    pools = store.list_pools()
    if pool is not None:
        try:
            pool_id = store.get_pool(pool).pool_id
        except KeyError:
            raise ValueError(f"no pool named {pool!r}; pools: {sorted(pools['name'])}") from None
        pools = pools[pools["pool_id"] == pool_id]
    sessions = store.list_sessions()
    sessions = sessions[sessions["pool_id"].isin(set(pools["pool_id"]))]
    if not include_personas:
        sessions = sessions[sessions["mode"] == "human"]
    if user is not None:
        if user not in set(store.list_sessions()["user"]):
            raise ValueError(f"no user named {user!r} has a labelling session")
        sessions = sessions[sessions["user"] == user]
    return pools, sessions


def _session_frames(store: Store, sessions: pd.DataFrame, names: dict, rows_of) -> list[pd.DataFrame]:
    """``rows_of(session, pairs)`` (a frame with row_index, or None) for every session, with the
    session's provenance columns (pool, pool_id, user, mode, persona, annotator, session_id)."""
    frames = []
    for pool_id, group in sessions.groupby("pool_id", sort=False):
        pairs = store.pool_pairs(pool_id, with_meta=False)  # row_index order
        for s in group.itertuples():
            rows = rows_of(s, pairs)
            if rows is None or not len(rows):
                continue
            persona = s.persona if isinstance(s.persona, str) else None
            texts = pairs.iloc[rows["row_index"].to_numpy(dtype="int64")]
            frames.append(rows.reset_index(drop=True).assign(
                pool=names[pool_id], pool_id=pool_id, user=s.user, mode=s.mode, persona=persona,
                annotator=persona if s.mode == "persona" else s.user, session_id=s.session_id,
                **{c: texts[c].to_numpy() for c in ("prompt", "response_a", "response_b")},
            ))
    return frames


def _labelled(store: Store):
    """`_session_frames`' rows of a session: its judgements with the person's note on each pair."""

    def rows_of(s, pairs) -> pd.DataFrame:
        rows = store.session_labels(s.session_id)
        notes = store.session_notes(s.session_id).set_index("row_index")
        note = notes.reindex(rows["row_index"].to_numpy())
        return pd.DataFrame({
            "seq": rows["seq"].to_numpy(), "row_index": rows["row_index"].to_numpy(),
            "pair_id": rows["pair_id"].to_numpy(), "judgement": rows["label"].to_numpy(),
            "created_at": rows["created_at"].to_numpy(),
            # the person's optional comment ("" when none) and review flag on the pair
            "comment": note["comment"].fillna("").astype(str).to_numpy(),
            "flagged": note["flagged"].fillna(False).astype(bool).to_numpy(),
        })

    return rows_of


def judgements(
    store: Store,
    *,
    user: str | None = None,
    pool: str | None = None,
    include_personas: bool = False,
) -> pd.DataFrame:
    """Every stored session judgement with the pair's texts, DataFrame(JUDGEMENT_COLUMNS).

    ``user``: only this user's sessions; ``pool``: only this pool (id or name).
    A user who judged the same pair in several sessions of a pool (with different
    ensembles) keeps the latest judgement: one person, one answer per pair.
    ValueError when the user or pool does not exist.
    """
    pools, sessions = _selected_sessions(store, user=user, pool=pool, include_personas=include_personas)
    names = dict(zip(pools["pool_id"], pools["name"], strict=True))
    frames = _session_frames(store, sessions, names, _labelled(store))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in JUDGEMENT_COLUMNS})
    out = pd.concat(frames, ignore_index=True).sort_values(["created_at", "session_id", "seq"], kind="stable")
    out = out.drop_duplicates(["pool_id", "annotator", "pair_id"], keep="last")
    return out.reset_index(drop=True)[list(JUDGEMENT_COLUMNS)]


def unlabelled_notes(
    store: Store,
    *,
    user: str | None = None,
    pool: str | None = None,
    include_personas: bool = False,
) -> pd.DataFrame:
    """The comments and flags on pairs their session holds no label for (`people.unlabelled_notes`),
    selected as `judgements` selects, oldest first: DataFrame(UNLABELLED_NOTE_COLUMNS)."""
    pools, sessions = _selected_sessions(store, user=user, pool=pool, include_personas=include_personas)
    names = dict(zip(pools["pool_id"], pools["name"], strict=True))

    def rows_of(s, pairs) -> pd.DataFrame:
        notes = people.unlabelled_notes(store, s.session_id, pairs)
        return notes[["row_index", "pair_id", "comment", "flagged", "updated_at"]]

    frames = _session_frames(store, sessions, names, rows_of)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in UNLABELLED_NOTE_COLUMNS})
    out = pd.concat(frames, ignore_index=True).rename(columns={"updated_at": "noted_at"})
    out = out.sort_values(["noted_at", "session_id", "row_index"], kind="stable").reset_index(drop=True)
    out["noted_at"] = pd.to_datetime(out["noted_at"]).dt.strftime("%Y-%m-%dT%H:%M:%S")  # JSON has no dates
    text = [c for c in UNLABELLED_NOTE_COLUMNS if c != "flagged"]
    return out[list(UNLABELLED_NOTE_COLUMNS)].astype({c: str for c in text} | {"flagged": bool})


def split_judgements(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with a preferred side, rows without one): every row lands in exactly one.

    An unknown judgement raises ValueError naming it: a value neither side knows
    would otherwise vanish from both files.
    """
    known = set(PAIR_LABELS) | set(NO_PREFERENCE)
    bad = sorted({str(v) for v in rows["judgement"]} - known)
    if bad:
        raise ValueError(f"unknown judgement values {bad}; expected {sorted(known)}")
    preferred = rows["judgement"].isin(PAIR_LABELS)
    return rows[preferred].reset_index(drop=True), rows[~preferred].reset_index(drop=True)


def to_trl(rows: pd.DataFrame) -> pd.DataFrame:
    """TRL / RewardBench rows (prompt, chosen, rejected, pool, pair_id, annotator) of the a / b judgements."""
    prefs, _ = split_judgements(rows)
    a_wins = (prefs["judgement"] == LABEL_A).to_numpy()
    return pd.DataFrame({
        "prompt": prefs["prompt"].astype(str).to_numpy(),
        "chosen": prefs["response_a"].where(a_wins, prefs["response_b"]).astype(str).to_numpy(),
        "rejected": prefs["response_b"].where(a_wins, prefs["response_a"]).astype(str).to_numpy(),
        "pool": prefs["pool"].astype(str).to_numpy(),
        "pair_id": prefs["pair_id"].astype(str).to_numpy(),
        "annotator": prefs["annotator"].astype(str).to_numpy(),
        "comment": prefs["comment"].astype(str).to_numpy(),
        "flagged": prefs["flagged"].astype(bool).to_numpy(),
    }, columns=[*TRL_COLUMNS, *TRL_EXTRA])


def to_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The project's pair format, every judgement: ``label`` is "a" / "b", or None with ``judgement`` saying why.

    ``group`` is the annotator: in this format a group is the person a judgement belongs to.
    """
    split_judgements(rows)  # unknown values fail here too
    label = [j if j in (LABEL_A, LABEL_B) else None for j in rows["judgement"]]
    return pd.DataFrame({
        "prompt": rows["prompt"].astype(str).to_numpy(),
        "response_a": rows["response_a"].astype(str).to_numpy(),
        "response_b": rows["response_b"].astype(str).to_numpy(),
        "label": label,
        "group": rows["annotator"].astype(str).to_numpy(),
        "annotator": rows["annotator"].astype(str).to_numpy(),
        "pair_id": rows["pair_id"].astype(str).to_numpy(),
        "judgement": rows["judgement"].astype(str).to_numpy(),
        "comment": rows["comment"].astype(str).to_numpy(),
        "flagged": rows["flagged"].astype(bool).to_numpy(),
    }, columns=list(PAIR_COLUMNS))


def to_no_preference(rows: pd.DataFrame) -> pd.DataFrame:
    """The judgements with no preferred side (tie, both bad, can't judge, skip), with the pair's texts."""
    _, other = split_judgements(rows)
    out = other[list(NO_PREFERENCE_COLUMNS)].reset_index(drop=True)
    text = [c for c in NO_PREFERENCE_COLUMNS if c != "flagged"]
    return out.astype({c: str for c in text} | {"flagged": bool})


def to_dataset(rows: pd.DataFrame):
    """A ``datasets.Dataset`` of the TRL rows (imports datasets)."""
    import datasets

    return datasets.Dataset.from_pandas(to_trl(rows), preserve_index=False)


def export_name(*, user: str | None, pool: str | None) -> str:
    """A file stem naming what was exported: labels-<user or all>-<pool or all>."""

    def safe(text: str | None) -> str:
        if text is None:
            return "all"
        out = "".join(c if c in _SAFE else "_" for c in text).strip("._")
        return out or "unnamed"

    return f"labels-{safe(user)}-{safe(pool)}"


def export_labels(
    store: Store,
    out_dir: str | Path,
    *,
    user: str | None = None,
    pool: str | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    include_personas: bool = False,
    name: str | None = None,
) -> ExportReport:
    """Write the selected judgements to ``out_dir`` in each of ``formats``; returns what was written.

    Files: ``<name>.trl.jsonl``, ``<name>.trl.parquet``, ``<name>.pairs.jsonl``, the folder
    ``<name>.dataset/`` and, when there are any, ``<name>.no_preference.jsonl`` and
    ``<name>.unlabelled_notes.jsonl``.
    ValueError for an unknown format, user or pool, before anything is written.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be among {FORMATS}, got {unknown or formats}")
    rows = judgements(store, user=user, pool=pool, include_personas=include_personas)
    notes = unlabelled_notes(store, user=user, pool=pool, include_personas=include_personas)
    prefs, other = split_judgements(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or export_name(user=user, pool=pool)
    paths: dict[str, Path] = {}
    if "trl-jsonl" in formats:
        paths["trl-jsonl"] = _write_jsonl(to_trl(rows), out / f"{stem}.trl.jsonl")
    if "trl-parquet" in formats:
        path = out / f"{stem}.trl.parquet"
        to_trl(rows).to_parquet(path, index=False)
        paths["trl-parquet"] = path
    if "pairs-jsonl" in formats:
        paths["pairs-jsonl"] = _write_jsonl(to_pairs(rows), out / f"{stem}.pairs.jsonl")
    if "dataset" in formats:
        path = out / f"{stem}.dataset"
        to_dataset(rows).save_to_disk(str(path))
        paths["dataset"] = path
    if len(other) and formats != ["pairs-jsonl"]:  # the pair file already holds them
        paths["no_preference"] = _write_jsonl(to_no_preference(rows), out / f"{stem}.no_preference.jsonl")
    if len(notes):
        paths["unlabelled_notes"] = _write_jsonl(notes, out / f"{stem}.unlabelled_notes.jsonl")
    return ExportReport(
        n_preferences=len(prefs),
        n_no_preference=len(other),
        n_users=len(set(rows["annotator"]) | set(notes["annotator"])),
        n_pools=len(set(rows["pool"]) | set(notes["pool"])),  # pool names are unique
        paths=paths,
        n_unlabelled_notes=len(notes),
    )


def jsonl_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as JSONL bytes (one object per row, UTF-8, None as null): what a download button serves."""
    # pandas stores a missing string as NaN; JSON says null
    values = frame.astype(object).where(frame.notna(), None)
    return "".join(
        json.dumps(dict(zip(frame.columns, row, strict=True)), ensure_ascii=False) + "\n"
        for row in values.itertuples(index=False, name=None)
    ).encode("utf-8")


def _write_jsonl(frame: pd.DataFrame, path: Path) -> Path:
    # Written to a temporary name first: an error half-way leaves no truncated file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(jsonl_bytes(frame))
    tmp.replace(path)
    return path


# What `file_bytes` serves per format: the file name's ending and its media type.
FILE_TYPES = {
    "trl-jsonl": (".trl.jsonl", "application/jsonl"),
    "trl-parquet": (".trl.parquet", "application/vnd.apache.parquet"),
    "pairs-jsonl": (".pairs.jsonl", "application/jsonl"),
    "dataset": (".dataset.zip", "application/zip"),
    "no_preference": (".no_preference.jsonl", "application/jsonl"),
    "unlabelled_notes": (".unlabelled_notes.jsonl", "application/jsonl"),
}


def file_bytes(rows: pd.DataFrame, fmt: str) -> bytes:
    """One export file in memory (what a download button serves): a format of FORMATS, or
    "no_preference" for the judgements without a preferred side, or "unlabelled_notes"
    (then ``rows`` are `unlabelled_notes`); "dataset" is the ``save_to_disk`` folder as a
    zip. ValueError for an unknown format."""
    if fmt == "trl-jsonl":
        return jsonl_bytes(to_trl(rows))
    if fmt == "pairs-jsonl":
        return jsonl_bytes(to_pairs(rows))
    if fmt == "no_preference":
        return jsonl_bytes(to_no_preference(rows))
    if fmt == "unlabelled_notes":
        return jsonl_bytes(rows[list(UNLABELLED_NOTE_COLUMNS)])
    if fmt == "trl-parquet":
        buffer = io.BytesIO()
        to_trl(rows).to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "dataset":
        with tempfile.TemporaryDirectory(prefix="hyre-export-") as tmp:
            folder = Path(tmp) / "dataset"
            to_dataset(rows).save_to_disk(str(folder))
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(Path(tmp)).as_posix())
            return buffer.getvalue()
    raise ValueError(f"format must be one of {[*FORMATS, 'no_preference', 'unlabelled_notes']}, got {fmt!r}")
