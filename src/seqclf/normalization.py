"""Per-channel standardisation inside the model, fitted on the training data.

A :class:`Standardize` layer holds each feature's mean and scale as buffers, so they
travel with the weights: in ``state_dict``, in checkpoints and in any export. A model
that holds one needs no separate preprocessing at prediction time.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from ._deprecation import moved_attribute

__all__ = ["Standardize"]

logger = logging.getLogger(__name__)

_CHUNK = 4096  # sequences per step of Standardize.fit (bounds the float64 copy)


class Standardize(nn.Module):
    """``(x - mean) / scale`` per feature, with statistics fitted on valid steps only.

    Until :meth:`fit` (or a checkpoint) sets them, ``mean`` is 0 and ``scale`` 1, so an
    unfitted layer changes nothing. ``Trainer.fit`` fits every unfitted ``Standardize``
    of its model on the training data before the first step of a fresh run.

    Args:
        num_features: features per time step (the last dimension of ``x``).

    Examples:
        >>> layer = Standardize(2).fit(torch.tensor([[[1.0, 5.0], [3.0, 5.0]]]))
        >>> layer.mean.tolist(), layer.scale.tolist()
        ([2.0, 5.0], [1.0, 1.0])
    """

    mean: Tensor
    scale: Tensor
    fitted: Tensor

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features <= 0:
            raise ValueError(f"num_features must be a positive int; got {num_features!r}")
        self.num_features = num_features
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def is_fitted(self) -> bool:
        """Whether the statistics have been fitted (or loaded from fitted ones)."""
        return bool(self.fitted)

    @torch.no_grad()
    def fit(self, x: Tensor, lengths: Tensor | None = None) -> Standardize:
        """Set ``mean`` and ``scale`` from ``x`` ``(N, T, F)``, counting valid steps only.

        Padded steps (at and after ``lengths[i]``) are left out. Statistics are summed
        in float64; a constant feature gets scale 1 (so it becomes 0, not NaN).
        """
        moments = _Moments(self.num_features)
        for start in range(0, len(x), _CHUNK):
            chunk_lengths = None if lengths is None else lengths[start : start + _CHUNK]
            moments.update(x[start : start + _CHUNK], chunk_lengths)
        self.set_statistics(*moments.result())
        return self

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Store ``mean`` and ``std`` ``(num_features,)``; a zero (or tiny) ``std`` is stored as 1."""
        if mean.shape != (self.num_features,) or std.shape != (self.num_features,):
            raise ValueError(
                f"mean and std must have shape ({self.num_features},); got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(std).all())):
            raise ValueError("mean and std must be finite; got NaN or Inf (is the training data finite?)")
        tiny = torch.finfo(self.scale.dtype).eps * mean.abs().clamp(min=1.0)
        scale = torch.where(std > tiny, std, torch.ones_like(std))
        self.mean.copy_(mean)
        self.scale.copy_(scale)
        self.fitted.fill_(True)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Standardised ``x`` ``(B, T, F)``; with ``lengths``, padded steps stay exactly 0."""
        out = (x - self.mean) / self.scale  # (B, T, F)
        if lengths is not None:
            valid = torch.arange(x.shape[1], device=x.device) < lengths.to(x.device)[:, None]  # (B, T)
            out = out.masked_fill(~valid.unsqueeze(-1), 0.0)
        return out

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, fitted={self.is_fitted}"


class _Moments:
    """Running per-feature count, mean and sum of squared deviations over valid steps (float64).

    Batches are merged with Chan et al.'s pairwise update, which stays accurate when the
    mean is large next to the spread (a plain sum of squares would cancel).
    """

    def __init__(self, num_features: int) -> None:
        self.num_features = num_features
        self.count = 0.0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, x: Tensor, lengths: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"x must have shape (batch, time, {self.num_features}) to fit the standardisation; "
                f"got {tuple(x.shape)}"
            )
        device = torch.device("cpu") if x.device.type == "mps" else x.device  # MPS has no float64
        values = x.detach().to(device, torch.float64)  # (B, T, F)
        if lengths is None:
            steps = values.reshape(-1, self.num_features)  # (B*T, F)
        else:
            valid = torch.arange(x.shape[1], device=device) < lengths.to(device)[:, None]  # (B, T)
            steps = values[valid]  # (valid steps, F)
        n = float(len(steps))
        if n == 0:
            return
        mean = steps.mean(dim=0)  # (F,)
        m2 = ((steps - mean) ** 2).sum(dim=0)  # (F,)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean.to(device)
        self.mean = self.mean.to(device) + delta * (n / total)
        self.m2 = self.m2.to(device) + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[Tensor, Tensor]:
        """Mean and (population) standard deviation, as float64 on the CPU."""
        if self.mean is None or self.m2 is None:
            raise ValueError("the standardisation must be fitted on at least one valid time step; got none")
        return self.mean.cpu(), (self.m2 / self.count).sqrt().cpu()


def __getattr__(name: str) -> Any:
    """``fit_standardizers``, moved to :mod:`seqclf.input_statistics`, still served here with a DeprecationWarning."""
    # the model layer itself never loads the data layer: input_statistics is imported only when asked for
    return moved_attribute(__name__, name, {"fit_standardizers": "seqclf.input_statistics"})
