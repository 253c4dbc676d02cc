"""Models by name: :func:`register_model`, :func:`list_models` and :func:`create_model`.

A model class that keeps the model contract (see "Adding a model" in the docs) registers
under a name with the :func:`register_model` decorator, and is then available by that name
everywhere a model is chosen by name: ``seqclf.create_model(name, ...)`` and the
estimator's ``model=``. One class may register several names with different defaults
(``"lstm"``, ``"gru"`` and ``"rnn"`` are all :class:`~seqclf.SequenceClassifier`).

Example:
    >>> seqclf.list_models()  # doctest: +SKIP
    ['gru', 'lstm', 'lstm_fcn', 'rnn']
    >>> model = seqclf.create_model("gru", input_size=3, num_classes=4, hidden_size=16)  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]

M = TypeVar("M", bound=type[nn.Module])

_SIZES = ("input_size", "num_classes")


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: the model class and the defaults the name gives it.

    Attributes:
        name: the registered name.
        model_class: the class :func:`create_model` builds.
        defaults: keyword arguments the name passes unless the caller overrides them.
    """

    name: str
    model_class: type[nn.Module]
    defaults: MappingProxyType[str, Any]

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword arguments :func:`create_model` accepts for this name besides the two sizes."""
        config_class = getattr(self.model_class, "config_class")  # noqa: B009 (checked at registration)
        return tuple(f.name for f in fields(config_class) if f.name not in _SIZES)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, **defaults: Any) -> Callable[[M], M]:
    """Class decorator: register a model class under ``name``, with default keyword arguments.

    The class must keep the model contract: a ``config_class`` (a frozen dataclass whose
    fields include ``input_size`` and ``num_classes``) and a constructor taking those
    fields as keyword arguments.

    Args:
        name: the name :func:`create_model` and the estimator's ``model=`` take.
        **defaults: keyword arguments the name passes to the class, which a caller's
            options override (e.g. ``cell="gru"``).

    Raises:
        ValueError: ``name`` is taken by another class, or a default is not a config field.
        TypeError: the class has no ``config_class`` dataclass with the two sizes.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str; got {name!r}")

    def decorate(cls: M) -> M:
        config_class = getattr(cls, "config_class", None)
        try:
            known = {f.name for f in fields(config_class)}  # type: ignore[arg-type]
        except TypeError:
            known = set()
        if not set(_SIZES) <= known:
            raise TypeError(
                f"a registered model class must have a config_class dataclass with fields {list(_SIZES)}; "
                f"got {cls.__name__} with config_class={config_class!r}"
            )
        unknown = sorted(set(defaults) - known)
        if unknown or set(_SIZES) & set(defaults):
            raise ValueError(
                f"defaults of model {name!r} must be options of {cls.__name__} other than the sizes; "
                f"got {sorted(defaults)}"
            )
        previous = _REGISTRY.get(name)
        if previous is not None and previous.model_class.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"model name {name!r} is already registered to {previous.model_class.__name__}; "
                f"got another class, {cls.__name__}"
            )
        _REGISTRY[name] = ModelEntry(name, cls, MappingProxyType(dict(defaults)))
        return cls

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """The registered model names matching the shell-style ``pattern``, sorted.

    Example:
        >>> seqclf.list_models("*rnn*")  # doctest: +SKIP
        ['rnn']
    """
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` registered under ``name``.

    Raises:
        ValueError: no model is registered under ``name`` (the message lists those that are).
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"model must be one of the registered models {list_models()}; got {name!r}")
    return entry


def create_model(name: str, *, input_size: int, num_classes: int, **options: Any) -> nn.Module:
    """A freshly initialised model of the registered ``name``.

    Args:
        name: a registered name (see :func:`list_models`).
        input_size: features per time step.
        num_classes: number of output logits.
        **options: any other field of the model's config (e.g. ``hidden_size``); they
            override the defaults the name gives.

    Raises:
        ValueError: ``name`` is not registered, or an option's value is invalid.
        TypeError: an option is not one the model takes (the message lists those it does).

    Example:
        >>> model = seqclf.create_model("lstm_fcn", input_size=1, num_classes=3, hidden_size=16)  # doctest: +SKIP
    """
    entry = model_entry(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise TypeError(f"options of model {name!r} must be among {sorted(entry.options)}; got {unknown}")
    return entry.model_class(input_size=input_size, num_classes=num_classes, **{**entry.defaults, **options})
