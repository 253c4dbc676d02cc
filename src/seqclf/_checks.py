"""Argument checks shared by the configs and constructors: each error names the argument,
what was expected and what was received."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

__all__ = ["boolean", "config_from_dict", "fraction", "one_of", "positive_int"]

_T = TypeVar("_T")


def positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive int (numpy integers, as from a parameter grid, as int; bools not)."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def fraction(name: str, value: object) -> float:
    """``value`` as a float, if it lies in [0, 1) (a dropout probability)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1); got {value!r}")
    return float(value)


def one_of(name: str, value: object, choices: Collection[object]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")


def boolean(name: str, value: object) -> None:
    """Raise unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {value!r}")


def config_from_dict(cls: type[_T], data: dict[str, Any]) -> _T:
    """Build the dataclass ``cls`` from plain data; unknown keys are an error."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"model config has unknown fields {unknown}; expected a subset of {sorted(known)}")
    return cls(**data)
