"""Export a trained classifier to ONNX, with sequence lengths as an input.

Needs the optional extra: ``pip install "seqclf[onnx]"``.

Example:
    >>> from seqclf.export import to_onnx
    >>> to_onnx(model, "model.onnx")  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("model.onnx")  # doctest: +SKIP
    >>> (logits,) = session.run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ._files import write_atomically

__all__ = ["ONNX_OPSET", "to_onnx"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
"""The ONNX opset :func:`to_onnx` writes by default."""


def to_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    opset_version: int = ONNX_OPSET,
) -> Path:
    """Write ``model`` to an ONNX file with inputs ``x``, ``lengths`` and output ``logits``.

    The graph takes ``x`` ``(batch, time, input_size)`` float32 and ``lengths``
    ``(batch,)`` int64 (each sequence's valid steps; pass ``time`` for unpadded
    sequences) and returns ``logits`` ``(batch, num_classes)``; batch and time are
    dynamic. Padded batches give the same logits as in PyTorch: nothing in the model
    branches on the values of ``lengths``. Any normalisation inside the model is exported
    with it.

    The model is exported with the TorchScript-based exporter (``dynamo=False``): it
    keeps the recurrent layers as ONNX ``LSTM``/``GRU``/``RNN`` operators with a dynamic
    time dimension, while torch's newer exporter unrolls them over a fixed number of steps
    (and took 28 to 57 times as long in ``benchmarks/variable_length.py``). Its deprecation
    notice is silenced here.

    Args:
        model: a seqclf classifier (``forward(x, lengths)`` returning logits), exported in
            eval mode; the model itself is not changed.
        path: the ``.onnx`` file to write.
        overwrite: replace ``path`` if it exists (otherwise an existing file is refused).
        opset_version: the ONNX opset to target.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
        ImportError: the ``onnx`` package is missing (install ``seqclf[onnx]``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    input_size = getattr(getattr(model, "config", None), "input_size", None)
    if not isinstance(input_size, int):
        raise TypeError(f"model must have a config with an int input_size (a seqclf model); got {type(model).__name__}")
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as error:
        raise ImportError('to_onnx needs the onnx package: pip install "seqclf[onnx]"') from error
    exported = copy.deepcopy(model).to("cpu").eval()
    # a full-length example: the graph must not depend on it (it cannot: nothing branches on lengths)
    x = torch.zeros(2, 3, input_size)
    lengths = torch.full((2,), 3, dtype=torch.int64)

    def export(temporary: Path) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")  # h0 is built from x's batch
            # a slice with a step other than 1 is left unfolded: a missed optimisation, the graph is exact
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded")
            torch.onnx.export(
                exported,
                (x, lengths),
                str(temporary),
                input_names=["x", "lengths"],
                output_names=["logits"],
                dynamic_axes={"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset_version,
                dynamo=False,
            )

    written = write_atomically(path, export, overwrite=overwrite, what="ONNX file")
    logger.info("exported %s to %s (opset %d)", type(model).__name__, written, opset_version)
    return written
