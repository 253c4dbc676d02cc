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
import reprlib
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from typing_extensions import Self

from ._files import CheckpointError, digest, write_atomically
from ._formats import MODEL_FORMAT, container_of, describe
from ._model_record import rebuild_model
from ._version import __version__

__all__ = ["SerializableModel", "SerializationError", "load_safetensors", "save_safetensors"]

PathLike = str | os.PathLike[str]

FORMAT = MODEL_FORMAT
FORMAT_VERSION = "2"
"""The model file version this seqclf writes: 2 adds the ``sha256`` checksum; it reads 1 and 2."""
_READS = ("1", "2")
_MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own limit
_MAX_DIMENSION = 2**63 - 1  # a torch size is an int64

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


def _short(value: object) -> str:
    """A bounded ``repr``, whatever a crafted header holds (deep nesting, huge strings)."""
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxstring, bounded.maxother = 3, 60, 60
    return bounded.repr(value)


class SerializationError(CheckpointError):
    """A file is not a valid safetensors file, or not a model of the class asked to load it.

    A :class:`~seqclf.checkpoint.CheckpointError` (and so a ``ValueError``): one ``except``
    catches every file seqclf refuses.
    """


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
        OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
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

    def write(temporary: Path) -> None:
        with open(temporary, "xb") as file:
            for chunk in (struct.pack("<Q", len(encoded)), encoded, *chunks):
                file.write(chunk)

    write_atomically(path, write, overwrite=overwrite, what="safetensors file")


