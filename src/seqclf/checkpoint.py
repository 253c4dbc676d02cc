"""Checkpoint files: one plain dict that rebuilds the model and continues the run exactly.

A checkpoint holds the model's config and weights, the optimizer state, every callback's
state, the trainer state (epoch, step within the epoch, running epoch sums), every random
number generator's state, the history, and the seqclf and torch versions.

Writing is atomic: the file is written to a temporary file in the same directory,
flushed and fsynced, then moved over the target with ``os.replace`` and the directory is
fsynced. A crash or a full disk during a save leaves the previous files as they were.

Reading never runs code from the file: it uses ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain data, then checks the format, a SHA-256 checksum
of the content (a flipped bit in the weights is caught, not loaded) and the structure.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import random
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ._version import __version__
from .model import ModelConfig

if TYPE_CHECKING:
    from .trainer import Trainer, TrainState

logger = logging.getLogger(__name__)

FORMAT = "seqclf.checkpoint"
"""The ``format`` field of every seqclf checkpoint."""
FORMAT_VERSION = 1
"""The layout version this seqclf writes; it reads this version and older ones."""

PathLike = str | os.PathLike[str]
_NAME = re.compile(r"^step-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\.step-\d+\.pt\.[0-9a-f]+\.tmp$")


class CheckpointError(ValueError):
    """A file is not a usable seqclf checkpoint: truncated, corrupted, unsafe, or it does not fit."""


class UnsafeCheckpointError(CheckpointError):
    """A file would run code when unpickled; it was refused before anything in it ran."""


# ------------------------------------------------------------------ names
def checkpoint_name(step: int) -> str:
    """The file name the :class:`~seqclf.callbacks.Checkpoint` callback gives the save at ``step``."""
    return f"step-{step:08d}.pt"


def checkpoint_files(directory: PathLike) -> list[Path]:
    """The checkpoint files (named like ``step-00000120.pt``) in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in directory.iterdir() if (match := _NAME.match(path.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory: PathLike) -> Path | None:
    """The checkpoint of the highest step in ``directory``, or None when it has none.

    Example:
        >>> trainer.fit(train, resume_from=latest_checkpoint("runs/lstm"))  # doctest: +SKIP
    """
    files = checkpoint_files(directory)
    return files[-1] if files else None


def step_of(path: PathLike) -> int:
    """The step in a checkpoint file name such as ``step-00000120.pt``."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"path must be named like 'step-00000120.pt'; got {Path(path).name!r}")
    return int(match.group(1))


def remove_temporary_files(directory: PathLike) -> list[Path]:
    """Delete the temporary files that saves killed mid-write left in ``directory``; return them."""
    directory = Path(directory)
    stale = [path for path in directory.iterdir() if _TEMPORARY.match(path.name)] if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# ----------------------------------------------------------------- saving
def save_checkpoint(trainer: Trainer, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``trainer``'s model and run to ``path`` atomically; return the path.

    Raises:
        DivergenceError: if the run has a NaN/Inf loss or weight (nothing is written).
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
        OSError: if the write fails (e.g. a full disk); ``path`` is then left as it was.
    """
    state = trainer.run_state()
    trainer.check_finite()
    return write_checkpoint(build_checkpoint(trainer, state), path, overwrite=overwrite)


def build_checkpoint(
    trainer: Trainer, state: TrainState | None = None, *, epoch_complete: bool = False
) -> dict[str, Any]:
    """The checkpoint of ``trainer`` as one plain dict (tensors on the CPU).

    Args:
        state: the run state to store; by default ``trainer.state``. With several
            processes, pass ``trainer.run_state()`` (the epoch's sums over all ranks).
        epoch_complete: the current epoch has just ended (its record is in the history):
            store the state the trainer is in when the next epoch starts, so that a resumed
            run does not repeat the epoch's end.
    """
    model, optimizer = trainer.model, trainer.optimizer
    state = trainer.state if state is None else state
    config = getattr(model, "config", None)
    if epoch_complete:
        state = replace(state)  # a copy; reset_epoch replaces its tensors, it does not change them in place
        state.reset_epoch(torch.device("cpu"))
        state.epoch += 1
    values = {f.name: getattr(state, f.name) for f in fields(state)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqclf_version": __version__,
        "torch_version": str(torch.__version__),
        "model": {
            "class": type(model).__name__,
            "config": config.to_dict() if config is not None and callable(getattr(config, "to_dict", None)) else None,
            "state_dict": _to_cpu(model.state_dict()),
        },
        "optimizer": {"class": type(optimizer).__name__, "state_dict": _to_cpu(optimizer.state_dict())},
        "trainer": {
            "batch_size": trainer.batch_size,
            "global_batch_size": trainer.global_batch_size,
            "world_size": trainer.world_size,
            "epochs": trainer.epochs,
            "state": _to_cpu(values),
        },
        "callbacks": [{"class": type(c).__name__, "state": c.state_dict()} for c in trainer.callbacks],
        "rng": _rng_states(),
        "history": trainer.history.to_list(),
    }


def write_checkpoint(checkpoint: dict[str, Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``checkpoint`` (plus its SHA-256 checksum) to ``path`` atomically.

    The data goes to a temporary file next to ``path`` that is flushed and fsynced, then
    replaces ``path`` in one ``os.replace``; the directory is fsynced last. If anything
    fails the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path must be a file path; got the directory {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path must be in an existing directory; got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"path {str(path)!r} already exists; refusing to overwrite it (pass overwrite=True to replace it)"
        )
    payload = {**checkpoint, "sha256": _digest(checkpoint)}
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if not isinstance(error, Exception):
            raise  # KeyboardInterrupt, SystemExit: the target is untouched, pass them on
        reason = f"could not write checkpoint {str(path)!r} ({type(error).__name__}: {error}); " + (
            "the file that was there is unchanged" if path.exists() else "no file was written"
        )
        errno = error.errno if isinstance(error, OSError) else None
        raise (OSError(errno, reason) if errno is not None else OSError(reason)) from error
    _fsync_directory(path.parent)
    logger.debug("wrote checkpoint %s", path)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); some file systems refuse, which only costs durability."""
    if os.name == "nt":
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        logger.warning("could not fsync directory %s after a checkpoint save: %s", directory, error)


# ---------------------------------------------------------------- loading
def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read and check a checkpoint file; nothing in the file can run code.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory (see :func:`latest_checkpoint`).
        UnsafeCheckpointError: the file would run code when loaded (nothing in it ran).
        CheckpointError: the file is truncated, corrupted, or not a seqclf checkpoint.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path must name an existing file; got {str(path)!r}, which does not exist")
    if path.is_dir():
        raise IsADirectoryError(
            f"checkpoint path must name a file; got the directory {str(path)!r} "
            "(latest_checkpoint(directory) picks its newest checkpoint)"
        )
    with open(path, "rb") as file:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
                data = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            if found is not None:
                raise UnsafeCheckpointError(
                    f"refused to load {str(path)!r}: a checkpoint must hold only tensors and plain data; "
                    f"got a file that would import and call {found.group(1)} when unpickled. Nothing in it was run."
                ) from None
            raise _unreadable(path, error) from None
        except Exception as error:
            raise _unreadable(path, error) from error
    _check_structure(data, path)
    return data  # type: ignore[no-any-return]


def _unreadable(path: Path, error: BaseException) -> CheckpointError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else "end of file reached early"
    return CheckpointError(
        f"checkpoint {str(path)!r} must be a complete file written by seqclf; got a truncated, corrupted "
        f"or foreign file ({type(error).__name__}: {detail[:200]})"
    )


def _check_structure(data: object, path: Path) -> None:
    where = repr(str(path))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"checkpoint {where} must be a seqclf checkpoint (a dict with format={FORMAT!r}); got {got}. "
            "A plain state_dict loads with model.load_state_dict(torch.load(path, weights_only=True))."
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where} must have format_version <= {FORMAT_VERSION} (seqclf {__version__}); "
            f"got {version!r}, written by seqclf {data.get('seqclf_version')!r}: upgrade seqclf to read it"
        )
    stored = data.pop("sha256", None)
    actual = _digest(data)
    if stored != actual:
        raise CheckpointError(
            f"checkpoint {where} is corrupted: its content must match the SHA-256 checksum stored in it; "
            f"got {actual[:16]}... for a stored {str(stored)[:16]}..."
        )
    expected: list[tuple[str, Any, type | tuple[type, ...]]] = [
        ("model", data, dict),
        ("optimizer", data, dict),
        ("trainer", data, dict),
        ("callbacks", data, list),
        ("rng", data, dict),
        ("history", data, list),
        ("state_dict", data.get("model"), dict),
        ("config", data.get("model"), (dict, type(None))),
        ("state", data.get("trainer"), dict),
    ]
    for key, parent, kind in expected:
        value = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(value, kind):
            raise CheckpointError(
                f"checkpoint {where} is not a valid seqclf checkpoint: {key!r} must be "
                f"{_kind_name(kind)}; got {type(value).__name__}"
            )
    if data.get("torch_version") != torch.__version__:
        logger.info(
            "checkpoint %s was written with torch %s (this is %s): a resumed run may differ in the last bits",
            path, data.get("torch_version"), torch.__version__,
        )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else f"a {k.__name__}" for k in kinds)


# -------------------------------------------------------------- restoring
def stored_model_config(checkpoint: dict[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` a checkpoint of a :class:`SequenceClassifier` was written with."""
    config = checkpoint["model"]["config"]
    if config is None:
        raise CheckpointError(
            "checkpoint must hold a SequenceClassifier config to rebuild the model; got a "
            f"{checkpoint['model']['class']} without one: build that model yourself and load the checkpoint "
            "with load_model_state(model, checkpoint) or Trainer.fit(..., resume_from=path)"
        )
    try:
        return ModelConfig.from_dict(config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint model config is invalid: {error}") from error


def load_model_state(model: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Load a checkpoint's weights into ``model`` after checking it was built the same way.

    Raises:
        CheckpointError: naming every config field that differs (or the weights that do not fit).
    """
    stored = checkpoint["model"]
    config = getattr(model, "config", None)
    if callable(getattr(config, "to_dict", None)) and stored["config"] is not None:
        assert config is not None
        ours, theirs = config.to_dict(), stored["config"]
        differ = sorted(key for key in {*ours, *theirs} if ours.get(key, "<unset>") != theirs.get(key, "<unset>"))
        if differ:
            details = ", ".join(f"{k}={theirs.get(k, '<unset>')!r} vs {ours.get(k, '<unset>')!r}" for k in differ)
            raise CheckpointError(
                f"model config must match the checkpoint's; fields {differ} differ (checkpoint vs model: {details})"
            )
    elif stored["class"] != type(model).__name__:
        raise CheckpointError(f"model must be a {stored['class']} like the checkpoint's; got {type(model).__name__}")
    try:
        model.load_state_dict(stored["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint weights must fit the model; got: {error}") from error


def restore_checkpoint(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Put ``trainer`` (model, optimizer, callbacks, state, history, RNGs) where the checkpoint left off.

    Everything that can fail is checked before the trainer is changed.
    """
    saved = checkpoint["trainer"]
    if saved.get("global_batch_size") != trainer.global_batch_size:
        raise CheckpointError(
            "batch_size * processes must equal the checkpoint's global batch to resume its epochs "
            f"exactly: expected {saved.get('global_batch_size')!r} (batch_size {saved.get('batch_size')!r} "
            f"on {saved.get('world_size')!r} processes); got {trainer.global_batch_size} "
            f"(batch_size {trainer.batch_size} on {trainer.world_size})"
        )
    optimizer = checkpoint["optimizer"]
    if optimizer.get("class") != type(trainer.optimizer).__name__:
        raise CheckpointError(
            f"optimizer must be a {optimizer.get('class')} like the checkpoint's; "
            f"got {type(trainer.optimizer).__name__}"
        )
    state = trainer.state
    defaults = type(state)(seed=0)
    known = {f.name for f in fields(state)}
    values: dict[str, Any] = saved["state"]
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"checkpoint trainer state must have fields among {sorted(known)}; got unknown fields {unknown}"
        )
    for name, value in values.items():
        expected = type(getattr(defaults, name))
        if expected is type(None):
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CheckpointError(
                f"checkpoint trainer state {name} must be a {expected.__name__}; got {type(value).__name__}"
            )
    load_model_state(trainer.model, checkpoint)
    try:
        trainer.optimizer.load_state_dict(optimizer["state_dict"])
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint optimizer state must fit this trainer's optimizer; got: {error}") from error
    for name, value in values.items():
        setattr(state, name, value.to(trainer.device) if isinstance(value, Tensor) else value)
    if not trainer.is_main_process:
        # the stored epoch sums are over all ranks: rank 0 carries them on, the others start at zero
        state.epoch_loss_sum = torch.zeros_like(state.epoch_loss_sum)
        state.epoch_correct = torch.zeros_like(state.epoch_correct)
        state.epoch_seen = 0
    _restore_callbacks(trainer, checkpoint["callbacks"])
    trainer.history.clear()
    trainer.history.extend(dict(record) for record in checkpoint["history"])
    _set_rng_states(checkpoint["rng"])
    logger.info(
        "resumed at epoch %d, batch %d (step %d)", state.epoch, state.batch_in_epoch, state.step
    )


def _restore_callbacks(trainer: Trainer, saved: list[dict[str, Any]]) -> None:
    """Give each callback the saved state of the same class and rank among callbacks of that class."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for entry in saved:
        by_class.setdefault(str(entry.get("class")), []).append(entry.get("state") or {})
    for callback in trainer.callbacks:
        states = by_class.get(type(callback).__name__, [])
        if states:
            callback.load_state_dict(states.pop(0))
        elif callback.state_dict():
            logger.warning("%r has no state in the checkpoint; it starts afresh", callback)
    for name, states in by_class.items():
        if any(states):
            logger.warning("the checkpoint holds the state of a %s callback this trainer does not have", name)


# -------------------------------------------------------------------- RNG
def _rng_states() -> dict[str, Any]:
    key, position, has_gauss, cached = _numpy_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": key, "pos": position, "has_gauss": has_gauss, "cached_gaussian": cached},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _numpy_state() -> tuple[list[int], int, int, float]:
    _, key, position, has_gauss, cached = np.random.get_state(legacy=True)
    return [int(k) for k in key], int(position), int(has_gauss), float(cached)


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = states["numpy"]
    np.random.set_state(
        ("MT19937", np.array(numpy["key"], dtype=np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning("checkpoint has RNG states of %d CUDA devices; this machine has %d: not restored",
                           len(cuda), torch.cuda.device_count())


# ------------------------------------------------------------------ utils
def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        copy = type(value)()
        for key, item in value.items():
            copy[key] = _to_cpu(item)
        metadata = getattr(value, "_metadata", None)  # a state_dict's module versions
        if metadata is not None:
            copy._metadata = metadata  # type: ignore[attr-defined]
        return copy
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _digest(data: dict[str, Any]) -> str:
    """SHA-256 of the content (every key, value and tensor byte), the ``sha256`` entry excluded."""
    sha = hashlib.sha256()
    for chunk in _chunks({key: value for key, value in data.items() if key != "sha256"}, "checkpoint"):
        sha.update(chunk)
    return sha.hexdigest()


def _chunks(value: Any, where: str) -> Iterator[bytes | memoryview]:
    if isinstance(value, Tensor):
        tensor = value.detach().cpu().contiguous()
        yield f"T{tensor.dtype}{tuple(tensor.shape)};".encode()
        yield tensor.reshape(-1).view(torch.uint8).numpy().data  # a memoryview: no copy
    elif type(value) in (dict, OrderedDict):
        yield f"D{len(value)};".encode()
        for key, item in value.items():
            yield f"{type(key).__name__}:{key!r};".encode()
            yield from _chunks(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple):
        yield f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode()
        for index, item in enumerate(value):
            yield from _chunks(item, f"{where}[{index}]")
    elif type(value) in (type(None), bool, int, float, str, bytes):  # exactly: a subclass would not load
        yield f"{type(value).__name__}:{value!r};".encode()
    else:
        raise TypeError(
            f"checkpoint values must be tensors or plain data (dict, list, tuple, str, int, float, bool, None); "
            f"got {type(value).__name__} at {where}"
        )
