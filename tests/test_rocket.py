"""Rocket: random kernels, their padding-correct pooling, the closed-form fit (the contract is in test_contract)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import seqclf
from seqclf import Rocket, RocketConfig


def shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ragged task: a bump (class 0), a step (1) or a spike train (2) at a random place in noise.

    Returns ``x`` ``(n, 60, 1)`` padded with junk, ``lengths`` ``(n,)`` in [30, 60] and ``y``.
    """
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    lengths = torch.randint(30, 61, (n,), generator=generator)
    x = torch.randn(n, 60, 1, generator=generator) * 0.3
    for i in range(n):
        start = int(torch.randint(0, int(lengths[i]) - 12, (1,), generator=generator))
        segment = x[i, start : start + 12, 0]
        if y[i] == 0:
            segment += torch.sin(torch.linspace(0, torch.pi, 12)) * 2
        elif y[i] == 1:
            segment[6:] += 2.0
        else:
            segment[::3] += 2.0
        x[i, int(lengths[i]) :] = 50.0  # junk in the padding
    return x, lengths, y


def test_the_closed_form_fit_learns_a_ragged_task(one_thread: None) -> None:
    torch.manual_seed(0)
    model = Rocket(input_size=1, num_classes=3, num_kernels=500)
    x, lengths, y = shapes(90, seed=0)
    fit = model.fit_closed_form(x, y, lengths)
    x_test, lengths_test, y_test = shapes(150, seed=1)
    accuracy = float((model(x_test, lengths_test).argmax(dim=1) == y_test).float().mean())
    # measured over torch seeds 0..4 (kernels) with these two draws of the task: 0.993 to 1.000
    assert accuracy >= 0.93
    assert 0.8 <= fit.loo_accuracy <= 1.0 and fit.alpha in seqclf.ridge.DEFAULT_ALPHAS
    assert model.normalize is not None and model.normalize.is_fitted


def test_the_fit_never_reads_the_padding(one_thread: None) -> None:
    x, lengths, y = shapes(30, seed=2)
    other = x.clone()
    other[torch.arange(60)[None, :] >= lengths[:, None]] = -7.0
    fitted = []
    for data in (x, other):
        torch.manual_seed(3)
        model = Rocket(input_size=1, num_classes=3, num_kernels=50)
        model.fit_closed_form(data, y, lengths)
        fitted.append(model.state_dict())
    for key, value in fitted[0].items():
        torch.testing.assert_close(fitted[1][key], value, rtol=0, atol=0)


def test_dilations_follow_the_longest_training_sequence() -> None:
    torch.manual_seed(0)
    model = Rocket(input_size=1, num_classes=2, num_kernels=300)
    model.set_reference_length(500)
    span = (model.kernel_length - 1) * model.dilation  # each kernel's reach
    assert int(span.max()) <= 499 and int(span.max()) > 250 and int(model.dilation.min()) == 1
    model.fit_closed_form(torch.randn(8, 40, 1), torch.arange(8) % 2, torch.tensor([40, 30, 20, 10] * 2))
    assert int(((model.kernel_length - 1) * model.dilation).max()) <= 39  # the longest sequence has 40 steps


def test_kernels_are_centred_and_multivariate_ones_read_a_subset_of_channels() -> None:
    torch.manual_seed(0)
    model = Rocket(input_size=8, num_classes=2, num_kernels=400)
    torch.testing.assert_close(model.weight.sum(dim=(1, 2)), torch.zeros(400), atol=1e-5, rtol=0)
    channels_read = (model.weight.abs().sum(dim=2) > 0).sum(dim=1)  # (K,)
    assert int(channels_read.min()) >= 1 and int(channels_read.max()) <= 8 and float(channels_read.float().mean()) < 6
    taps = (model.weight.abs().sum(dim=1) > 0).sum(dim=1)  # (K,) the kernel's length
    assert torch.equal(taps, model.kernel_length)
    torch.manual_seed(0)
    assert torch.equal(Rocket(input_size=8, num_classes=2, num_kernels=400).weight, model.weight)  # seeded draw


def test_a_large_batch_gives_what_small_ones_give(one_thread: None) -> None:
    torch.manual_seed(0)
    model = Rocket(input_size=2, num_classes=3, num_kernels=40).eval()
    x, lengths = torch.randn(150, 20, 2), torch.randint(1, 21, (150,))
    whole = model(x, lengths)  # transformed 64 sequences at a time
    parts = torch.cat([model(x[i : i + 10], lengths[i : i + 10]) for i in range(0, 150, 10)])
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=0)


def test_a_sequence_shorter_than_every_kernel_gets_finite_logits() -> None:
    torch.manual_seed(0)
    model = Rocket(input_size=1, num_classes=2, num_kernels=30)
    model.set_reference_length(100)
    logits = model(torch.randn(3, 5, 1), torch.tensor([5, 1, 2]))
    assert torch.isfinite(logits).all()


def test_loading_weights_regroups_the_kernels_and_pickling_keeps_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Rocket(input_size=1, num_classes=2, num_kernels=60).eval()
    model.set_reference_length(300)
    x = torch.randn(4, 300, 1)
    other = Rocket(input_size=1, num_classes=2, num_kernels=60).eval()  # other kernels, dilations for 64 steps
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)
    torch.testing.assert_close(pickle.loads(pickle.dumps(model))(x), model(x), atol=0, rtol=0)
    model.save(tmp_path / "rocket.safetensors")
    torch.testing.assert_close(Rocket.load(tmp_path / "rocket.safetensors")(x), model(x), atol=0, rtol=0)


def test_config_is_checked_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="num_kernels must be a positive int; got 0"):
        RocketConfig(input_size=1, num_classes=2, num_kernels=0)
    with pytest.raises(TypeError, match="difference must be a bool"):
        Rocket(input_size=1, num_classes=2, difference="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length must be a positive int; got 0"):
        Rocket(input_size=1, num_classes=2, num_kernels=5).set_reference_length(0)
    model = Rocket(input_size=1, num_classes=2, num_kernels=5, difference=False)
    assert model.num_features == 20 and "num_kernels=5" in repr(model)
