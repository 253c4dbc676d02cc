"""Export a trained classifier to ONNX, with sequence lengths as an input.

Needs onnx: ``pip install onnx onnxruntime`` (or, in a clone of seqclf, ``pip install -e ".[onnx]"``).

Examples:
    >>> from seqclf.export import to_onnx
    >>> to_onnx(model, "model.onnx")  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("model.onnx")  # doctest: +SKIP
    >>> (logits,) = session.run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})  # doctest: +SKIP

A fitted :class:`~seqclf.sklearn.SequenceClassifierEstimator` or
:class:`~seqclf.sklearn.TextClassifierEstimator` exports in the same call; its file
returns probabilities and carries the class labels (and a text estimator's tokenisation:
see :func:`to_onnx`).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._files import write_atomically
from .vocabulary import PAD_ID, UNKNOWN_ID

__all__ = ["ONNX_OPSET", "to_onnx"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
"""The ONNX opset :func:`to_onnx` writes by default."""


# torch >= 2.5 has two exporters and a `dynamo` switch; before it, only the TorchScript-based one
_TORCHSCRIPT_EXPORTER: dict[str, Any] = (
    {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
)


def to_onnx(
    model: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    opset_version: int = ONNX_OPSET,
) -> Path:
    """Write ``model`` to an ONNX file with inputs ``x``, ``lengths`` and output ``logits``.

    The graph takes ``x`` ``(batch, time, input_size)`` float32 (``(batch, time)`` int64
    token ids for a model with ``vocab_size``) and ``lengths``
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

    A fitted :class:`~seqclf.sklearn.TextClassifierEstimator` is exported whole too: the
    graph takes ``x`` ``(batch, time)`` int64 token ids and ``lengths`` ``(batch,)`` int64,
    what its ``encode(texts)`` returns, and returns ``probabilities`` in ``classes_`` order
    as ``predict_proba`` does. Beside ``classes``, the metadata holds the tokenisation, so
    texts are tokenised without seqclf or scikit-learn: ``vocabulary`` (a JSON array of the
    tokens by id, ``null`` at the padding and unknown ids), ``lowercase`` (JSON ``true`` or
    ``false``), ``token_pattern`` (scikit-learn's ``(?u)\\b\\w\\w+\\b``), ``max_length``,
    ``unknown_id`` and ``padding_id``. A text's ids are those of its tokens
    ``re.findall(token_pattern, text.lower())[:max_length]`` (``text`` as it is when
    ``lowercase`` is false), ``unknown_id`` for a token not in the vocabulary, and one
    ``unknown_id`` for a text with no token. Each estimator's file names it in ``kind``.

    Args:
        model: a seqclf classifier (``forward(x, lengths)`` returning logits), exported in
            eval mode, or a fitted ``SequenceClassifierEstimator`` or
            ``TextClassifierEstimator``; none is changed.
        path: the ``.onnx`` file to write.
        overwrite: replace ``path`` if it exists (otherwise an existing file is refused).
        opset_version: the ONNX opset to target.

    Returns:
        The path written.

    Raises:
        TypeError: ``model`` is none of these, or an estimator's labels are not str, int,
            float or bool.
        ValueError: ``model`` is an estimator that is not fitted.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
        ImportError: the ``onnx`` package is missing (``pip install onnx onnxruntime``).
    """
    if not isinstance(model, nn.Module):
        return _estimator_to_onnx(model, Path(path), overwrite=overwrite, opset_version=opset_version)
    input_size = getattr(getattr(model, "config", None), "input_size", None)
    if not isinstance(input_size, int):
        raise TypeError(f"model must have a config with an int input_size (a seqclf model); got {type(model).__name__}")
    _import_onnx()  # the exporter needs it
    exported = copy.deepcopy(model).to("cpu").eval()
    # a full-length example: the graph must not depend on it (it cannot: nothing branches on lengths)
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    # a model that embeds token ids takes x as (batch, time) int64 ids
    x = torch.zeros(2, 3, dtype=torch.int64) if vocab_size is not None else torch.zeros(2, 3, input_size)
    lengths = torch.full((2,), 3, dtype=torch.int64)

    def export(temporary: Path) -> None:
        _export_graph(exported, (x, lengths), temporary, time_axis=1, output="logits", opset=opset_version)

    written = write_atomically(path, export, overwrite=overwrite, what="ONNX file")
    logger.info("exported %s to %s (opset %d)", type(model).__name__, written, opset_version)
    return written


def _estimator_to_onnx(estimator: Any, path: Path, *, overwrite: bool, opset_version: int) -> Path:
    """Write a fitted estimator: its input as it takes it, probabilities, and its labels as metadata."""
    kind = _estimator_kind(estimator)
    if not hasattr(estimator, "model_"):
        raise ValueError(f"model must be a fitted {kind} (call fit first); got an unfitted one")
    classes = estimator.classes_.tolist()
    if not all(isinstance(label, (str, int, float, bool)) for label in classes):
        kinds = sorted({type(label).__name__ for label in classes})
        raise TypeError(f"model.classes_ must be str, int, float or bool labels to be exported; got {kinds}")
    onnx = _import_onnx()
    # a full-length example: the graph must not depend on it (nothing branches on lengths)
    lengths = torch.full((2,), 3, dtype=torch.int64)
    if kind == "TextClassifierEstimator":
        predictor = estimator.inference_model()  # the token model, with the n-gram bag when it has one
        layout, x, time_axis = None, torch.zeros(2, 3, dtype=torch.int64), 1  # token ids (B, T)
        inputs = _tokenisation(estimator)
    else:
        predictor = estimator.model_
        layout = "ntc" if estimator.layout == "ntc" else "nct"
        n_features = int(estimator.n_features_in_)
        time_axis = 2 if layout == "nct" else 1
        x = torch.zeros((2, n_features, 3) if layout == "nct" else (2, 3, n_features), dtype=torch.float64)
        inputs = {"layout": layout, "n_features_in": str(n_features)}
    graph = _EstimatorGraph(copy.deepcopy(predictor).to("cpu").eval(), layout)
    metadata = {"kind": kind, "classes": json.dumps(classes), **inputs}

    def export(temporary: Path) -> None:
        _export_graph(graph, (x, lengths), temporary, time_axis=time_axis, output="probabilities", opset=opset_version)
        proto = onnx.load(str(temporary))
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(temporary))

    written = write_atomically(path, export, overwrite=overwrite, what="ONNX file")
    logger.info("exported %s (%d classes, input %s) to %s (opset %d)", kind, len(classes),
                layout or "token ids", written, opset_version)
    return written


def _estimator_kind(estimator: Any) -> str:
    """The name of the seqclf estimator class ``estimator`` is, or a TypeError naming what it is."""
    expected = ("model must be a torch.nn.Module, a fitted SequenceClassifierEstimator or a fitted "
                "TextClassifierEstimator")
    try:
        from .sklearn import SequenceClassifierEstimator, TextClassifierEstimator
    except ImportError as error:  # without scikit-learn there is no estimator to export
        raise TypeError(f"{expected}; got {type(estimator).__name__}") from error
    if isinstance(estimator, SequenceClassifierEstimator):
        return "SequenceClassifierEstimator"
    if isinstance(estimator, TextClassifierEstimator):
        return "TextClassifierEstimator"
    raise TypeError(f"{expected}; got {type(estimator).__name__}")


def _tokenisation(estimator: Any) -> dict[str, str]:
    """What a fitted text estimator's file needs to tokenise without seqclf, as metadata strings.

    ``vocabulary`` lists the tokens by id (``null`` for the padding and unknown ids, which
    no token maps to); a text is ``re.findall(token_pattern, text.lower() if lowercase else
    text)[:max_length]``, each token its id or ``unknown_id``, and a text with no token is
    one ``unknown_id``.
    """
    vectorizer = estimator._vectorizer()  # the analyzer the estimator tokenises with: plain words, no n-grams
    tokens = estimator.vocabulary_.to_dict()["tokens"]  # the known tokens: ids 2, 3, ... after the reserved ones
    return {
        "vocabulary": json.dumps([None] * (len(estimator.vocabulary_) - len(tokens)) + tokens),
        "lowercase": json.dumps(bool(vectorizer.lowercase)),
        "token_pattern": vectorizer.token_pattern,
        "max_length": str(int(estimator.max_length)),
        "unknown_id": str(UNKNOWN_ID),
        "padding_id": str(PAD_ID),
    }


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise ImportError(
            'to_onnx needs the onnx package, which is not installed: pip install onnx onnxruntime '
            '(or, in a clone of seqclf, pip install -e ".[onnx]")'
        ) from error
    return onnx


def _export_graph(
    graph: nn.Module, example: tuple[Tensor, Tensor], path: Path, *, time_axis: int, output: str, opset: int
) -> None:
    """``torch.onnx.export`` with inputs ``x``, ``lengths`` and dynamic batch and time, its notices silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")  # h0 is built from x's batch
        # a slice with a step other than 1 is left unfolded: a missed optimisation, the graph is exact
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded")
        torch.onnx.export(
            graph,
            example,
            str(path),
            input_names=["x", "lengths"],
            output_names=[output],
            dynamic_axes={"x": {0: "batch", time_axis: "time"}, "lengths": {0: "batch"}, output: {0: "batch"}},
            opset_version=opset,
            **_TORCHSCRIPT_EXPORTER,
        )


class _EstimatorGraph(nn.Module):
    """An estimator's model as ONNX runs it: its input as the estimator takes it, probabilities out.

    ``layout`` ``"nct"`` or ``"ntc"``: float64 sequences in that layout; None: token ids ``(B, T)``.
    """

    def __init__(self, model: nn.Module, layout: str | None) -> None:
        super().__init__()
        self.model, self.layout = model, layout

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if self.layout is not None:
            x = x.to(torch.float32)  # as the estimator converts X
        if self.layout == "nct":
            x = x.transpose(1, 2)  # (B, C, T) -> (B, T, C)
        logits: Tensor = self.model(x, lengths)  # (B, n_classes)
        return logits.softmax(dim=1)  # (B, n_classes)
