"""Names that moved to another module, still served where they were with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["moved_attribute"]


def moved_attribute(module: str, name: str, moves: Mapping[str, str]) -> Any:
    """For a module ``__getattr__``: ``name``, moved from ``module`` to the module ``moves[name]``.

    The new module is imported only when an old name is asked for, so a layer never loads
    the one it used to hold a name for.

    Raises:
        AttributeError: ``name`` is not one of ``moves`` (the usual missing-attribute error).
    """
    if name not in moves:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = moves[name]
    warnings.warn(
        f"{module}.{name} has moved to {new}.{name}; import it from there (the old name will be removed in a "
        "future release)",
        DeprecationWarning,
        stacklevel=3,  # the code that read the old name, past the module's __getattr__
    )
    return getattr(importlib.import_module(new), name)
