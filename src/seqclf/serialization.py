"""One-file model save and load in the safetensors format: weights plus config, no pickle.

A safetensors file is an 8-byte little-endian header length, a JSON header (each
tensor's dtype, shape and byte range, and a ``__metadata__`` map of strings) and the raw
little-endian tensor bytes. The format is small enough to read and write here without a
dependency, and the files are interchangeable with the ``safetensors`` package's.

A model file stores its class name and config (JSON) in the metadata, so
``Model.load(path)`` rebuilds the model without running any code from the file. Any
seqclf model class that has a frozen ``config`` dataclass (with ``to_dict`` and
``from_dict``), a ``config_class`` class attribute and a ``from_config`` class method
gets ``save`` and ``load`` by inheriting :class:`SerializableModel`.

Examples:
    >>> model.save("model.safetensors")  # doctest: +SKIP
    >>> model = SequenceClassifier.load("model.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from typing_extensions import Self

from ._files import move_into_place
from ._model_record import rebuild_model
from ._version import __version__

__all__ = ["SerializableModel", "SerializationError", "load_safetensors", "save_safetensors"]

PathLike = str | os.PathLike[str]

FORMAT = "seqclf-model"
FORMAT_VERSION = "1"
_MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own limit

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


class SerializationError(ValueError):
    """A file is not a valid safetensors file, or not a model of the class asked to load it."""


# ------------------------------------------------------------------ format
def save_safetensors(
    tensors: Mapping[str, Tensor],
    path: PathLike,
    *,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``tensors`` (and string ``metadata``) to ``path`` in the safetensors format.

    The write is atomic (a temporary file next to ``path``, fsynced, then moved into place),
    and an existing ``path`` is refused unless ``overwrite=True``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        TypeError: a name or metadata entry is not a string, or a value is not a tensor.
        ValueError: a tensor's dtype has no safetensors name.
    """
    _require_little_endian()
    header: dict[str, Any] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata must map str to str; got {key!r}: {type(value).__name__}")
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(f"tensor names must be strings other than '__metadata__'; got {name!r}")
        if not isinstance(tensor, Tensor):
            raise TypeError(f"tensors[{name!r}] must be a torch.Tensor; got {type(tensor).__name__}")
        if tensor.dtype not in _NAMES:
            raise ValueError(f"tensors[{name!r}] has dtype {tensor.dtype}; expected one of {sorted(_DTYPES)}")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        header[name] = {
            "dtype": _NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as the safetensors package writes it
    write_atomically(path, [struct.pack("<Q", len(encoded)), encoded, *chunks], overwrite=overwrite)


def load_safetensors(path: PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: its tensors (on the CPU) and its ``__metadata__``.

    Every part is checked: a file that is truncated, has trailing bytes, a header that is
    not JSON, unknown dtypes, sizes that do not match shapes, or overlapping or missing
    byte ranges is refused.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SerializationError: the file is not a valid safetensors file (the message says why).
    """
    _require_little_endian()
    data = Path(path).read_bytes()
    where = f"{str(path)!r}"
    if len(data) < 8:
        raise SerializationError(
            f"{where} is not a safetensors file: {len(data)} bytes, shorter than the 8-byte header length"
        )
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise SerializationError(
            f"{where} is truncated or not a safetensors file: its header length is {header_size} bytes "
            f"but the file has {len(data) - 8} bytes after it"
        )
    try:
        header = json.loads(data[8 : 8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SerializationError(f"{where} is not a safetensors file: its header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise SerializationError(
            f"{where} is not a safetensors file: its header is a {type(header).__name__}, not an object"
        )
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SerializationError(f"{where}: __metadata__ must map str to str; got {metadata!r}")
    buffer = data[8 + header_size :]
    entries = sorted((_entry(where, name, info) for name, info in header.items()), key=lambda e: e[3])
    expected_start = 0
    for name, _dtype, _shape, start, end in entries:
        if start != expected_start:
            raise SerializationError(
                f"{where} is corrupt: tensor {name!r} starts at byte {start}, expected {expected_start} "
                "(byte ranges must be contiguous and not overlap)"
            )
        expected_start = end
    if expected_start != len(buffer):
        state = "truncated" if expected_start > len(buffer) else "corrupt"
        raise SerializationError(
            f"{where} is {state}: its tensors need {expected_start} data bytes, the file has {len(buffer)}"
        )
    tensors: dict[str, Tensor] = {}
    for name, dtype, shape, start, end in entries:
        if end == start:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(buffer[start:end]), dtype=dtype).reshape(shape)
    return tensors, dict(metadata)


def _entry(where: str, name: str, info: Any) -> tuple[str, torch.dtype, list[int], int, int]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise SerializationError(
            f"{where}: tensor {name!r} must have exactly dtype, shape and data_offsets; got {info!r}"
        )
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in _DTYPES:
        raise SerializationError(f"{where}: tensor {name!r} has dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise SerializationError(f"{where}: tensor {name!r} has shape {shape!r}; expected a list of non-negative ints")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in offsets)
        or offsets[0] > offsets[1]
    ):
        raise SerializationError(f"{where}: tensor {name!r} has data_offsets {offsets!r}; expected [begin, end]")
    size = math.prod(shape) * _DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != size:
        raise SerializationError(
            f"{where} is corrupt: tensor {name!r} of dtype {dtype} and shape {shape} needs {size} bytes; "
            f"its data_offsets hold {offsets[1] - offsets[0]}"
        )
    return name, _DTYPES[dtype], shape, offsets[0], offsets[1]


def _require_little_endian() -> None:
    if sys.byteorder != "little":
        raise NotImplementedError("safetensors files are little-endian; this reader supports little-endian hosts only")


def write_atomically(path: PathLike, chunks: list[bytes], *, overwrite: bool) -> None:
    """Write ``chunks`` to ``path`` through a fsynced temporary file.

    An existing ``path`` is refused unless ``overwrite`` is True.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(
            f"path {str(path)!r} already exists; refusing to overwrite it (pass overwrite=True to replace it)"
        )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        move_into_place(temporary, path, overwrite=overwrite)
    finally:
        if temporary.exists():
            temporary.unlink()


# ------------------------------------------------------------------ models
class SerializableModel:
    """Gives a seqclf model class ``save``, ``load`` (safetensors, no pickle) and ``from_checkpoint``.

    The class must be an ``nn.Module`` with a ``config`` (a frozen dataclass with
    ``to_dict``/``from_dict``), name that dataclass in ``config_class``, and build itself
    with ``from_config(config)``.
    """

    config_class: ClassVar[Any]
    config: Any

    def save(self, path: PathLike, *, overwrite: bool = False) -> None:
        """Write the weights and config to one safetensors file at ``path``.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        if not isinstance(self, nn.Module):
            raise TypeError(f"save needs an nn.Module; got {type(self).__name__}")
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_class": type(self).__name__,
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "seqclf_version": __version__,
        }
        save_safetensors(self.state_dict(), path, metadata=metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """The model saved at ``path`` by :meth:`save`, in eval mode.

        Raises:
            SerializationError: the file is corrupt or truncated, is not a seqclf model
                file, holds another model class, or its weights do not fit its config.
        """
        tensors, metadata = load_safetensors(path)
        where = f"{str(path)!r}"
        if metadata.get("format") != FORMAT:
            raise SerializationError(
                f"{where} is a safetensors file but not a seqclf model file (no format={FORMAT!r} in its metadata); "
                "a plain state_dict loads with model.load_state_dict"
            )
        if metadata.get("format_version") != FORMAT_VERSION:
            raise SerializationError(
                f"{where} has model file format version {metadata.get('format_version')!r}; "
                f"this seqclf reads version {FORMAT_VERSION!r}"
            )
        stored_class = metadata.get("model_class")
        if stored_class != cls.__name__:
            raise SerializationError(
                f"{where} holds a {stored_class} model, not a {cls.__name__}; load it with {stored_class}.load"
            )
        try:
            config = cls.config_class.from_dict(json.loads(metadata["config"]))
        except (KeyError, json.JSONDecodeError, TypeError, ValueError) as error:
            raise SerializationError(f"{where} holds an invalid {cls.__name__} config: {error}") from None
        model = cls.from_config(config)  # type: ignore[attr-defined]
        try:
            model.load_state_dict(tensors)
        except RuntimeError as error:
            raise SerializationError(f"{where}: its weights do not fit its {cls.__name__} config: {error}") from None
        model.eval()
        assert isinstance(model, cls)
        return model

    @classmethod
    def from_checkpoint(cls, path: PathLike) -> Self:
        """The model in a trainer checkpoint, rebuilt from its stored config and weights, in eval mode.

        The file is read safely (nothing in it can run code) and its checksum checked.

        Raises:
            CheckpointError: the file holds another class, no config, or weights that do not fit.
        """
        model: Self = rebuild_model(cls, cls.config_class, path)  # type: ignore[type-var]
        return model
