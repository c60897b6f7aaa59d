"""The Data page's file helpers: reading uploads and paths, counting what was read, the preview.

Reading and validation are hyre_engine.data's; this adds the upload limits of the
server and the tables the page shows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from hyre_engine import auth
from hyre_engine.data import DEFAULT_MAX_BYTES, DataError, group_label_counts, read_preferences

# Matches server.maxUploadSize in .streamlit/config.toml (a test checks they agree):
# the server refuses bigger uploads, and the Data page says so in plain words.
MAX_UPLOAD_MB = 50
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
# A path on the server machine is not an upload: the engine's own limit applies.
MAX_PATH_BYTES = DEFAULT_MAX_BYTES
# The extensions data.read_preferences understands (each optionally gzipped).
UPLOAD_TYPES = ["jsonl", "ndjson", "json", "csv", "parquet", "pq", "gz"]
# Rows shown in the preview: enough to check the columns were understood.
PREVIEW_ROWS = 20
# Columns of the preview, in reading order (metadata columns follow).
PREVIEW_COLUMNS = ["prompt", "response_a", "response_b", "label", "group", "annotator", "pair_id"]


# ---------------------------------------------------------------- reading files


@dataclasses.dataclass(frozen=True)
class ReadSummary:
    """Counts of a parsed preference table, for the preview."""

    rows: int  # judgements
    pairs: int
    groups: int
    annotators: int
    format: str


def size_error(name: str, size: int, limit: int, *, upload: bool) -> str | None:
    """The message refusing a file of ``size`` bytes over ``limit``, else None."""
    if size <= limit:
        return None
    where = (
        f"uploads are limited to {limit / 2**20:.0f} MB (server.maxUploadSize in "
        ".streamlit/config.toml); import a bigger file by its path instead"
        if upload
        else f"files are limited to {limit / 2**20:.0f} MB"
    )
    return f"{name} is {size / 2**20:.1f} MB: {where}."


def read_upload(data: bytes, filename: str, *, format: str, max_bytes: int = MAX_UPLOAD_BYTES) -> pd.DataFrame:
    """Parse uploaded bytes into the canonical table; DataError (located) on bad input.

    The size is checked before any parsing, so an oversized upload costs nothing.
    """
    message = size_error(filename, len(data), max_bytes, upload=True)
    if message:
        raise DataError(message, path=filename)
    return read_preferences(data, format=format, filename=filename, max_bytes=max_bytes)


def read_path(path: str, *, format: str, allowed: list[Path] | None = None,
              max_bytes: int = MAX_PATH_BYTES) -> pd.DataFrame:
    """Parse a file inside the configured data folders (``allowed``, default HYRE_DATA_DIRS).

    The path is resolved (symlinks, ``..``) first; anything outside the folders is one
    and the same AuthError whether or not it exists, so nothing about it is shown.
    FileNotFoundError for an empty path, DataError on bad content.
    """
    text = path.strip()
    if not text:
        raise FileNotFoundError("type the path of a preference file")
    file = auth.resolve_data_path(text, auth.data_dirs() if allowed is None else allowed)
    message = size_error(file.name, file.stat().st_size, max_bytes, upload=False)
    if message:
        raise DataError(message, path=str(file))
    return read_preferences(file, format=format, max_bytes=max_bytes)


def summarize(frame: pd.DataFrame) -> ReadSummary:
    return ReadSummary(
        rows=len(frame),
        pairs=int(frame["pair_id"].nunique()),
        groups=int(frame["group"].nunique()),
        annotators=int(frame["annotator"].nunique()),
        format=str(frame.attrs.get("format", "?")),
    )


def group_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """DataFrame(group, judgements, share A preferred), largest group first."""
    out = group_label_counts(frame).rename(columns={"share_a": "A preferred"})
    return out.sort_values("judgements", ascending=False, kind="stable").reset_index(drop=True)


def preview_table(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first ``rows`` judgements, canonical columns first."""
    extra = [c for c in frame.columns if c not in PREVIEW_COLUMNS]
    return frame.head(rows)[[*PREVIEW_COLUMNS, *extra]].reset_index(drop=True)


def default_pool_name(filename: str) -> str:
    """'prefs.jsonl.gz' -> 'prefs'."""
    return Path(filename).name.split(".")[0] or "pool"

