"""Checkpoint files: where they go, how they are named, written and read. Nothing else.

A checkpoint is the dict :meth:`seqclf.Trainer.state_dict` returns (model config and
weights, optimizer, callbacks, history, run state and every process's random generators)
plus a header: the format, its version, the seqclf and torch versions and a SHA-256
checksum of the content. This module only writes and reads such files; it knows nothing
of the trainer (the trainer checks what a file holds when it loads it).

Writing is atomic: the file is written to a temporary file in the same directory,
flushed and fsynced, then moved over the target with ``os.replace`` and the directory is
fsynced. A crash or a full disk during a save leaves the previous files as they were.

Reading never runs code from the file: it uses ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain data, then checks the format, the version and the
checksum (a flipped bit in the weights is caught, not loaded).

Examples:
    >>> save_checkpoint(trainer.state_dict(), "run.pt")  # doctest: +SKIP
    >>> trainer.load_state_dict(load_checkpoint("run.pt"))  # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._files import FORMAT, FORMAT_VERSION, CheckpointError, PathLike, UnsafeCheckpointError, read_file, write_file

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "UnsafeCheckpointError",
    "checkpoint_files",
    "checkpoint_name",
    "latest_checkpoint",
    "load_checkpoint",
    "remove_temporary_files",
    "save_checkpoint",
    "step_of",
]

_NAME = re.compile(r"^step-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\.step-\d+\.pt\.[0-9a-f]+\.tmp$")


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

    Examples:
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


# ------------------------------------------------------------ write, read
def save_checkpoint(state: dict[str, Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``state`` (e.g. ``trainer.state_dict()``) with a header and checksum to ``path`` atomically.

    Raises:
        TypeError: ``state`` is not a dict, or holds a value that is not a tensor or plain data
            (nothing is written).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict such as trainer.state_dict(); got {type(state).__name__}")
    return write_file(state, path, overwrite=overwrite)


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint file and check its format, version and checksum; nothing in the file can run code.

    The result goes to :meth:`seqclf.Trainer.load_state_dict`, which checks that it fits.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory (see :func:`latest_checkpoint`).
        UnsafeCheckpointError: the file would run code when loaded (nothing in it ran).
        CheckpointError: the file is truncated, corrupted, or not a seqclf checkpoint.
    """
    return read_file(path)
