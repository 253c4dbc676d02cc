"""Fitting a model's input standardisation on its training data (the trainer's side of Standardize).

The data-parallel case, where each process reads its share of a DataLoader and the moments
are summed over the processes, runs with two real processes in ``test_distributed.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import seqclf
from seqclf.input_statistics import fit_standardizers
from seqclf.normalization import Standardize

CPU = torch.device("cpu")


class Items(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """A map-style dataset of (sequence, length, label) items."""

    def __init__(self, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.lengths, self.y = x, lengths, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i], self.lengths[i], self.y[i]


def test_fit_standardizers_streams_every_kind_of_source_to_the_same_statistics() -> None:
    x, y = torch.randn(50, 5, 2) * 3 + 1, torch.randint(0, 2, (50,))
    lengths = torch.randint(1, 6, (50,))
    expected = Standardize(2).fit(x, lengths)
    sources = [
        seqclf.data.as_source((x, lengths, y), CPU),
        seqclf.data.as_source(Items(x, lengths, y), CPU),
        seqclf.data.as_source(DataLoader(TensorDataset(x, lengths, y), batch_size=7), CPU),
    ]
    for source in sources:
        model = seqclf.SequenceClassifier(2, 4, 2, normalize=True)
        fit_standardizers(model, source)
        assert model.normalize is not None and model.normalize.is_fitted
        torch.testing.assert_close(model.normalize.mean, expected.mean)
        torch.testing.assert_close(model.normalize.scale, expected.scale)


def test_fit_standardizers_reads_nothing_without_unfitted_layers_and_refuses_other_widths() -> None:
    class Exploding:
        def __len__(self) -> int:
            return 1

        def batches(self, plan: object) -> None:
            raise AssertionError("the data must not be read")

    fit_standardizers(seqclf.SequenceClassifier(2, 4, 2), Exploding())  # type: ignore[arg-type]
    model = torch.nn.Sequential(Standardize(3))
    with pytest.raises(ValueError, match=r"must take the input's 2 features .* got layers of \[3\] features"):
        fit_standardizers(model, seqclf.data.as_source((torch.randn(4, 3, 2), torch.zeros(4, dtype=torch.long)), CPU))


def test_fitted_layers_keep_their_statistics_and_an_empty_loader_is_refused() -> None:
    fitted = Standardize(2).fit(torch.ones(2, 3, 2) * 7)
    model = torch.nn.Sequential(fitted, Standardize(2))
    x, y = torch.randn(8, 3, 2), torch.zeros(8, dtype=torch.long)
    fit_standardizers(model, seqclf.data.as_source((x, y), CPU))
    assert fitted.mean.tolist() == [7.0, 7.0]  # already fitted: left as it was
    torch.testing.assert_close(model[1].mean, x.double().mean(dim=(0, 1)).float())
    empty = DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4)
    with pytest.raises(ValueError, match="the standardisation must be fitted on the training data; got no batches"):
        fit_standardizers(torch.nn.Sequential(Standardize(2)), seqclf.data.as_source(empty, CPU))
