"""Hydra's competing convolutional kernels, padding-correct: which kernel of a group responds most, and least.

Dempster, Schmidt and Webb (2023), "HYDRA: competing convolutional kernels for fast and
accurate time series classification": random kernels of length 9 (normal weights, centred,
scaled to unit absolute sum) in groups of ``kernels_per_group``, at dilations ``1, 2, 4...``
up to the longest training sequence, over a series and its first difference. At each step,
in each group, the kernel with the largest response adds that response to its count, and
the one with the smallest adds one. The counts are the features, scaled as Hydra's
"sparse scaler" does (square root, then standardised where not zero).

:class:`HydraFeatures` is a part of :class:`~seqclf.Rocket` (``hydra=True``), whose
closed-form fit sets its scaling; it is not a model of its own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._checks import positive_int

__all__ = ["HydraFeatures"]

_TAPS = 9
MAX_LEVELS = 12
"""Dilation levels held (``1`` to ``2**11``: sequences up to 16,385 steps use them all)."""


class HydraFeatures(nn.Module):
    """Hydra's count features of ``(B, C, T)`` series and their first differences.

    Args:
        input_size: channels; with more than one, each kernel reads a random subset.
        groups: groups of competing kernels per dilation, half on the series and half on
            its first difference.
        kernels_per_group: kernels competing in each group.
    """

    weight: Tensor
    levels: Tensor
    mean: Tensor
    scale: Tensor

    def __init__(self, input_size: int, groups: int = 64, kernels_per_group: int = 8) -> None:
        super().__init__()
        self.input_size = positive_int("input_size", input_size)
        self.groups = positive_int("groups", groups)
        self.kernels_per_group = positive_int("kernels_per_group", kernels_per_group)
        if groups % 2:
            raise ValueError(f"groups must be even (half read the series, half its difference); got {groups}")
        cpu = torch.device("cpu")  # drawn on the CPU even when built on the meta device (to be loaded into)
        n = groups // 2 * kernels_per_group  # kernels per dilation and representation
        shape = (MAX_LEVELS, 2, n, input_size, _TAPS)
        n_channels = (2 ** (torch.rand(shape[:3], device=cpu) * math.log2(input_size + 1))).floor().clamp(1, input_size)
        rank = torch.rand(*shape[:4], device=cpu).argsort(dim=-1).argsort(dim=-1)  # a random order of the channels
        chosen = (rank < n_channels[..., None]).float()[..., None]  # (L, 2, n, C, 1)
        weight = torch.randn(shape, device=cpu) * chosen
        weight = (weight - weight.mean(dim=-1, keepdim=True)) * chosen
        weight = weight / weight.abs().sum(dim=(-1, -2), keepdim=True).clamp(min=1e-12)
        self.register_buffer("weight", weight)  # (levels, 2, n, C, 9)
        self.register_buffer("levels", torch.tensor(MAX_LEVELS, device=cpu))  # levels in use
        self.register_buffer("mean", torch.zeros(self.num_features, device=cpu))
        self.register_buffer("scale", torch.ones(self.num_features, device=cpu))
        self.active = MAX_LEVELS

    @property
    def num_features(self) -> int:
        """Features of every level held (those of levels not in use are 0)."""
        return MAX_LEVELS * 2 * 2 * (self.groups // 2) * self.kernels_per_group

    @torch.no_grad()
    def set_reference_length(self, length: int) -> None:
        """Use the dilations ``2**i`` that fit in sequences of ``length`` steps (at least dilation 1)."""
        length = positive_int("length", length)
        exponent = math.log2((length - 1) / (_TAPS - 1)) if length > _TAPS else 0.0
        self.levels.fill_(min(MAX_LEVELS, int(exponent) + 1))
        self.active = int(self.levels)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: object) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        if not self.levels.is_meta:
            self.active = int(self.levels)

    def forward(self, series: Tensor, difference: Tensor, steps: Tensor | None, valid: int) -> Tensor:
        """Scaled counts ``(B, num_features)`` of ``series`` and ``difference`` ``(B, C, T)``, zero after their ends.

        ``steps`` ``(B,)``: each series' valid steps (its difference has one fewer); None:
        the first ``valid`` steps of every series are valid.
        """
        batch = series.shape[0]
        h, k = self.groups // 2, self.kernels_per_group
        parts = []
        for level in range(self.active):
            dilation = 2**level
            for index, (x, n_valid) in enumerate(((series, steps), (difference, None if steps is None else steps - 1))):
                out = F.conv1d(x, self.weight[level, index], padding=_TAPS // 2 * dilation, dilation=dilation)
                if steps is None:
                    out = out[:, :, : valid - index]  # (B, n, T_valid)
                    inside = None
                else:
                    assert n_valid is not None
                    inside = (torch.arange(out.shape[2], device=out.device) < n_valid[:, None])[:, None, None, :]
                z = out.reshape(batch, h, k, -1)  # (B, h, k, T)
                top = z.amax(dim=2, keepdim=True)  # (B, h, 1, T)
                bottom = z.amin(dim=2, keepdim=True)
                is_top, is_bottom = (z == top).to(z.dtype), (z == bottom).to(z.dtype)  # (B, h, k, T)
                if inside is not None:
                    is_top, is_bottom = is_top * inside, is_bottom * inside
                parts.append((is_top * top).sum(dim=3).flatten(1))  # (B, h * k): summed largest responses
                parts.append(is_bottom.sum(dim=3).flatten(1))  # (B, h * k): times the smallest
        counts = torch.cat(parts, dim=1)  # (B, active features)
        counts = F.pad(counts, (0, self.num_features - counts.shape[1]))  # (B, num_features): unused levels 0
        root = counts.clamp(min=0).sqrt()
        return (root - self.mean) * (root != 0) / self.scale

    @torch.no_grad()
    def fit_scaling(self, root: Tensor) -> None:
        """Set the scaling from training features ``root`` ``(N, num_features)`` given by the unscaled forward.

        Hydra's sparse scaler: mean and standard deviation of the square-rooted counts, the
        deviation raised by (the fraction of zeros) ** 4 so that rare counts are not blown up.
        """
        mean = root.mean(dim=0, dtype=torch.float64)
        std = ((root - mean.to(root.dtype)) ** 2).mean(dim=0, dtype=torch.float64).sqrt()
        zeros = (root == 0).to(torch.float64).mean(dim=0)
        self.mean.copy_(mean)
        self.scale.copy_(std + zeros**4 + 1e-8)

    def reset_scaling(self) -> None:
        """Mean 0 and scale 1: the forward then gives the square-rooted counts (to fit the scaling on)."""
        self.mean.zero_()
        self.scale.fill_(1.0)
