"""Export a trained classifier to ONNX, with sequence lengths as an input.

Needs the optional extra: ``pip install "seqclf[onnx]"``.

Example:
    >>> from seqclf.export import to_onnx
    >>> to_onnx(model, "model.onnx")  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("model.onnx")  # doctest: +SKIP
    >>> (logits,) = session.run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})  # doctest: +SKIP

A fitted :class:`~seqclf.sklearn.SequenceClassifierEstimator` exports in the same call;
its file takes ``X`` in the estimator's layout and carries the class labels (see
:func:`to_onnx`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._files import move_into_place

__all__ = ["ONNX_OPSET", "to_onnx"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
"""The ONNX opset :func:`to_onnx` writes by default."""


def to_onnx(
    model: Any,
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

    A fitted :class:`~seqclf.sklearn.SequenceClassifierEstimator` is exported whole:
    the graph takes ``x`` in the estimator's layout (``(batch, n_channels, time)`` for
    the default and ``layout="nct"``, ``(batch, time, n_features)`` for ``"ntc"``) as
    float64, numpy's default, cast to float32 inside the graph as ``predict`` does;
    ``lengths`` ``(batch,)`` int64 as above; and returns ``probabilities`` ``(batch,
    n_classes)`` in ``classes_`` order. The file's metadata (``metadata_props``) holds
    ``classes`` (the labels as a JSON array), ``layout`` and ``n_features_in``, so the
    original labels come back without seqclf::

        import json, numpy as np, onnxruntime
        session = onnxruntime.InferenceSession("clf.onnx")
        classes = np.array(json.loads(session.get_modelmeta().custom_metadata_map["classes"]))
        (proba,) = session.run(["probabilities"], {"x": X, "lengths": np.full(len(X), X.shape[-1])})
        labels = classes[proba.argmax(axis=1)]

    Args:
        model: a seqclf classifier (``forward(x, lengths)`` returning logits), exported in
            eval mode, or a fitted ``SequenceClassifierEstimator``; neither is changed.
        path: the ``.onnx`` file to write.
        overwrite: replace ``path`` if it exists (otherwise an existing file is refused).
        opset_version: the ONNX opset to target.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ImportError: the ``onnx`` package is missing (install ``seqclf[onnx]``).
    """
    if not isinstance(model, nn.Module):
        return _estimator_to_onnx(model, Path(path), overwrite=overwrite, opset_version=opset_version)
    input_size = getattr(getattr(model, "config", None), "input_size", None)
    if not isinstance(input_size, int):
        raise TypeError(f"model must have a config with an int input_size (a seqclf model); got {type(model).__name__}")
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as error:
        raise ImportError('to_onnx needs the onnx package: pip install "seqclf[onnx]"') from error
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(
            f"path {str(path)!r} already exists; refusing to overwrite it (pass overwrite=True to replace it)"
        )
    exported = copy.deepcopy(model).to("cpu").eval()
    # a full-length example: the graph must not depend on it (it cannot: nothing branches on lengths)
    x = torch.zeros(2, 3, input_size)
    lengths = torch.full((2,), 3, dtype=torch.int64)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
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
        move_into_place(temporary, path, overwrite=overwrite)
    finally:
        if temporary.exists():
            temporary.unlink()
    logger.info("exported %s to %s (opset %d)", type(model).__name__, path, opset_version)
    return path


def _estimator_to_onnx(estimator: Any, path: Path, *, overwrite: bool, opset_version: int) -> Path:
    """Write a fitted estimator: its layout, float64 input, probabilities, and its labels as metadata."""
    expected = "model must be a torch.nn.Module or a fitted SequenceClassifierEstimator"
    try:
        from .sklearn import SequenceClassifierEstimator
    except ImportError as error:  # without scikit-learn there is no estimator to export
        raise TypeError(f"{expected}; got {type(estimator).__name__}") from error
    if not isinstance(estimator, SequenceClassifierEstimator):
        raise TypeError(f"{expected}; got {type(estimator).__name__}")
    if not hasattr(estimator, "model_"):
        raise ValueError("model must be a fitted SequenceClassifierEstimator (call fit first); got an unfitted one")
    classes = estimator.classes_.tolist()
    if not all(isinstance(label, (str, int, float, bool)) for label in classes):
        kinds = sorted({type(label).__name__ for label in classes})
        raise TypeError(f"the estimator's classes_ must be str, int, float or bool labels to be exported; got {kinds}")
    try:
        import onnx
    except ImportError as error:
        raise ImportError('to_onnx needs the onnx package: pip install "seqclf[onnx]"') from error
    if not overwrite and path.exists():
        raise FileExistsError(
            f"path {str(path)!r} already exists; refusing to overwrite it (pass overwrite=True to replace it)"
        )
    channels_first = estimator.layout != "ntc"
    graph = _EstimatorGraph(copy.deepcopy(estimator.model_).to("cpu").eval(), channels_first)
    n_features = int(estimator.n_features_in_)
    # a full-length example: the graph must not depend on it (nothing branches on lengths)
    x = torch.zeros((2, n_features, 3) if channels_first else (2, 3, n_features), dtype=torch.float64)
    lengths = torch.full((2,), 3, dtype=torch.int64)
    time_axis = 2 if channels_first else 1
    metadata = {"classes": json.dumps(classes), "layout": "nct" if channels_first else "ntc",
                "n_features_in": str(n_features)}
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _export_graph(graph, (x, lengths), temporary, time_axis, opset_version)
        proto = onnx.load(str(temporary))
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(temporary))
        move_into_place(temporary, path, overwrite=overwrite)
    finally:
        if temporary.exists():
            temporary.unlink()
    logger.info("exported %s (%d classes, layout %s) to %s (opset %d)", type(estimator).__name__, len(classes),
                metadata["layout"], path, opset_version)
    return path


def _export_graph(graph: nn.Module, example: tuple[Tensor, Tensor], path: Path, time_axis: int, opset: int) -> None:
    """``torch.onnx.export`` of an estimator's graph, its notices silenced as in :func:`to_onnx`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded")
        torch.onnx.export(
            graph,
            example,
            str(path),
            input_names=["x", "lengths"],
            output_names=["probabilities"],
            dynamic_axes={"x": {0: "batch", time_axis: "time"}, "lengths": {0: "batch"},
                          "probabilities": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


class _EstimatorGraph(nn.Module):
    """An estimator's model as ONNX runs it: float64 input in its layout, probabilities out."""

    def __init__(self, model: nn.Module, channels_first: bool) -> None:
        super().__init__()
        self.model, self.channels_first = model, channels_first

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        x = x.to(torch.float32)  # as the estimator converts X
        if self.channels_first:
            x = x.transpose(1, 2)  # (B, C, T) -> (B, T, C)
        logits: Tensor = self.model(x, lengths)  # (B, n_classes)
        return logits.softmax(dim=1)  # (B, n_classes)
