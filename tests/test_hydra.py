"""Hydra's competing kernels: the counts against a direct implementation, dilation levels, scaling."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from seqclf.hydra import MAX_LEVELS, HydraFeatures


def reference_counts(hydra: HydraFeatures, series: torch.Tensor) -> torch.Tensor:
    """Hydra's published algorithm for equal-length ``series`` ``(B, C, T)``: argmax/argmin and scatter-add."""
    batch, h, k = series.shape[0], hydra.groups // 2, hydra.kernels_per_group
    difference = series[:, :, 1:] - series[:, :, :-1]
    parts = []
    for level in range(hydra.active):
        d = 2**level
        for index, x in enumerate((series, difference)):
            z = F.conv1d(x, hydra.weight[level, index], padding=4 * d, dilation=d).view(batch, h, k, -1)
            top, top_index = z.max(dim=2)
            _, bottom_index = z.min(dim=2)
            parts.append(torch.zeros(batch, h, k).scatter_add_(-1, top_index, top).flatten(1))
            parts.append(torch.zeros(batch, h, k).scatter_add_(-1, bottom_index, torch.ones_like(top)).flatten(1))
    counts = torch.cat(parts, dim=1)
    return F.pad(counts, (0, hydra.num_features - counts.shape[1]))


def unscaled(hydra: HydraFeatures, series: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """The forward's square-rooted counts for ``series`` ``(B, C, T)`` (zero after ``lengths``)."""
    difference = F.pad(series[:, :, 1:] - series[:, :, :-1], (0, 1))
    if lengths is not None:
        difference = difference.masked_fill(torch.arange(series.shape[2]) >= (lengths - 1)[:, None, None], 0.0)
    return hydra(series, difference, lengths, series.shape[2])


def test_the_counts_are_hydras() -> None:
    torch.manual_seed(0)
    hydra = HydraFeatures(input_size=1, groups=8, kernels_per_group=4)
    hydra.set_reference_length(70)
    series = torch.randn(5, 1, 70)
    expected = reference_counts(hydra, series).clamp(min=0).sqrt()
    torch.testing.assert_close(unscaled(hydra, series, None), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unscaled(hydra, series, torch.full((5,), 70)), expected, atol=1e-5, rtol=1e-5)


def test_a_padded_series_counts_as_it_does_alone() -> None:
    torch.manual_seed(1)
    hydra = HydraFeatures(input_size=2, groups=4, kernels_per_group=3)
    hydra.set_reference_length(40)
    series = torch.randn(3, 2, 40)
    lengths = torch.tensor([40, 25, 9])
    series[torch.arange(40)[None, None, :].expand(3, 2, 40) >= lengths[:, None, None]] = 0.0  # zero after the end
    batched = unscaled(hydra, series, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(batched[i], unscaled(hydra, series[i : i + 1, :, :n], None)[0], atol=1e-5, rtol=0)


def test_dilation_levels_follow_the_length_and_kernels_are_normalised() -> None:
    torch.manual_seed(0)
    hydra = HydraFeatures(input_size=3)
    for length, levels in ((5, 1), (9, 1), (17, 2), (150, 5), (10**6, MAX_LEVELS)):
        hydra.set_reference_length(length)
        assert hydra.active == levels == int(hydra.levels)
    weight = hydra.weight  # (levels, 2, n, C, 9)
    torch.testing.assert_close(weight.abs().sum(dim=(-1, -2)), torch.ones(weight.shape[:3]), atol=1e-5, rtol=0)
    torch.testing.assert_close(weight.sum(dim=-1), torch.zeros(weight.shape[:4]), atol=1e-5, rtol=0)
    other = HydraFeatures(input_size=3)
    other.load_state_dict(hydra.state_dict())
    assert other.active == MAX_LEVELS  # the levels in use travel with the weights


def test_the_sparse_scaling_leaves_zeros_at_zero() -> None:
    torch.manual_seed(0)
    hydra = HydraFeatures(input_size=1, groups=2, kernels_per_group=2)
    root = torch.rand(20, hydra.num_features)
    root[:, :3] = 0.0
    hydra.fit_scaling(root)
    series = torch.randn(4, 1, 30)
    hydra.set_reference_length(30)
    scaled = unscaled(hydra, series, None)
    hydra.reset_scaling()
    raw = unscaled(hydra, series, None)
    assert bool((raw == 0).any()) and bool((scaled[raw == 0] == 0).all())  # a zero count stays zero
    assert not torch.equal(scaled, raw)
    with pytest.raises(ValueError, match=r"groups must be even .* got 3"):
        HydraFeatures(input_size=1, groups=3)
