"""The Evaluate page's form helpers: the cache key of a result, the n values, the summary table and CSV."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hyre_engine.backbone import DEFAULT_ALIASES
from hyre_engine.pipeline import BuildConfig
from hyre_engine.protocol import diagnostic_means
from pages._shared.labels import METHOD_SHORT, METHOD_TEXT

# Bump when the cached result's shape changes, so old cache entries are not read.
RESULT_VERSION = 1
RESULT_PREFIX = "evaluate-page/"
# Where the Data page remembers the folder of a local backbone, by backbone id.
BACKBONE_PATH_PREFIX = "backbone-path/"


@dataclass(frozen=True)
class Options:
    """The evaluation settings of the form, complete."""

    config: BuildConfig
    train: list[str]
    targets: list[str]
    n_values: list[int]
    seeds: int
    strategy: str
    loss: str
    beta: float | None
    methods: list[str]

    def key_parts(self) -> dict[str, Any]:
        """What changes the numbers, besides the pool and the ensemble settings."""
        return {
            "train": self.train, "targets": self.targets, "n_values": self.n_values, "seeds": self.seeds,
            "strategy": self.strategy, "loss": self.loss, "beta": self.beta, "methods": self.methods,
        }


def is_embedded_backbone(backbone_id: str) -> bool:
    return backbone_id.split("@", 1)[0] in DEFAULT_ALIASES


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



def summary_table(result: dict) -> pd.DataFrame:
    """One row per method, one column per n: the mean over groups (fractions)."""
    columns = [f"n={n}" for n in result["n"]]
    rows = {
        METHOD_SHORT.get(m, METHOD_TEXT.get(m, m)): stats["mean"]
        for m, stats in sorted(result["summary"].items(), key=lambda kv: _method_rank(kv[0]))
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    eff = diagnostic_means(result, "effective_heads")
    table.index.name = "method"
    if eff is not None:
        # effective heads are a count, not an accuracy: returned apart for its own format
        table.attrs["effective_heads"] = eff
    return table


def method_help(table: pd.DataFrame) -> str:
    """The method column's help: the long form of each short name the table shows."""
    long = {METHOD_SHORT[m]: METHOD_TEXT[m] for m in METHOD_SHORT if METHOD_SHORT[m] in table.index}
    if not long:
        return "The method each row's accuracies are for."
    return "Short names: " + "; ".join(f"{short} = {text}" for short, text in long.items()) + "."


def _method_rank(method: str) -> int:
    names = list(METHOD_TEXT)
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
