"""Which kind of file a path holds, and which seqclf call reads it: for the message of a loader handed the wrong file.

seqclf writes four kinds of file: training checkpoints (``save_checkpoint``, a torch
file), model files (``model.save``, safetensors), estimator files
(``SequenceClassifierEstimator.save``, safetensors; formerly a torch file) and
ONNX files (``to_onnx``). Each loader that finds another kind names the kind and the call
that reads it. Identifying a file never runs code from it, and never fails: a file it
cannot tell is ``None``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Literal

import torch

__all__ = ["Container", "container_of", "describe", "torch_reason"]

Container = Literal["safetensors", "torch", "onnx", "unknown"]

MODEL_FORMAT = "seqclf-model"
"""The ``format`` metadata of a model file (``model.save``)."""
ESTIMATOR_FORMAT = "seqclf-estimator"
"""The ``format`` metadata of an estimator file (``SequenceClassifierEstimator.save``)."""
CHECKPOINT_FORMAT = "seqclf.checkpoint"
"""The ``format`` field of a checkpoint (and of an estimator file in the older torch format, which adds ``kind``)."""
OLD_ESTIMATOR_KIND = "seqclf.sklearn"
"""The ``kind`` field of an estimator file in the older torch format."""
ESTIMATOR_LOADER = "seqclf.sklearn.SequenceClassifierEstimator.load(path)"

_MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own limit


def container_of(head: bytes, size: int) -> Container:
    """The container format of a file from its first bytes ``head`` (at least 9 of them) and its ``size``."""
    if len(head) >= 9 and head[8:9] == b"{":
        (header_size,) = struct.unpack("<Q", head[:8])
        if header_size <= min(_MAX_HEADER_BYTES, size - 8):
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save: a zip archive, or a pickle (before torch 1.6)
        return "torch"
    if head[:1] == b"\x08" and head[2:3] == b"\x12":  # ONNX ModelProto: ir_version, then producer_name
        return "onnx"
    return "unknown"


def describe(path: str | os.PathLike[str]) -> str | None:
    """``"a seqclf model file of a LSTMFCN: load it with LSTMFCN.load(path)"`` and the like; None if unknown.

    Never suggests loading with ``weights_only=False``: no seqclf file needs it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return None
    container = container_of(head, size)
    if container == "safetensors":
        return _describe_safetensors(path)
    if container == "torch":
        return _describe_torch(path)
    if container == "onnx":
        return "an ONNX model (written by seqclf.export.to_onnx): run it with onnxruntime.InferenceSession(path)"
    return None


def _describe_safetensors(path: Path) -> str:
    metadata: object = {}
    with contextlib.suppress(Exception):  # a damaged header: it is still a safetensors file
        with open(path, "rb") as file:
            (header_size,) = struct.unpack("<Q", file.read(8))
            metadata = json.loads(file.read(header_size)).get("__metadata__", {})
    if not isinstance(metadata, dict):
        metadata = {}
    if metadata.get("format") == MODEL_FORMAT:
        name = str(metadata.get("model_class"))[:60]  # the file's own text: kept short
        return f"a seqclf model file of a {name} (written by {name}.save): load it with {name}.load(path)"
    if metadata.get("format") == ESTIMATOR_FORMAT:
        return f"a seqclf estimator file (written by SequenceClassifierEstimator.save): load it with {ESTIMATOR_LOADER}"
    return (
        "a safetensors file not written by seqclf: read its tensors with seqclf.serialization.load_safetensors(path) "
        "and give them to model.load_state_dict"
    )


def _describe_torch(path: Path) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: runs nothing
    except pickle.UnpicklingError as error:
        if re.search(r"GLOBAL|Unsupported class", str(error)):  # recent torch, torch 2.2
            return "a PyTorch file that would run code when loaded, which no seqclf loader reads"
        return f"a PyTorch file that cannot be read (truncated or damaged: {torch_reason(error)})"
    except Exception as error:
        return f"a PyTorch file that cannot be read (truncated or damaged: {torch_reason(error)})"
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        if data.get("kind") == OLD_ESTIMATOR_KIND:
            return (
                "a seqclf estimator file in the older torch format (written by SequenceClassifierEstimator.save): "
                f"load it with {ESTIMATOR_LOADER}"
            )
        model = data.get("model")
        name = str(model.get("class"))[:60] if isinstance(model, dict) else "model"
        return (
            f"a seqclf training checkpoint of a {name}: rebuild the model with {name}.from_checkpoint(path), "
            "or continue the run with Trainer.fit(..., resume_from=path)"
        )
    return (
        "a PyTorch file that is not a seqclf file: if it holds a state_dict, load it with "
        "model.load_state_dict(torch.load(path, weights_only=True))"
    )


def torch_reason(error: BaseException) -> str:
    """The reason in a ``torch.load`` error, without torch's advice to load with ``weights_only=False``.

    That advice would run code from the file; a seqclf file never needs it.
    """
    text = str(error)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|Check the documentation|$)", text, re.DOTALL)
    if found is not None:
        text = found.group(1)
    lines = [line.strip() for line in text.strip().splitlines() if "weights_only" not in line]
    return lines[0][:200] if lines and lines[0] else "end of file reached early"