def load_safetensors(path: PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: its tensors (on the CPU) and its ``__metadata__``.

    Every part is checked: a file that is truncated, has trailing bytes, a header that is
    not JSON, unknown dtypes, sizes that do not match shapes, or overlapping or missing
    byte ranges is refused. The file is read as data only: nothing in it can run code.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SerializationError: the file is not a valid safetensors file (the message says why,
            and for another kind of seqclf file, which call reads it).
    """
    _require_little_endian()
    data = Path(path).read_bytes()
    where = f"{str(path)!r}"
    if container_of(data[:16], len(data)) in ("torch", "onnx"):
        raise SerializationError(f"{where} must be a safetensors file; got {describe(path)}")
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
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: bad JSON, or an int of too many digits
        raise SerializationError(f"{where} is not a safetensors file: its header is not JSON ({error})") from None
    except RecursionError:
        raise SerializationError(f"{where} is not a safetensors file: its header is nested too deeply") from None
    if not isinstance(header, dict):
        raise SerializationError(
            f"{where} is not a safetensors file: its header is a {type(header).__name__}, not an object"
        )
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SerializationError(f"{where}: __metadata__ must map str to str; got {_short(metadata)}")
    buffer = data[8 + header_size :]
    # ordered as the safetensors package checks them: by (begin, end), so an empty tensor goes before its neighbour
    entries = sorted((_entry(where, name, info) for name, info in header.items()), key=lambda e: (e[3], e[4]))
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
        try:
            if end == start:
                tensors[name] = torch.empty(shape, dtype=dtype)
            else:
                tensors[name] = torch.frombuffer(bytearray(buffer[start:end]), dtype=dtype).reshape(shape)
        except (RuntimeError, TypeError, ValueError, OverflowError) as error:  # a size torch cannot hold
            raise SerializationError(f"{where}: tensor {name!r} of shape {shape} cannot be built ({error})") from None
    return tensors, dict(metadata)


def _entry(where: str, name: str, info: Any) -> tuple[str, torch.dtype, list[int], int, int]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise SerializationError(
            f"{where}: tensor {_short(name)} must have exactly dtype, shape and data_offsets; got {_short(info)}"
        )
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise SerializationError(
            f"{where}: tensor {name!r} has dtype {_short(dtype)}; expected one of {sorted(_DTYPES)}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= _MAX_DIMENSION for n in shape
    ):
        raise SerializationError(
            f"{where}: tensor {name!r} has shape {_short(shape)}; expected a list of non-negative int64 sizes"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in offsets)
        or offsets[0] > offsets[1]
    ):
        raise SerializationError(
            f"{where}: tensor {name!r} has data_offsets {_short(offsets)}; expected [begin, end]"
        )
    size = math.prod(shape) * _DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != size:
        raise SerializationError(
            f"{where} is corrupt: tensor {name!r} of dtype {dtype} and shape {_short(shape)} needs {size} bytes; "
            f"its data_offsets hold {offsets[1] - offsets[0]}"
        )
    return name, _DTYPES[dtype], shape, offsets[0], offsets[1]


def _require_little_endian() -> None:
    if sys.byteorder != "little":
        raise NotImplementedError("safetensors files are little-endian; this reader supports little-endian hosts only")


# ------------------------------------------------------- seqclf's own files
def _checksum(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 of every tensor (name, dtype, shape, bytes) and metadata entry but ``sha256`` itself."""
    return digest(
        {
            "metadata": {key: metadata[key] for key in sorted(metadata) if key != "sha256"},
            "tensors": {name: tensors[name] for name in sorted(tensors)},
        }
    )


def _save_file(tensors: Mapping[str, Tensor], path: PathLike, metadata: dict[str, str], *, overwrite: bool) -> None:
    """Write a seqclf model or estimator file: ``tensors`` and ``metadata``, with the seqclf version and a checksum."""
    metadata = {**metadata, "seqclf_version": __version__}
    tensors = {name: tensor.detach().cpu() for name, tensor in tensors.items()}
    metadata["sha256"] = _checksum(tensors, metadata)
    save_safetensors(tensors, path, metadata=metadata, overwrite=overwrite)


def _load_file(
    path: PathLike, file_format: str, versions: tuple[str, ...]
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a seqclf file of ``file_format``, check its version and checksum; refuse any other kind of file.

    Raises:
        SerializationError: the file is damaged, of another kind or version, or its checksum does not match.
    """
    tensors, metadata = load_safetensors(path)
    where = f"{str(path)!r}"
    if metadata.get("format") != file_format:
        kind = "a seqclf model file" if file_format == MODEL_FORMAT else "a seqclf estimator file"
        raise SerializationError(
            f"{where} must be {kind} (format={file_format!r} in its metadata); got {describe(path)}"
        )
    version = metadata.get("format_version")
    if version not in versions:
        raise SerializationError(
            f"{where} has {file_format} format version {version!r}; this seqclf ({__version__}) reads versions "
            f"{list(versions)}: upgrade seqclf to read it"
        )
    stored = metadata.get("sha256")
    if stored is None and version != "1":  # only version 1 model files have no checksum
        raise SerializationError(f"{where} is corrupted: it must hold a sha256 checksum in its metadata; got none")
    if stored is not None and stored != (actual := _checksum(tensors, metadata)):
        raise SerializationError(
            f"{where} is corrupted: its content must match the SHA-256 checksum stored in it; "
            f"got {actual[:16]}... for a stored {stored[:16]}..."
        )
    return tensors, metadata


def _model_class(name: object, where: str) -> type[nn.Module]:
    """The seqclf model class (a :class:`SerializableModel`) called ``name``; only those can be named by a file."""
    found: dict[str, type[nn.Module]] = {}
    pending: list[type] = [SerializableModel]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if issubclass(cls, nn.Module):
            found.setdefault(cls.__name__, cls)
    if not isinstance(name, str) or name not in found:
        raise SerializationError(f"{where} holds a model of class {_short(name)}; expected one of {sorted(found)}")
    return found[name]


def _model_from_config(cls: type[nn.Module], config: object, tensors: Mapping[str, Tensor], where: str) -> nn.Module:
    """``cls`` built from its ``config`` (a JSON string) and given ``tensors`` as its weights, in eval mode.

    The model is first built on the meta device (no memory) and the tensors loaded into it:
    a config that describes weights of other names or shapes (say, a far larger model than
    the file holds) is refused before anything is allocated. A stored tensor must be of the
    same kind (floating point, integer or bool) as the model's: none is cast into another.
    """
    config_class = getattr(cls, "config_class", None)
    from_config = getattr(cls, "from_config", None)
    try:
        parsed = json.loads(config) if isinstance(config, str) else None
        if not isinstance(parsed, dict) or config_class is None or from_config is None:
            raise TypeError(f"config must be a JSON object; got {_short(config)}")
        built = config_class.from_dict(parsed)
        with torch.device("meta"):
            skeleton: nn.Module = from_config(built)
    except (TypeError, ValueError, KeyError, RuntimeError, RecursionError) as error:
        raise SerializationError(f"{where} holds an invalid {cls.__name__} config: {_clip(str(error))}") from None
    _check_fit(skeleton, tensors, where, cls.__name__)
    model: nn.Module = from_config(built)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise SerializationError(
            f"{where}: its weights do not fit its {cls.__name__} config: {_clip(str(error))}"
        ) from None
    return model.eval()


def _clip(text: str, size: int = 600) -> str:
    """``text`` on one line and at most ``size`` characters (torch's messages list every weight)."""
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size] + " ..."


def _check_fit(skeleton: nn.Module, tensors: Mapping[str, Tensor], where: str, name: str) -> None:
    """Refuse ``tensors`` that cannot be the weights of ``skeleton`` (a model on the meta device).

    They are loaded into it as ``load_state_dict`` would load them into the model (the
    model's own hooks may rename the weights of older files), which checks every name and
    shape without allocating memory; then each tensor's kind (floating point, integer or
    bool) must be the model's: ``load_state_dict`` would cast an int64 counter or a bool
    flag into a weight silently.

    Raises:
        SerializationError: naming the weights that do not fit, or each tensor of another kind.
    """
    expected = {key: value.dtype for key, value in skeleton.state_dict().items()}
    _refuse_other_kinds(tensors, expected, where)  # names as saved (torch 2.2 fails on them in load_state_dict)
    for parameter in skeleton.parameters():
        parameter.requires_grad_(False)  # so that an integer tensor can stand in for a weight, and be named below
    try:
        skeleton.load_state_dict({key: value.to("meta") for key, value in tensors.items()}, assign=True)
    except RuntimeError as error:
        raise SerializationError(f"{where}: its weights do not fit its {name} config: {_clip(str(error))}") from None
    _refuse_other_kinds(skeleton.state_dict(), expected, where)  # names after the model's own renaming


def _refuse_other_kinds(tensors: Mapping[str, Tensor], expected: Mapping[str, torch.dtype], where: str) -> None:
    wrong = [
        f"{key} is {value.dtype}, the model's is {expected[key]}"
        for key, value in tensors.items()
        if key in expected and _kind(value.dtype) != _kind(expected[key])
    ]
    if wrong:
        raise SerializationError(
            f"{where}: its tensors must have the dtype kind (float, integer or bool) of the model's; got "
            f"{'; '.join(wrong[:5])}. A tensor is never cast to another kind"
        )


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    return "float" if dtype.is_floating_point else "integer"


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
        """Write the weights and config to one safetensors file at ``path``, with a SHA-256 checksum.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
            OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
        """
        if not isinstance(self, nn.Module):
            raise TypeError(f"save needs an nn.Module; got {type(self).__name__}")
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_class": type(self).__name__,
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
        }
        _save_file(self.state_dict(), path, metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """The model saved at ``path`` by :meth:`save`, in eval mode.

        Raises:
            SerializationError: the file is corrupt or truncated, is not a seqclf model
                file (the message names what it is and the call that reads it), holds
                another model class, or its weights do not fit its config.
        """
        tensors, metadata = _load_file(path, FORMAT, _READS)
        where = f"{str(path)!r}"
        stored_class = metadata.get("model_class")
        if stored_class != cls.__name__:
            raise SerializationError(
                f"{where} holds a {stored_class} model, not a {cls.__name__}; load it with {stored_class}.load"
            )
        model = _model_from_config(cls, metadata.get("config"), tensors, where)  # type: ignore[arg-type]
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
