"""Settings dataclasses kept as JSON dicts (in the store, a manifest, a checkpoint): one strict reader.

Pure Python: the torch modules' configurations (`ensemble.EnsembleConfig`,
`joint_training.JointTrainingConfig`) share it without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self


class DictSettings:
    """A mixin for a settings dataclass: ``to_dict`` and a ``from_dict`` that refuses unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The settings in ``data``; ValueError naming the keys this class does not have."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)
