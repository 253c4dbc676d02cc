"""The file layer under checkpoints and saved models: atomic writes, checksums, safe reads.

It knows nothing of the trainer or of any model: it writes one dict of tensors and plain
data to a file, and reads such a file back without running anything in it.

Writing is atomic: the data goes to a temporary file in the same directory, which is
flushed and fsynced, then moved over the target with ``os.replace``; the directory is
fsynced last. A crash or a full disk during a write leaves the previous file as it was.

Reading never runs code from the file: it uses ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain data, then checks the format, the format version
and a SHA-256 checksum of the content (a flipped bit in the weights is caught, not loaded).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ._formats import CHECKPOINT_FORMAT, OLD_ESTIMATOR_KIND, container_of, describe, torch_reason
from ._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "PathLike",
    "UnsafeCheckpointError",
    "check_target",
    "digest",
    "move_into_place",
    "read_file",
    "to_cpu",
    "write_atomically",
    "write_file",
]

logger = logging.getLogger(__name__)

FORMAT = CHECKPOINT_FORMAT
"""The ``format`` field of every seqclf checkpoint."""
FORMAT_VERSION = 2
"""The layout version this seqclf writes; it reads this version and older ones."""

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A file is not a usable seqclf file: truncated, corrupted, unsafe, of another kind, or it does not fit.

    Every seqclf loader raises it (or its subclasses :class:`UnsafeCheckpointError` and
    :class:`seqclf.serialization.SerializationError`) for a file it cannot use.
    """


class UnsafeCheckpointError(CheckpointError):
    """A file would run code when unpickled; it was refused before anything in it ran."""


# public names of seqclf.checkpoint, which re-exports them
CheckpointError.__module__ = UnsafeCheckpointError.__module__ = "seqclf.checkpoint"


