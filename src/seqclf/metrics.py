"""Metrics computed from predictions: the confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["confusion_matrix"]


def confusion_matrix(predicted: Any, target: Any, num_classes: int | None = None) -> Tensor:
    """Count how often each true class was predicted as each class.

    Args:
        predicted: ``(N,)`` predicted class indices (e.g. from ``Trainer.predict``).
        target: ``(N,)`` true class indices.
        num_classes: ``C``; by default one more than the largest index seen.

    Returns:
        ``(C, C)`` int64 counts on the CPU: row ``i``, column ``j`` counts the sequences
        of true class ``i`` predicted as ``j`` (the diagonal holds the correct ones).

    Examples:
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])).tolist()
        [[1, 1], [0, 1]]
    """
    predicted_t = _as_labels("predicted", predicted)
    target_t = _as_labels("target", target)
    if predicted_t.shape != target_t.shape:
        raise ValueError(
            f"predicted and target must have the same shape (N,); got {tuple(predicted_t.shape)} "
            f"and {tuple(target_t.shape)}"
        )
    largest = int(torch.cat([predicted_t, target_t]).max()) + 1 if len(target_t) else 0
    if num_classes is None:
        num_classes = largest
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < largest:
        raise ValueError(f"num_classes must be an int >= {largest} (the largest label + 1); got {num_classes!r}")
    counts = torch.bincount(target_t * num_classes + predicted_t, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _as_labels(name: str, values: Any) -> Tensor:
    tensor = torch.as_tensor(values).detach().cpu()
    if tensor.dim() != 1 or tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-d integer tensor (N,); got shape {tuple(tensor.shape)}, {tensor.dtype}")
    if len(tensor) and int(tensor.min()) < 0:
        raise ValueError(f"{name} must hold class indices >= 0; got {int(tensor.min())}")
    return tensor.to(torch.int64)
