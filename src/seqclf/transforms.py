"""Turn images into sequences: each image row is one time step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["image_rows_as_sequence"]


def image_rows_as_sequence(image: Any) -> Tensor:
    """Read an image row by row as a sequence of ``H`` steps.

    Shapes: ``(H, W) -> (H, W)``, ``(C, H, W) -> (H, C*W)`` and
    ``(N, C, H, W) -> (N, H, C*W)``: at each step the channels of one row are laid
    side by side. ``uint8`` input is scaled to ``float32`` in ``[0, 1]`` (as
    ``ToTensor`` does); floating input keeps its values and dtype. PIL images and
    NumPy arrays are accepted (a PIL or ``(H, W, C)`` NumPy image is read as
    ``ToTensor`` reads it). The function is picklable, so it works in
    ``torchvision.transforms.Compose`` and in ``DataLoader`` workers, and it runs on
    whole batches on any device.

    Examples:
        >>> image_rows_as_sequence(torch.zeros(1, 28, 28, dtype=torch.uint8)).shape
        torch.Size([28, 28])
    """
    tensor = _as_tensor(image)
    if tensor.dtype == torch.uint8:
        tensor = tensor.to(torch.float32).div_(255.0)
    elif not tensor.is_floating_point():
        raise TypeError(f"image must be uint8 or floating point; got dtype {tensor.dtype}")
    if tensor.dim() == 2:
        return tensor  # (H, W)
    if tensor.dim() == 3:
        channels, height, width = tensor.shape
        return tensor.permute(1, 0, 2).reshape(height, channels * width)  # (H, C*W)
    if tensor.dim() == 4:
        batch, channels, height, width = tensor.shape
        return tensor.permute(0, 2, 1, 3).reshape(batch, height, channels * width)  # (N, H, C*W)
    raise ValueError(
        f"image must have shape (H, W), (C, H, W) or (N, C, H, W); got {tuple(tensor.shape)}"
    )


def _as_tensor(image: Any) -> Tensor:
    if isinstance(image, Tensor):
        return image
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3, 4):
            array = array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W), as ToTensor reads it
        return torch.from_numpy(np.ascontiguousarray(array))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        from torchvision.transforms.functional import pil_to_tensor

        tensor: Tensor = pil_to_tensor(image)  # (C, H, W), uint8 for 8-bit images
        return tensor
    raise TypeError(
        f"image must be a torch.Tensor, numpy.ndarray or PIL.Image.Image; got {type(image).__name__}"
    )