def write_file(content: dict[str, Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``content`` with the format header and its SHA-256 checksum to ``path`` atomically.

    Raises:
        IsADirectoryError, FileNotFoundError: ``path`` is a directory, or its directory is missing.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        TypeError: a value is not a tensor or plain data (nothing is written).
        OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
    """
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqclf_version": __version__,
        "torch_version": str(torch.__version__),
    }
    payload = {**header, **{key: value for key, value in content.items() if key not in header}}
    check_target(path, overwrite=overwrite)
    payload["sha256"] = digest(payload)

    def save(temporary: Path) -> None:
        with open(temporary, "xb") as file:
            torch.save(payload, file)

    return write_atomically(path, save, overwrite=overwrite, what="checkpoint")


def check_target(path: PathLike, *, overwrite: bool) -> Path:
    """``path`` as a Path, once it is known to be a file path that may be written.

    Raises:
        IsADirectoryError, FileNotFoundError: ``path`` is a directory, or its directory is missing.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path must be a file path; got the directory {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path must be in an existing directory; got {str(path)!r}")
    if path.exists() and not overwrite:
        raise _refuse_overwrite(path)
    return path


def write_atomically(path: PathLike, write: Callable[[Path], None], *, overwrite: bool, what: str = "file") -> Path:
    """Have ``write`` fill a new temporary file next to ``path``, fsync it, then move it to ``path`` in one step.

    Every file seqclf writes (checkpoints, model and estimator files, ONNX files) goes
    through here: a crash, a full disk or an error in ``write`` leaves any file at ``path``
    as it was and no temporary file behind, and an existing ``path`` is replaced only
    with ``overwrite=True`` (not even a file that appears while ``write`` runs).

    Args:
        path: the file to write.
        write: called with the temporary file's path; it creates that file and writes it.
        overwrite: replace ``path`` if it exists.
        what: what the file is, for the error message (``"checkpoint"``, ``"model file"``...).

    Raises:
        IsADirectoryError, FileNotFoundError: ``path`` is a directory, or its directory is missing.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: writing failed (e.g. a full disk); the message says that ``path`` is unchanged.
        Exception: whatever else ``write`` raised, unchanged (nothing was written).
    """
    path = check_target(path, overwrite=overwrite)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        with open(temporary, "rb+") as file:  # whatever wrote it, its bytes reach the disk before the move
            os.fsync(file.fileno())
        move_into_place(temporary, path, overwrite=overwrite)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if not isinstance(error, OSError) or isinstance(error, FileExistsError):
            raise  # Ctrl-C, a refused overwrite, or an error of write's own: the target is untouched, pass it on
        reason = f"could not write {what} {str(path)!r} ({type(error).__name__}: {error}); " + (
            "the file that was there is unchanged" if path.exists() else "no file was written"
        )
        raise (OSError(error.errno, reason) if error.errno is not None else OSError(reason)) from error
    logger.debug("wrote %s %s", what, path)
    return path


def _refuse_overwrite(path: Path) -> FileExistsError:
    """The one message for a save that would replace an existing file."""
    return FileExistsError(
        f"path {str(path)!r} already exists; refusing to overwrite it (pass overwrite=True to replace it)"
    )


def move_into_place(temporary: Path, path: Path, *, overwrite: bool) -> None:
    """Move a finished ``temporary`` file to ``path`` in one step, then fsync the directory.

    Without ``overwrite`` a file is never replaced, not even one that appeared after the
    caller checked: the move is a hard link, which fails if ``path`` exists.
    """
    if overwrite:
        os.replace(temporary, path)
        _fsync_directory(path.parent)
        return
    try:
        os.link(temporary, path)  # fails if path appeared meanwhile: no file is ever replaced
    except FileExistsError:
        raise _refuse_overwrite(path) from None
    except OSError:  # a filesystem without hard links
        if path.exists():
            raise _refuse_overwrite(path) from None
        os.replace(temporary, path)
    else:
        temporary.unlink()
    _fsync_directory(path.parent)


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
        logger.warning("could not fsync directory %s after a save: %s", directory, error)


def read_file(path: PathLike, *, kind: Literal["checkpoint", "estimator"] = "checkpoint") -> dict[str, Any]:
    """Read a file :func:`write_file` wrote, and check its format and checksum; nothing in it can run code.

    ``kind`` is what the caller reads: a training checkpoint, or an estimator file of
    the older torch format. Any other kind of file is refused with a message naming what it is and the
    call that reads it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        UnsafeCheckpointError: the file would run code when loaded (nothing in it ran).
        CheckpointError: the file is truncated, corrupted, not a seqclf checkpoint, or another kind of file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} path must name an existing file; got {str(path)!r}, which does not exist")
    if path.is_dir():
        hint = " (latest_checkpoint(directory) picks its newest checkpoint)" if kind == "checkpoint" else ""
        raise IsADirectoryError(f"{kind} path must name a file; got the directory {str(path)!r}{hint}")
    with open(path, "rb") as file:
        if container_of(file.read(16), path.stat().st_size) in ("safetensors", "onnx"):
            raise _wrong_kind(path, kind)
        file.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
                data = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            # "Unsupported global: GLOBAL posix.system" (recent torch) or "Unsupported class posix.system" (torch 2.2)
            found = re.search(r"(?:GLOBAL|Unsupported class) ([\w.]+)", str(error))
            if found is not None:
                what = "checkpoint" if kind == "checkpoint" else "seqclf file"
                raise UnsafeCheckpointError(
                    f"refused to load {str(path)!r}: a {what} must hold only tensors and plain data; "
                    f"got a file that would import and call {found.group(1)} when unpickled. Nothing in it was run."
                ) from None
            raise _unreadable(path, error) from None
        except Exception as error:
            raise _unreadable(path, error) from error
    _check_header(data, path)
    is_estimator = data.get("kind") == OLD_ESTIMATOR_KIND
    if is_estimator != (kind == "estimator"):
        raise _wrong_kind(path, kind)
    return data  # type: ignore[no-any-return]


def _wrong_kind(path: Path, kind: str) -> CheckpointError:
    what = "a seqclf training checkpoint" if kind == "checkpoint" else "a seqclf estimator file"
    found = describe(path) or "a file of another kind"
    return CheckpointError(f"{str(path)!r} must be {what}; got {found}")


def _unreadable(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {str(path)!r} must be a complete file written by seqclf; got a truncated, corrupted "
        f"or foreign file ({type(error).__name__}: {torch_reason(error)})"
    )


def _check_header(data: object, path: Path) -> None:
    where = repr(str(path))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"checkpoint {where} must be a seqclf checkpoint (a dict with format={FORMAT!r}); got a PyTorch file "
            f"that is not a seqclf file ({got}): if it holds a state_dict, load it with "
            "model.load_state_dict(torch.load(path, weights_only=True))"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where} must have format_version <= {FORMAT_VERSION} (seqclf {__version__}); "
            f"got {version!r}, written by seqclf {data.get('seqclf_version')!r}: upgrade seqclf to read it"
        )
    stored = data.pop("sha256", None)
    actual = digest(data)
    if stored != actual:
        raise CheckpointError(
            f"checkpoint {where} is corrupted: its content must match the SHA-256 checksum stored in it; "
            f"got {actual[:16]}... for a stored {str(stored)[:16]}..."
        )
    if data.get("torch_version") != torch.__version__:
        logger.info(
            "checkpoint %s was written with torch %s (this is %s): a resumed run may differ in the last bits",
            path, data.get("torch_version"), torch.__version__,
        )


def to_cpu(value: Any) -> Any:
    """A copy of ``value`` with every tensor in it detached and on the CPU.

    Tensors are always copied, also those already on the CPU, so that a state taken
    now does not change as training goes on (``Tensor.cpu()`` alone would share memory).
    """
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copy = type(value)()
        for key, item in value.items():
            copy[key] = to_cpu(item)
        metadata = getattr(value, "_metadata", None)  # a state_dict's module versions
        if metadata is not None:
            copy._metadata = metadata  # type: ignore[attr-defined]
        return copy
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


def digest(data: dict[str, Any]) -> str:
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
