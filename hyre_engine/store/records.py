"""The store's typed records: what its ``get_*`` methods return, as frozen dataclasses.

A record is read once from its row and never changes: callers read fields
(``store.get_ensemble(eid).meta.beta``), not string keys, so a misspelt field is an
AttributeError where it is written rather than a silent default far away. The JSON
columns that hold a known shape (an ensemble's or a profile's ``meta``) are parsed
into their own records; keys this code does not know are kept in ``extra`` so that
nothing a newer build wrote is lost on a rewrite. Free-form JSON (an ensemble's
``config``, a session's ``settings``, a cached result's ``value``) stays a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Self

import numpy as np

from hyre_engine.personal import DEFAULT_LAMBDA
from hyre_engine.reweight import DEFAULT_BETA

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_LAMBDA",
    "EnsembleMeta",
    "EnsembleRecord",
    "LabelRecord",
    "PoolRecord",
    "ProfileMeta",
    "ProfileRecord",
    "ResultRecord",
    "SessionRecord",
]


class _JsonMeta:
    """A meta record read from and written to its JSON object: the keys it knows become
    fields (JSON names renamed by ``_RENAMED``; a null reads as absent, so the field's
    default applies), every other key is kept in ``extra``."""

    _RENAMED: ClassVar[Mapping[str, str]] = {}
    extra: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Self:
        if data is not None and not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__} must be read from a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in (data or {}).items():
            name = cls._RENAMED.get(key, key)
            if name not in known:
                extra[key] = value
            elif value is not None:
                kwargs[name] = value
        return cls(**kwargs, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: ``extra``, then every field that is set, under its JSON name (tuples as lists)."""
        back = {v: k for k, v in self._RENAMED.items()}
        out = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and value is not None:
                out[back.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class EnsembleMeta(_JsonMeta):
    """What a build records beside an ensemble's weights (the ``meta`` JSON column)."""

    # EnsembleConfig as JSON: what `ensemble_from_bytes` rebuilds the torch model from
    model_config: dict[str, Any] | None = None
    train_groups: tuple[str, ...] | None = None  # None: every labelled row trained it
    beta: float = DEFAULT_BETA  # the reweighting temperature (calibrated at build time, else the paper's)
    lam: float | None = None  # the personal head's prior precision; None: not calibrated with the ensemble
    # The structured prior's strength (its basis U, e: Store.get_prior_basis); None or 0: isotropic.
    rho: float | None = None
    calibration: dict[str, Any] | None = None  # the calibration's scores and choices
    backbone_path: str | None = None  # a fine-tuned build: the folder of its backbone
    base_backbone_id: str | None = None  # a fine-tuned build: the backbone it started from
    extra: dict[str, Any] = field(default_factory=dict)  # keys this code does not know, kept as stored

    # the JSON key "lambda" is a Python keyword
    _RENAMED: ClassVar[Mapping[str, str]] = {"lambda": "lam"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", float(self.beta))
        if self.lam is not None:
            object.__setattr__(self, "lam", float(self.lam))
        if self.rho is not None:
            object.__setattr__(self, "rho", float(self.rho))
        if self.train_groups is not None:
            object.__setattr__(self, "train_groups", tuple(str(g) for g in self.train_groups))

    @property
    def lam_or_default(self) -> float:
        """The stored lambda, else the personal head's default."""
        return DEFAULT_LAMBDA if self.lam is None else self.lam


@dataclass(frozen=True)
class ProfileMeta(_JsonMeta):
    """What a saved profile records beside its weights (the ``meta`` JSON column)."""

    beta: float = DEFAULT_BETA  # the temperature the weights were computed at
    source: str | None = None  # the weight source's key ("session:...", "import", ...); JSON "from"
    created_at: str | None = None  # an imported profile: when its file was made (ISO 8601)
    v: tuple[float, ...] | None = None  # the personal head (dim,); None: HyRe only
    lam: float | None = None  # the personal head's prior precision; JSON "lambda"
    rho: float | None = None  # the structured prior v was fitted under; None: isotropic
    extra: dict[str, Any] = field(default_factory=dict)

    _RENAMED: ClassVar[Mapping[str, str]] = {"from": "source", "lambda": "lam"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", float(self.beta))
        if self.v is not None:
            object.__setattr__(self, "v", tuple(float(x) for x in self.v))
        if self.lam is not None:
            object.__setattr__(self, "lam", float(self.lam))
        if self.rho is not None:
            object.__setattr__(self, "rho", float(self.rho))


@dataclass(frozen=True)
class PoolRecord:
    """A pool and its size (`Store.get_pool`)."""

    pool_id: str
    name: str
    source: str
    created_at: datetime
    n_pairs: int
    n_labels: int


@dataclass(frozen=True)
class EnsembleRecord:
    """A stored ensemble (`Store.get_ensemble`); ``weights`` (safetensors bytes) is None when
    read without them (``with_weights=False``), ``n_bytes`` is their size either way."""

    ensemble_id: str
    pool_id: str
    backbone_id: str
    config: dict[str, Any]  # BuildConfig.ensemble_settings() of the build
    train_fingerprint: str
    meta: EnsembleMeta
    created_at: datetime
    n_bytes: int
    weights: bytes | None = None

    @property
    def n_heads(self) -> int:
        """K as the build settings state it (0 when they do not)."""
        return int((self.config or {}).get("n_heads", 0))


@dataclass(frozen=True)
class SessionRecord:
    """A labelling session (`Store.get_session`); ``persona`` is None for a person's own session."""

    session_id: str
    user: str
    pool_id: str
    ensemble_id: str
    mode: str  # one of SESSION_MODES
    persona: str | None
    settings: dict[str, Any]  # what the Label page chose (strategy, beta, goal, ...), free-form
    n_labels: int  # stored rows: labels and skips
    created_at: datetime
    updated_at: datetime
    # Label events in the audit trail (`Store.session_revision`): a replay made at another
    # revision is stale, even with the same row count (an old label edited or deleted).
    revision: int = 0


@dataclass(frozen=True)
class LabelRecord:
    """One row of a session's labels (`Store.undo_session_label` returns the one it removed)."""

    seq: int
    row_index: int
    pair_id: str
    label: str  # one of SESSION_LABELS
    created_at: datetime


# eq=False: ``weights`` is an array, whose == is elementwise and has no single truth value.
@dataclass(frozen=True, eq=False)
class ProfileRecord:
    """A user's saved head weights on one ensemble (`Store.get_profile`)."""

    user: str
    ensemble_id: str
    weights: np.ndarray  # (n_heads,) float64, read-only
    labels: list[dict[str, Any]]  # the labels the weights came from, as saved
    meta: ProfileMeta
    updated_at: datetime


@dataclass(frozen=True)
class ResultRecord:
    """A cached result (`Store.get_result`): the JSON object stored under ``key``."""

    key: str
    value: dict[str, Any]
    updated_at: datetime
