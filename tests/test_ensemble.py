"""ProbabilityMean: models whose probabilities are averaged, as one model returning logits."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from seqclf._ensemble import ProbabilityMean


class Fixed(nn.Module):
    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.logits.expand(len(x), -1) + 0 * lengths[:, None]


def test_softmax_of_the_output_is_the_mean_of_the_members_probabilities() -> None:
    a, b = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[-3.0, 1.0, 1.0]])
    model = ProbabilityMean(Fixed(a), Fixed(b))
    out = model(torch.zeros(4, 5), torch.full((4,), 5))
    assert out.shape == (4, 3)
    expected = (a.softmax(1) + b.softmax(1)) / 2
    torch.testing.assert_close(out.softmax(1), expected.expand(4, -1))
    torch.testing.assert_close(out.exp().sum(1), torch.ones(4))  # log-probabilities already
    torch.testing.assert_close(ProbabilityMean(Fixed(a))(torch.zeros(1, 1), torch.ones(1)), a.log_softmax(1))


def test_no_members_is_refused() -> None:
    with pytest.raises(ValueError, match="members must hold at least one model; got none"):
        ProbabilityMean()
