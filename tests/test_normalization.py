from __future__ import annotations

from pathlib import Path

import pytest
import torch

import seqclf
from seqclf.normalization import Standardize

CPU = torch.device("cpu")


def test_fit_counts_valid_steps_only_so_padding_does_not_change_the_statistics() -> None:
    sequences = [torch.randn(n, 3) * 4 + 10 for n in (3, 7, 5)]
    padded, lengths = seqclf.pad_sequences(sequences)
    garbage = padded.clone()
    for i, n in enumerate(lengths.tolist()):
        garbage[i, n:] = 1e6  # anything in the padding must be ignored
    steps = torch.cat(sequences).double()  # (15, 3)
    for x in (padded, garbage):
        layer = Standardize(3).fit(x, lengths)
        torch.testing.assert_close(layer.mean, steps.mean(0).float())
        torch.testing.assert_close(layer.scale, steps.std(0, unbiased=False).float())
        assert layer.is_fitted


def test_forward_standardises_and_keeps_padded_steps_at_zero() -> None:
    x = torch.randn(4, 6, 2) * torch.tensor([3.0, 0.1]) + torch.tensor([-5.0, 2.0])
    layer = Standardize(2).fit(x)
    out = layer(x)
    torch.testing.assert_close(out.mean(dim=(0, 1)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 1), unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    lengths = torch.tensor([6, 2, 4, 1])
    masked = layer(x, lengths)
    assert masked[1, 2:].abs().sum() == 0 and masked[3, 1:].abs().sum() == 0
    torch.testing.assert_close(masked[0], out[0])


def test_constant_channels_get_scale_one_and_float64_keeps_large_offsets_exact() -> None:
    x = torch.stack([torch.full((50, 80), 7.0), torch.randn(50, 80) + 1e6], dim=-1)  # (50, 80, 2)
    layer = Standardize(2).fit(x)
    assert layer.scale[0] == 1.0 and layer.mean[0] == 7.0
    expected = x[..., 1].double().std(unbiased=False)  # about 1; E[x^2] - E[x]^2 in float32 gets 0 or garbage
    torch.testing.assert_close(layer.scale[1].double(), expected, rtol=1e-5, atol=0)
    assert torch.isfinite(layer(x)).all() and layer(x)[..., 0].abs().max() == 0


def test_unfitted_layer_is_the_identity_and_bad_arguments_are_refused() -> None:
    layer = Standardize(3)
    x = torch.randn(2, 4, 3)
    assert not layer.is_fitted and torch.equal(layer(x), x)
    with pytest.raises(ValueError, match="num_features must be a positive int; got 0"):
        Standardize(0)
    with pytest.raises(ValueError, match=r"must have shape \(batch, time, 3\) to fit the standardisation; got \(2, 4, 2\)"):
        layer.fit(torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match="must be finite"):
        layer.fit(torch.full((2, 4, 3), float("nan")))
    assert not layer.is_fitted


def test_statistics_are_buffers_saved_in_the_state_dict() -> None:
    layer = Standardize(2).fit(torch.randn(3, 4, 2) + 3)
    assert set(layer.state_dict()) == {"mean", "scale", "fitted"} and list(layer.parameters()) == []
    fresh = Standardize(2)
    fresh.load_state_dict(layer.state_dict())
    assert fresh.is_fitted and torch.equal(fresh.mean, layer.mean)


def test_fit_standardizers_moved_to_input_statistics_and_the_old_name_warns() -> None:
    from seqclf import input_statistics

    with pytest.warns(DeprecationWarning, match="seqclf.normalization.fit_standardizers has moved to seqclf.input_st"):
        old = seqclf.normalization.fit_standardizers
    assert old is input_statistics.fit_standardizers
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        seqclf.normalization.no_such_name  # noqa: B018


def test_trainer_fits_the_model_standardisation_on_a_fresh_run_but_not_on_resume(tmp_path: Path, one_thread: None) -> None:
    x, y = torch.randn(32, 6, 3) * 5 + 20, torch.randint(0, 2, (32,))
    model = seqclf.SequenceClassifier(3, 8, 2, normalize=True)
    trainer = seqclf.Trainer(model, epochs=1, batch_size=8, seed=0, device="cpu", progress=False,
                             callbacks=[seqclf.Checkpoint(tmp_path, every_n_steps=2)])
    trainer.fit((x, y))
    assert model.normalize is not None and model.normalize.is_fitted
    torch.testing.assert_close(model.normalize.mean, x.double().mean(dim=(0, 1)).float())
    checkpoint = seqclf.latest_checkpoint(tmp_path)
    assert checkpoint is not None

    restored = seqclf.SequenceClassifier.from_checkpoint(checkpoint)
    assert restored.normalize is not None and restored.normalize.is_fitted
    torch.testing.assert_close(restored.normalize.mean, model.normalize.mean)

    # a resumed run keeps the checkpoint's statistics even when given other data
    resumed_model = seqclf.SequenceClassifier(3, 8, 2, normalize=True)
    resumed = seqclf.Trainer(resumed_model, epochs=2, batch_size=8, seed=0, device="cpu", progress=False)
    resumed.fit((x * 100, y), resume_from=checkpoint)
    assert resumed_model.normalize is not None
    torch.testing.assert_close(resumed_model.normalize.mean, model.normalize.mean)


def test_a_fitted_model_predicts_raw_data_as_it_was_trained(one_thread: None) -> None:
    x, y = torch.randn(64, 6, 3), torch.randint(0, 2, (64,))
    x[torch.arange(64), :, y] += 1.5
    raw = x * 1000 + 5000  # far from unit scale: learnable only with the standardisation
    model = seqclf.SequenceClassifier(3, 16, 2, normalize=True)
    trainer = seqclf.Trainer(model, epochs=15, batch_size=16, lr=1e-2, seed=0, device="cpu", progress=False)
    trainer.fit((raw, y))
    assert trainer.evaluate((raw, y))["accuracy"] > 0.9
