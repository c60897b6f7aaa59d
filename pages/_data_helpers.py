"""What the Data and Evaluate pages compute, without streamlit: reading uploads,
counting what was read, the evaluation cache key, the curves figure, the CSV.

Kept apart from the page scripts so tests call them directly, and so the pages
only render.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hyre_engine.data import DEFAULT_MAX_BYTES, DataError, read_preferences
from hyre_engine.pipeline import BuildConfig
from pages import common

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

# Evaluation: method -> legend name and colour (the Label page's colours where shared).
METHOD_LABELS = {
    "hyre": "HyRe",
    "uniform": "Uniform ensemble",
    "single": "Single model",
    "finetune": "Fine-tuning",
    "convex": "Convex fit",
    "best_head_oracle": "Best head (oracle)",
}
METHOD_COLORS = {
    "hyre": common.COLOR_HEAD,
    "uniform": common.COLOR_UNIFORM,
    "single": "#EF4444",
    "finetune": "#0EA5E9",
    "convex": "#A855F7",
    "best_head_oracle": common.COLOR_ORACLE,
}
# Dashed: references rather than competitors (no labels used, or the test labels used).
DASHED = {"uniform": "dash", "best_head_oracle": "dot"}
# Bump when the cached result's shape changes, so old cache entries are not read.
RESULT_VERSION = 1
RESULT_PREFIX = "evaluate-page/"
# Where the Data page remembers the folder of a local backbone, by backbone id.
BACKBONE_PATH_PREFIX = "backbone-path/"
# Height of one accuracy-vs-n chart: two side by side fit a laptop screen.
CURVE_HEIGHT = 330


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


def read_path(path: str, *, format: str, max_bytes: int = MAX_PATH_BYTES) -> pd.DataFrame:
    """Parse a file on this machine; FileNotFoundError or DataError on bad input."""
    text = path.strip()
    if not text:
        raise FileNotFoundError("type the path of a preference file")
    file = Path(text).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {text}")
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
    grouped = frame.groupby("group", sort=False)["label"]
    out = pd.DataFrame({"judgements": grouped.size(), "A preferred": grouped.apply(lambda s: (s == "a").mean())})
    return out.sort_values("judgements", ascending=False, kind="stable").reset_index()


def preview_table(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first ``rows`` judgements, canonical columns first."""
    extra = [c for c in frame.columns if c not in PREVIEW_COLUMNS]
    return frame.head(rows)[[*PREVIEW_COLUMNS, *extra]].reset_index(drop=True)


def default_pool_name(filename: str) -> str:
    """'prefs.jsonl.gz' -> 'prefs'."""
    return Path(filename).name.split(".")[0] or "pool"


# ---------------------------------------------------------------- building


def build_config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(BuildConfig)}


def config_for_ensemble(record: dict, *, backbone: str | None, train_groups: list[str] | None) -> BuildConfig:
    """A BuildConfig that finds ``record``'s ensemble again (same settings), on other train groups if given.

    ``record`` is a Store.list_ensembles row (config, meta). Settings the
    current BuildConfig does not know are ignored; `settings_match` tells
    whether the result reproduces the record exactly.
    """
    settings = dict(record["config"])
    known = build_config_fields()
    kwargs: dict[str, Any] = {k: v for k, v in settings.items() if k in known}
    calibration = settings.get("calibration")
    if "calibrate" in known:
        kwargs["calibrate"] = calibration is not None
        if calibration:
            for key, name, cast in (
                ("betas", "calibration_betas", lambda v: tuple(float(b) for b in v)),
                ("n", "calibration_n", lambda v: tuple(int(n) for n in v)),
                ("holdout", "calibration_holdout", float),
                ("seeds", "calibration_seeds", int),
            ):
                if key in calibration and name in known:
                    kwargs[name] = cast(calibration[key])
    kwargs.pop("calibration", None)
    kwargs["backbone"] = backbone
    kwargs["train_groups"] = train_groups
    return BuildConfig(**kwargs)


def settings_match(config: BuildConfig, record: dict) -> bool:
    return json.dumps(config.ensemble_settings(), sort_keys=True) == json.dumps(record["config"], sort_keys=True)


def is_embedded_backbone(backbone_id: str) -> bool:
    from hyre_engine.backbone import DEFAULT_ALIASES

    return common.backbone_label(backbone_id) in DEFAULT_ALIASES


# ---------------------------------------------------------------- evaluation


