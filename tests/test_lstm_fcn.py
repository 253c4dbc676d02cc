from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from seqclf import LSTMFCN, LSTMFCNConfig, SequenceClassifier, Trainer, latest_checkpoint
from seqclf.callbacks import Checkpoint
from seqclf.checkpoint import CheckpointError
from seqclf.encoders import RecurrentEncoder
from seqclf.lstm_fcn import MaskedBatchNorm1d

from .conftest import make_sequences

SMALL = {"hidden_size": 5, "filters": (6, 7, 4), "kernel_sizes": (4, 3, 2)}  # even kernels pad asymmetrically


def ragged(lengths: list[int], features: int = 3, junk: float = 9.0) -> tuple[list[torch.Tensor], torch.Tensor]:
    sequences = [torch.randn(n, features) for n in lengths]
    return sequences, torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=junk)


def test_default_model_is_lstm_fcn() -> None:
    model = LSTMFCN(input_size=2, num_classes=3)
    assert [b.conv.out_channels for b in model.blocks] == [64, 128, 64]  # type: ignore[union-attr]
    assert [b.conv.kernel_size for b in model.blocks] == [(8,), (5,), (3,)]  # type: ignore[union-attr]
    assert isinstance(model.lstm, RecurrentEncoder) and model.lstm.rnn.hidden_size == 32
    assert model.num_features == 64 + 32 and model.head.out_features == 3


@pytest.mark.parametrize(
    ("norm", "layout", "readout"), list(itertools.product(["batch", "layer"], ["parallel", "serial"], ["last", "mean"]))
)
def test_padding_never_changes_a_result_in_eval(norm: str, layout: str, readout: str) -> None:
    model = LSTMFCN(3, 4, norm=norm, layout=layout, readout=readout, **SMALL).train()  # type: ignore[arg-type]
    model(torch.randn(8, 9, 3))  # moves the batch norm's running statistics away from 0 and 1
    model.eval()
    sequences, padded = ragged([7, 1, 3, 7, 5])
    batched = model(padded, torch.tensor([7, 1, 3, 7, 5]))
    alone = torch.cat([model(seq[None]) for seq in sequences])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("norm", "layout"), list(itertools.product(["batch", "layer"], ["parallel", "serial"])))
def test_padding_never_changes_a_result_in_training(norm: str, layout: str) -> None:
    """Batch statistics count valid steps only: more padding, holding other junk, changes nothing."""
    model = LSTMFCN(3, 4, norm=norm, layout=layout, dropout=0.0, **SMALL).train()  # type: ignore[arg-type]
    lengths = torch.tensor([6, 2, 4])
    _, padded = ragged([6, 2, 4])
    longer = torch.cat([padded, torch.full((3, 5, 3), -7.0)], dim=1)  # (3, 11, 3)
    torch.testing.assert_close(model(padded, lengths), model(longer, lengths), atol=1e-5, rtol=0)
    if norm == "layer":  # per-step statistics: each sequence is independent even in training
        sequences = [padded[i, : int(n)] for i, n in enumerate(lengths)]
        alone = torch.cat([model(seq[None]) for seq in sequences])
        torch.testing.assert_close(model(padded, lengths), alone, atol=1e-5, rtol=0)


def test_masked_batch_norm_statistics_are_those_of_the_valid_steps() -> None:
    norm = MaskedBatchNorm1d(2)
    x = torch.randn(3, 2, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)[:, None]
    out = norm(x, mask)
    valid = x.transpose(1, 2)[mask[:, 0]]  # (9, 2): the valid steps
    expected = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + norm.eps)
    torch.testing.assert_close(out.transpose(1, 2)[mask[:, 0]], expected)
    torch.testing.assert_close(norm.running_mean, 0.1 * valid.mean(0))
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * valid.var(0, unbiased=True))
    reference = torch.nn.BatchNorm1d(2)  # without a mask it is exactly BatchNorm1d
    torch.testing.assert_close(MaskedBatchNorm1d(2)(x), reference(x))


