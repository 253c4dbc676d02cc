"""Inference: the one path from sequences to logits, for the trainer and the scikit-learn estimator.

Data is checked against the model and converted to its dtype once, as it is wrapped as a
batch source (:func:`model_source`); :func:`batch_logits` then runs the model over it in
order, in eval mode and without autograd.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .batching import epoch_plan
from .data import Batch, DatasetSource, LoaderSource, TensorSource, _is_x, as_source

Source = TensorSource | DatasetSource | LoaderSource


def model_source(model: nn.Module, data: Any, device: torch.device, *, name: str = "data",
                 labelled: bool = True) -> Source:
    """Check ``data`` against ``model`` and wrap it as a batch source on ``device`` (a source as it is).

    Floating-point sequences are converted to the model's dtype here, once.
    """
    if isinstance(data, (TensorSource, DatasetSource, LoaderSource)):
        return data
    config = getattr(model, "config", None)
    return as_source(
        data,
        device,
        input_size=getattr(config, "input_size", None),
        num_classes=getattr(config, "num_classes", None),
        labelled=labelled,
        name=name,
        dtype=next((p.dtype for p in model.parameters() if p.is_floating_point()), None),
    )


def inference_source(model: nn.Module, data: Any, lengths: Tensor | None, device: torch.device, *,
                     name: str = "data") -> Source:
    """``data`` to predict on: an ``X`` ``(N, T, F)`` (with ``lengths`` ``(N,)``), a list of sequences,
    or anything ``Trainer.fit`` accepts (its labels are then ignored)."""
    if _is_x(data):  # a tensor or array X, or a list of sequences
        return model_source(model, (data,) if lengths is None else (data, lengths), device, name=name, labelled=False)
    if lengths is not None:
        raise TypeError(f"lengths may be given only with a tensor X; got {name} of type {type(data).__name__}")
    return model_source(model, data, device, name=name)


def batch_logits(model: nn.Module, source: Source, device: torch.device, batch_size: int, *, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[Batch, Tensor]]:
    """Each batch of ``source`` in order with its logits ``(B, C)`` (with ``world_size`` > 1: this rank's part).

    The model runs in eval mode under ``torch.inference_mode`` and is put back in the mode it was in.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            plan = None
            if not isinstance(source, LoaderSource):
                plan = epoch_plan(len(source), batch_size, seed=None, rank=rank, world_size=world_size)
            for batch in source.batches(plan):
                batch = batch.to(device)
                yield batch, model(batch.x, batch.lengths)
    finally:
        model.train(was_training)


def evaluation_sums(model: nn.Module, source: Source, device: torch.device, batch_size: int, *, rank: int = 0,
                    world_size: int = 1) -> list[float]:
    """``[summed cross-entropy, correct predictions, sequences]`` over (this rank's part of) labelled ``source``."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for batch, logits in batch_logits(model, source, device, batch_size, rank=rank, world_size=world_size):
        if batch.y is None:
            raise ValueError("data must be labelled to be evaluated; got sequences without labels")
        loss_sum += nn.functional.cross_entropy(logits, batch.y, reduction="sum")
        correct += (logits.argmax(dim=1) == batch.y).sum()
        seen += len(batch.y)
    return [float(loss_sum), float(correct), float(seen)]