def result_key(**parts: Any) -> str:
    """The store key of an evaluation: a hash of everything that changes its numbers."""
    blob = json.dumps({"version": RESULT_VERSION, **parts}, sort_keys=True, default=str)
    return RESULT_PREFIX + hashlib.sha256(blob.encode()).hexdigest()[:24]


def parse_n_values(text: str) -> list[int]:
    """'0, 1, 5' -> [0, 1, 5] (sorted, unique); ValueError naming the bad entry."""
    values = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"'{part}' is not a whole number") from None
        if n < 0:
            raise ValueError(f"numbers of labels must be 0 or more, got {n}")
        values.append(n)
    if not values:
        raise ValueError("give at least one number of labels, e.g. 0, 1, 5, 10")
    return sorted(set(values))


def curves_figure(n_values: Sequence[int], methods: dict[str, dict[str, list[float]]], *,
                  std_key: str = "std", title: str = "", height: int = CURVE_HEIGHT) -> go.Figure:
    """Accuracy vs n labels: a mean line and a +-1 std band per method (fractions in [0, 1])."""
    x = np.asarray(n_values, dtype=float)
    fig = go.Figure()
    order = [m for m in METHOD_LABELS if m in methods] + [m for m in methods if m not in METHOD_LABELS]
    for method in order:
        stats = methods[method]
        mean = np.asarray(stats["mean"], dtype=float)
        if mean.shape != x.shape:
            raise ValueError(f"method {method}: {mean.shape[0]} means for {x.shape[0]} values of n")
        color = METHOD_COLORS.get(method, "#6B7280")
        name = METHOD_LABELS.get(method, method)
        std = stats.get(std_key)
        if std is not None:
            std = np.asarray(std, dtype=float)
            upper, lower = np.clip(mean + std, 0, 1), np.clip(mean - std, 0, 1)
            fig.add_scatter(
                x=np.concatenate([x, x[::-1]]), y=np.concatenate([upper, lower[::-1]]),
                mode="lines", fill="toself", fillcolor=_rgba(color, 0.12), line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=method, name=f"{name} ± std",
            )
        fig.add_scatter(
            x=x, y=mean, name=name, legendgroup=method, mode="lines+markers",
            line={"color": color, "dash": DASHED.get(method, "solid"), "width": 3 if method == "hyre" else 2},
            marker={"size": 6},
            customdata=std if std is not None else np.zeros_like(mean),
            hovertemplate=f"{name}<br>n=%{{x}}: %{{y:.1%}} ± %{{customdata:.1%}}<extra></extra>",
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40 if title else 30, "b": 10},
        title={"text": title, "x": 0, "font": {"size": 14}} if title else None,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title="labels given (n)",
        yaxis_title="accuracy on the group's other pairs",
    )
    fig.update_xaxes(tickvals=list(x))
    fig.update_yaxes(tickformat=".0%")
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def summary_table(result: dict) -> pd.DataFrame:
    """One row per method, one column per n: the mean over groups (fractions)."""
    columns = [f"n={n}" for n in result["n"]]
    rows = {
        METHOD_LABELS.get(m, m): stats["mean"]
        for m, stats in sorted(result["summary"].items(), key=lambda kv: _method_rank(kv[0]))
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    eff = [g["effective_heads"]["mean"] for g in result["groups"].values() if g.get("effective_heads")]
    table.index.name = "method"
    if eff:
        # effective heads are a count, not an accuracy: returned apart for its own format
        table.attrs["effective_heads"] = np.mean(np.array(eff), axis=0).tolist()
    return table


def _method_rank(method: str) -> int:
    names = list(METHOD_LABELS)
    return names.index(method) if method in names else len(names)


def result_csv(result: dict) -> str:
    """Long CSV: scope (group or summary), group, n_examples, method, n, mean, std."""
    rows = []
    for group, data in result["groups"].items():
        for method, stats in data["methods"].items():
            for j, n in enumerate(result["n"]):
                rows.append({"scope": "group", "group": group, "n_examples": data["n_examples"],
                             "method": method, "n": n, "mean": stats["mean"][j], "std": stats["std"][j]})
    for method, stats in result["summary"].items():
        spread = stats.get("std_over_groups")
        for j, n in enumerate(result["n"]):
            rows.append({"scope": "summary (mean over groups)", "group": "", "n_examples": "",
                         "method": method, "n": n, "mean": stats["mean"][j],
                         "std": spread[j] if spread else ""})
    buffer = io.StringIO()
    pd.DataFrame(rows, columns=["scope", "group", "n_examples", "method", "n", "mean", "std"]).to_csv(
        buffer, index=False
    )
    return buffer.getvalue()