def test_full_lengths_equal_no_lengths() -> None:
    model = LSTMFCN(3, 2, **SMALL).eval()
    x = torch.randn(4, 6, 3)
    torch.testing.assert_close(model(x, torch.full((4,), 6)), model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("layout", ["parallel", "serial"])
def test_every_parameter_gets_a_gradient(layout: str) -> None:
    model = LSTMFCN(3, 2, layout=layout, **SMALL)  # type: ignore[arg-type]
    model(torch.randn(4, 6, 3), torch.tensor([6, 2, 5, 1])).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_forward_head_on_features() -> None:
    model = LSTMFCN(3, 2, **SMALL)
    x = torch.randn(4, 6, 3)
    features = model.forward_features(x)
    assert features.shape == (4, model.num_features)
    torch.testing.assert_close(model.eval().forward_head(model.forward_features(x)), model(x))


def test_config_round_trip() -> None:
    model = LSTMFCN(3, 2, norm="layer", layout="serial", **SMALL)
    data = model.config.to_dict()
    assert data["filters"] == [6, 7, 4]  # plain data
    config = LSTMFCNConfig.from_dict(data)
    assert config == model.config
    rebuilt = LSTMFCN.from_config(config)
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in model.named_parameters()]
    with pytest.raises(ValueError, match=r"unknown fields \['cell'\]"):
        LSTMFCNConfig.from_dict({**data, "cell": "gru"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden_size must be a positive int; got 0"),
        ({"filters": (8, 0, 8)}, r"filters\[1\] must be a positive int; got 0"),
        ({"filters": (8, 8)}, "filters and kernel_sizes must have the same length"),
        ({"norm": "instance"}, r"norm must be one of \('batch', 'layer'\); got 'instance'"),
        ({"layout": "stacked"}, r"layout must be one of \('parallel', 'serial'\); got 'stacked'"),
        ({"dropout": 1.0}, r"dropout must be a float in \[0, 1\); got 1.0"),
    ],
)
def test_constructor_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LSTMFCN(3, 2, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "lengths", "error", "message"),
    [
        (torch.zeros(2, 5, 4), None, ValueError, r"x must have shape \(batch, time, 3\); got \(2, 5, 4\)"),
        (torch.zeros(2, 5, 3, dtype=torch.int64), None, TypeError, "x must be a floating-point tensor"),
        (torch.zeros(2, 5, 3), torch.tensor([5, 6]), ValueError, r"lengths must lie in \[1, 5\]"),
    ],
)
def test_forward_validation(x: torch.Tensor, lengths: torch.Tensor | None, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        LSTMFCN(3, 2, **SMALL)(x, lengths)


def test_trains_with_trainer_and_rebuilds_from_its_checkpoint(tmp_path: Path, one_thread: None) -> None:
    x, y = make_sequences(48, time=8)
    lengths = torch.randint(3, 9, (48,))
    model = LSTMFCN(3, 2, **SMALL)
    trainer = Trainer(model, epochs=8, batch_size=16, lr=1e-2, seed=0, device="cpu",
                      callbacks=[Checkpoint(tmp_path, every_n_epochs=1)])
    history = trainer.fit((x, lengths, y), (x, lengths, y))
    assert history[-1]["val_accuracy"] > 0.8  # the task is easy: the class is the feature with the larger mean
    path = latest_checkpoint(tmp_path)
    assert path is not None
    rebuilt = LSTMFCN.from_checkpoint(path)
    assert rebuilt.config == model.config and not rebuilt.training
    torch.testing.assert_close(rebuilt(x, lengths), model.eval()(x, lengths), atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="must hold a SequenceClassifier to rebuild one; got a LSTMFCN"):
        SequenceClassifier.from_checkpoint(path)


def test_normalize_is_fitted_by_the_trainer_and_keeps_padding_invariance() -> None:
    x, y = make_sequences(32, time=7)
    x = x * 5.0 + 3.0
    model = LSTMFCN(3, 2, normalize=True, **SMALL)
    assert model.normalize is not None and not model.normalize.is_fitted
    Trainer(model, epochs=1, batch_size=16, seed=0, device="cpu", progress=False).fit((x, y))
    assert model.normalize.is_fitted
    torch.testing.assert_close(model.normalize.mean, x.reshape(-1, 3).mean(0), atol=1e-4, rtol=0)
    model.eval()
    sequences, padded = ragged([7, 2, 5])
    batched = model(padded, torch.tensor([7, 2, 5]))
    torch.testing.assert_close(batched, torch.cat([model(seq[None]) for seq in sequences]), atol=1e-5, rtol=0)
    assert "normalize.mean" in model.state_dict() and LSTMFCN(3, 2, **SMALL).normalize is None


def test_save_and_load_one_safetensors_file(tmp_path: Path) -> None:
    model = LSTMFCN(3, 2, normalize=True, **SMALL).eval()
    x = torch.randn(4, 6, 3)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = LSTMFCN.load(path)
    assert loaded.config == model.config and not loaded.training
    lengths = torch.tensor([6, 2, 5, 1])
    torch.testing.assert_close(loaded(x, lengths), model(x, lengths), atol=0, rtol=0)
