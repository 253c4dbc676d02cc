"""Models of one input whose class probabilities are averaged, as one model that returns logits."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ProbabilityMean"]


class ProbabilityMean(nn.Module):
    """The mean of the members' class probabilities, returned as logits: ``softmax`` of the output is that mean.

    Each member takes ``(x, lengths)`` and returns logits ``(B, C)`` over the same classes.
    """

    def __init__(self, *members: nn.Module) -> None:
        super().__init__()
        if not members:
            raise ValueError("members must hold at least one model; got none")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        log_probabilities = torch.stack([member(x, lengths).log_softmax(dim=1) for member in self.members])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))  # (B, C)
