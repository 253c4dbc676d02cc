"""A model as plain data: its class name, its config and its weights; and a model rebuilt from that.

Generic over seqclf's model classes: any ``nn.Module`` with a ``config`` attribute (a frozen
dataclass with ``to_dict``/``from_dict``) and a ``from_config`` class method is recorded
and rebuilt the same way. It reads files only through :mod:`seqclf._files`, so a model
module importing it imports nothing of the trainer or of :mod:`seqclf.checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from ._files import CheckpointError, read_file, to_cpu


class ConfigType(Protocol):
    """A model config class: ``to_dict`` gives plain data and ``from_dict`` rebuilds from it."""

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any: ...


M = TypeVar("M", bound=nn.Module)


def model_record(model: nn.Module) -> dict[str, Any]:
    """``{"class", "config", "state_dict"}``: ``model``'s class name, config dict (None without one), weights."""
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    return {
        "class": type(model).__name__,
        "config": to_dict() if callable(to_dict) else None,
        "state_dict": to_cpu(model.state_dict()),
    }


def check_model_record(model: nn.Module, record: object) -> dict[str, Any]:
    """Check that the record fits ``model`` (class, config, weight names and shapes) without changing it.

    Returns the record's ``state_dict``.

    Raises:
        CheckpointError: naming every config field that differs, or the weights that do not fit.
    """
    if not isinstance(record, dict) or not isinstance(record.get("state_dict"), dict):
        raise CheckpointError(
            "checkpoint 'model' must be a dict with a 'state_dict' dict; "
            f"got {type(record.get('state_dict') if isinstance(record, dict) else record).__name__}"
        )
    stored_class, stored_config = record.get("class"), record.get("config")
    if stored_class != type(model).__name__:
        raise CheckpointError(f"model must be a {stored_class} like the checkpoint's; got {type(model).__name__}")
    config = getattr(model, "config", None)
    if isinstance(stored_config, dict) and callable(getattr(config, "to_dict", None)):
        ours: dict[str, Any] = config.to_dict()  # type: ignore[union-attr]
        theirs = stored_config
        with contextlib.suppress(TypeError, ValueError):
            # fields added since the checkpoint was written take their defaults (e.g. normalize)
            theirs = type(config).from_dict(stored_config).to_dict()  # type: ignore[union-attr]
        differ = sorted(key for key in {*ours, *theirs} if ours.get(key, "<unset>") != theirs.get(key, "<unset>"))
        if differ:
            details = ", ".join(f"{k}={theirs.get(k, '<unset>')!r} vs {ours.get(k, '<unset>')!r}" for k in differ)
            raise CheckpointError(
                f"model config must match the checkpoint's; fields {differ} differ (checkpoint vs model: {details})"
            )
    weights: dict[str, Any] = legacy_weights_renamed(model, record["state_dict"])
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    wrong = sorted(
        f"{name}: {tuple(weights[name].shape)} vs {tuple(value.shape)}"
        for name, value in expected.items()
        if name in weights and (not isinstance(weights[name], torch.Tensor) or weights[name].shape != value.shape)
    )
    problems = (("missing", missing), ("unexpected", unexpected), ("shapes differ (checkpoint vs model)", wrong))
    if missing or unexpected or wrong:
        found = "; ".join(f"{what} {names}" for what, names in problems if names)
        raise CheckpointError(f"checkpoint weights must fit the model; got {found}")
    return weights


def rename_legacy_weights(renames: dict[str, str], weights: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``weights`` with each name under ``prefix + old`` moved to ``prefix + new`` (``renames``: old -> new prefixes).

    A name whose new form is already present is left alone, so current files pass unchanged.
    """
    out: dict[str, Any] = {}
    for name, value in weights.items():
        for old, new in renames.items():
            if name.startswith(prefix + old) and prefix + new + name[len(prefix + old) :] not in weights:
                name = prefix + new + name[len(prefix + old) :]
                break
        out[name] = value
    return out


def legacy_weights_renamed(model: nn.Module, weights: dict[str, Any]) -> dict[str, Any]:
    """``weights`` with the older names of every submodule that declares ``legacy_weight_names`` renamed.

    Files written before a model's weights were renamed (e.g. a ``SequenceClassifier``'s
    ``rnn.*``, now ``encoder.rnn.*``) then fit the current model; ``load_state_dict``
    renames them by itself (each such model registers a pre-hook).
    """
    for name, module in model.named_modules():
        renames = getattr(type(module), "legacy_weight_names", None)
        if renames:
            weights = rename_legacy_weights(renames, weights, f"{name}." if name else "")
    return weights


def rebuild_model(cls: type[M], config_class: type[ConfigType], path: str | os.PathLike[str]) -> M:
    """``cls`` rebuilt from the config and weights of a checkpoint (or saved model) file, in eval mode.

    ``cls`` must have a ``from_config(config)`` class method and ``config_class`` its config
    class. The file is read safely (nothing in it can run code) and its checksum checked.

    Raises:
        CheckpointError: the file holds another class, no config, or weights that do not fit.
    """
    record = read_file(path).get("model")
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} must hold a 'model' dict; got {type(record).__name__}")
    if record.get("class") != cls.__name__:
        raise CheckpointError(
            f"checkpoint {str(path)!r} must hold a {cls.__name__} to rebuild one; got a {record.get('class')}: "
            f"use {record.get('class')}.from_checkpoint"
        )
    stored = record.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"checkpoint must hold a {cls.__name__} config to rebuild the model; got a {record.get('class')} without "
            "one: build that model yourself and resume with Trainer.fit(..., resume_from=path)"
        )
    try:
        config = config_class.from_dict(stored)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint model config is invalid: {error}") from error
    model: M = getattr(cls, "from_config")(config)  # noqa: B009 (a class method every seqclf model has)
    weights = check_model_record(model, record)
    model.load_state_dict(weights)
    return model.eval()
