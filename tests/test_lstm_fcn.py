from __future__ import annotations

import itertools
import pickle
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


@pytest.mark.parametrize("layout", ["parallel", "serial"])
def test_every_parameter_gets_a_gradient(layout: str) -> None:
    model = LSTMFCN(3, 2, layout=layout, **SMALL)  # type: ignore[arg-type]
    model(torch.randn(4, 6, 3), torch.tensor([6, 2, 5, 1])).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


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


def test_masked_batch_norm_without_running_statistics_honours_the_mask_in_eval() -> None:
    """With ``track_running_stats=False`` eval uses batch statistics too: of the valid steps only."""
    norm = MaskedBatchNorm1d(2, track_running_stats=False).eval()
    x = torch.randn(1, 2, 7)
    padded = torch.cat([x[:, :, :4], torch.full((1, 2, 3), 50.0)], dim=2)  # junk after step 4
    mask = (torch.arange(7) < 4)[None, None]  # (1, 1, 7)
    reference = torch.nn.BatchNorm1d(2, track_running_stats=False).eval()
    torch.testing.assert_close(norm(padded, mask)[:, :, :4], reference(x[:, :, :4]))


def test_masked_batch_norm_momentum_none_is_a_cumulative_average() -> None:
    norm = MaskedBatchNorm1d(2, momentum=None)
    reference = torch.nn.BatchNorm1d(2, momentum=None)
    for length in (3, 6, 2):
        x = torch.randn(1, 2, length) * length + length
        padded = torch.cat([x, torch.full((1, 2, 8 - length), -9.0)], dim=2)  # (1, 2, 8)
        norm(padded, (torch.arange(8) < length)[None, None])
        reference(x)
    assert int(norm.num_batches_tracked) == 3
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)


@pytest.mark.parametrize("masked", [False, True])
def test_masked_batch_norm_on_one_value_per_channel_uses_the_running_statistics(masked: bool) -> None:
    """One sequence of one valid step says nothing about the variance: no error, no update."""
    norm = MaskedBatchNorm1d(2)
    norm(torch.randn(4, 2, 5) * 3.0 + 1.0)  # running statistics away from 0 and 1
    before = (norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked))
    x = torch.randn(1, 2, 3 if masked else 1)
    mask = torch.tensor([True, False, False])[None, None] if masked else None
    out = norm(x, mask)
    assert int(norm.num_batches_tracked) == before[2]
    torch.testing.assert_close(norm.running_mean, before[0], atol=0, rtol=0)
    torch.testing.assert_close(norm.running_var, before[1], atol=0, rtol=0)
    expected = (x[:, :, :1] - before[0][None, :, None]) / torch.sqrt(before[1][None, :, None] + norm.eps)
    torch.testing.assert_close(out[:, :, :1], expected)


def test_one_step_sequences_train_when_the_last_batch_holds_one(one_thread: None) -> None:
    x, y = make_sequences(17, time=1)  # batches of 8, 8 and 1
    model = LSTMFCN(3, 2, **SMALL)
    history = Trainer(model, epochs=2, batch_size=8, seed=0, device="cpu", progress=False).fit((x, y))
    assert len(history) == 2 and all(torch.isfinite(p).all() for p in model.parameters())


def test_streaming_is_refused_with_a_reason() -> None:
    model = LSTMFCN(3, 2, **SMALL).eval()
    with pytest.raises(NotImplementedError, match=r"LSTMFCN cannot stream .* model\(x\[:, : t \+ 1\]\)"):
        model.initial_state(batch_size=1)
    with pytest.raises(NotImplementedError, match="cannot stream"):
        model.step(torch.zeros(1, 3), None)


def test_a_model_pickled_by_seqclf_0_1_0_unpickles_and_predicts_the_same() -> None:
    """Pickled whole when its LSTM branch was a SequenceClassifier (``tests/fixtures/make_pickled_models.py``)."""
    content = pickle.loads((Path(__file__).parent / "fixtures" / "pickled_models.pkl").read_bytes())  # our fixture
    model = content["models"]["lstm_fcn"]
    assert isinstance(model.lstm, RecurrentEncoder)
    torch.testing.assert_close(model(content["x"], content["lengths"]), content["expected"]["lstm_fcn"], atol=0, rtol=0)
    assert list(model.state_dict()) == list(LSTMFCN.from_config(model.config).state_dict())
