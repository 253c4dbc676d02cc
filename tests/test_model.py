from __future__ import annotations

import itertools

import pytest
import torch

from seqclf import ModelConfig, SequenceClassifier


def test_defaults_are_the_tutorial_model() -> None:
    model = SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    assert isinstance(model.encoder.rnn, torch.nn.LSTM)
    assert (model.encoder.rnn.input_size, model.encoder.rnn.hidden_size, model.encoder.rnn.num_layers) == (28, 64, 1)
    assert model.encoder.rnn.batch_first and not model.encoder.rnn.bidirectional
    assert (model.head.in_features, model.head.out_features) == (64, 10)
    assert sum(p.numel() for p in model.parameters()) == 24_714


def test_default_forward_is_linear_on_last_lstm_output() -> None:
    model = SequenceClassifier(28, 64, 10)
    x = torch.randn(5, 28, 28)
    out, _ = model.encoder.rnn(x)
    torch.testing.assert_close(model(x), model.head(out[:, -1, :]))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("readout", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shape_and_finite(cell: str, readout: str, bidirectional: bool) -> None:
    model = SequenceClassifier(4, 8, 3, num_layers=2, cell=cell, bidirectional=bidirectional, readout=readout)  # type: ignore[arg-type]
    logits = model(torch.randn(6, 7, 4), torch.tensor([7, 1, 3, 7, 5, 2]))
    assert logits.shape == (6, 3)
    assert torch.isfinite(logits).all()
    assert model.forward_features(torch.randn(2, 7, 4)).shape == (2, model.num_features)


@pytest.mark.parametrize(
    ("cell", "readout", "bidirectional", "num_layers"),
    list(itertools.product(["lstm", "gru", "rnn"], ["last", "mean", "max"], [False, True], [1, 2])),
)
def test_padding_never_changes_a_result(cell: str, readout: str, bidirectional: bool, num_layers: int) -> None:
    model = SequenceClassifier(
        3, 5, 4, num_layers=num_layers, cell=cell, bidirectional=bidirectional, readout=readout  # type: ignore[arg-type]
    ).eval()
    lengths = torch.tensor([2, 7, 1, 5, 7, 3])
    sequences = [torch.randn(int(n), 3) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=9.0)  # junk padding
    batched = model(padded, lengths)
    alone = torch.cat([model(seq[None]) for seq in sequences])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_bidirectional_last_is_forward_last_valid_step_and_backward_full_pass() -> None:
    model = SequenceClassifier(2, 4, 2, bidirectional=True).eval()
    seq = torch.randn(1, 3, 2)
    out, _ = model.encoder.rnn(seq)
    expected = torch.cat([out[:, -1, :4], out[:, 0, 4:]], dim=1)
    padded = torch.cat([seq, torch.full((1, 2, 2), 5.0)], dim=1)
    torch.testing.assert_close(model.forward_features(padded, torch.tensor([3])), expected, atol=1e-6, rtol=0)


def test_full_lengths_equal_no_lengths() -> None:
    model = SequenceClassifier(3, 5, 2, readout="mean")
    x = torch.randn(4, 6, 3)
    torch.testing.assert_close(model(x, torch.full((4,), 6)), model(x))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_parameter_gets_a_gradient(cell: str) -> None:
    model = SequenceClassifier(3, 5, 2, num_layers=2, cell=cell, bidirectional=True, dropout=0.1)  # type: ignore[arg-type]
    model(torch.randn(4, 6, 3), torch.tensor([6, 2, 4, 1])).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_overfits_a_tiny_batch() -> None:
    model = SequenceClassifier(3, 16, 4)
    x, y = torch.randn(16, 5, 3), torch.randint(0, 4, (16,))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert (model(x).argmax(1) == y).all()


def test_forward_head_can_be_swapped_on_features() -> None:
    model = SequenceClassifier(3, 5, 2)
    features = model.forward_features(torch.randn(2, 4, 3))
    assert model.forward_head(features).shape == (2, 2)


def test_config_round_trip() -> None:
    model = SequenceClassifier(3, 5, 2, cell="gru", readout="max", bidirectional=True, num_layers=2, dropout=0.25)
    config = ModelConfig.from_dict(model.config.to_dict())
    assert config == model.config
    rebuilt = SequenceClassifier.from_config(config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert "cell='gru'" in repr(model)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_size": 0}, ValueError, "input_size must be a positive int; got 0"),
        ({"hidden_size": 2.5}, ValueError, "hidden_size must be a positive int; got 2.5"),
        ({"num_classes": True}, ValueError, "num_classes must be a positive int; got True"),
        ({"num_classes": 1}, ValueError, "num_classes must be >= 2 (one logit per class); got 1"),
        ({"num_layers": -1}, ValueError, "num_layers must be a positive int; got -1"),
        ({"cell": "transformer"}, ValueError, "cell must be one of ('lstm', 'gru', 'rnn'); got 'transformer'"),
        ({"readout": "first"}, ValueError, "readout must be one of ('last', 'mean', 'max'); got 'first'"),
        ({"bidirectional": 1}, TypeError, "bidirectional must be a bool; got 1"),
        ({"dropout": 1.0}, ValueError, "dropout must be a float in [0, 1); got 1.0"),
        ({"normalize": "yes"}, TypeError, "normalize must be a bool; got 'yes'"),
    ],
)
def test_constructor_validation(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    arguments: dict[str, object] = {"input_size": 3, "hidden_size": 4, "num_classes": 2, **kwargs}
    with pytest.raises(error) as raised:
        SequenceClassifier(**arguments)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_unknown_config_field() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['width'\]"):
        ModelConfig.from_dict({"input_size": 1, "hidden_size": 1, "num_classes": 2, "width": 3})


@pytest.mark.parametrize(
    ("x", "lengths", "error", "message"),
    [
        (torch.randn(2, 5), None, ValueError, r"x must have shape \(batch, time, 3\); got \(2, 5\)"),
        (torch.randn(2, 5, 4), None, ValueError, r"x must have shape \(batch, time, 3\); got \(2, 5, 4\)"),
        (torch.ones(2, 5, 3, dtype=torch.int64), None, TypeError, "x must be a floating-point tensor; got dtype torch.int64"),
        (torch.randn(2, 0, 3), None, ValueError, "x must have at least one time step"),
        ([[1.0]], None, TypeError, "x must be a torch.Tensor; got list"),
        (torch.randn(2, 5, 3), torch.tensor([5]), ValueError, r"lengths must have shape \(batch,\) = \(2,\); got \(1,\)"),
        (torch.randn(2, 5, 3), torch.tensor([5.0, 2.0]), TypeError, "lengths must be an integer tensor; got dtype torch.float32"),
        (torch.randn(2, 5, 3), torch.tensor([0, 2]), ValueError, r"lengths must lie in \[1, 5\].*got values from 0 to 2"),
        (torch.randn(2, 5, 3), torch.tensor([6, 2]), ValueError, r"lengths must lie in \[1, 5\].*got values from 2 to 6"),
        (torch.randn(2, 5, 3), torch.tensor([-1, 2]), ValueError, r"lengths must lie in \[1, 5\]"),
    ],
)
def test_forward_validation(x: object, lengths: object, error: type[Exception], message: str) -> None:
    model = SequenceClassifier(3, 4, 2)
    with pytest.raises(error, match=message):
        model(x, lengths)  # type: ignore[arg-type]


# ------------------------------------------------------------------ dense padded path
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_padded_backward_reads_each_sequence_reversed_within_its_length(cell: str) -> None:
    model = SequenceClassifier(2, 4, 2, num_layers=2, cell=cell, bidirectional=True, readout="mean").eval()  # type: ignore[arg-type]
    seq = torch.randn(1, 3, 2)
    padded = torch.cat([seq, torch.full((1, 4, 2), -3.0)], dim=1)  # (1, 7, 2), junk after step 3
    out, _ = model.encoder.rnn(seq)  # (1, 3, 8): nn's own bidirectional run of the sequence alone
    torch.testing.assert_close(model.forward_features(padded, torch.tensor([3])), out.mean(dim=1), atol=1e-6, rtol=0)


def test_state_dict_keys_are_the_encoders_and_the_older_names_still_load() -> None:
    model = SequenceClassifier(28, 64, 10)
    assert sorted(model.state_dict()) == ["encoder.rnn.bias_hh_l0", "encoder.rnn.bias_ih_l0", "encoder.rnn.weight_hh_l0",
                                          "encoder.rnn.weight_ih_l0", "head.bias", "head.weight"]
    bidirectional = SequenceClassifier(3, 4, 2, bidirectional=True)
    assert "encoder.rnn.weight_ih_l0_reverse" in bidirectional.state_dict()
    # weights saved before the encoder existed were named "rnn.*"
    older = {k.replace("encoder.rnn.", "rnn."): v + 1.0 for k, v in bidirectional.state_dict().items()}
    fresh = SequenceClassifier(3, 4, 2, bidirectional=True)
    fresh.load_state_dict(older)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, older[name.replace("encoder.rnn.", "rnn.")])
    with pytest.warns(DeprecationWarning, match="model.encoder.rnn"):
        assert fresh.rnn is fresh.encoder.rnn


def test_padded_gradients_equal_per_sequence_gradients() -> None:
    model = SequenceClassifier(3, 5, 2, num_layers=2, cell="gru", bidirectional=True, readout="max")
    lengths = torch.tensor([4, 1, 6])
    sequences = [torch.randn(int(n), 3) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=4.0)
    model(padded, lengths).sum().backward()
    batched = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    sum(model(seq[None]).sum() for seq in sequences).backward()  # type: ignore[union-attr]
    for got, expected in zip(batched, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize(
    ("cell", "readout", "num_layers"),
    list(itertools.product(["lstm", "gru", "rnn"], ["last", "mean", "max"], [1, 2])),
)
def test_step_logits_equal_prefix_logits(cell: str, readout: str, num_layers: int) -> None:
    model = SequenceClassifier(3, 5, 4, num_layers=num_layers, cell=cell, readout=readout, dropout=0.3).eval()  # type: ignore[arg-type]
    x = torch.randn(2, 6, 3)
    state = model.initial_state(batch_size=2)
    assert state.steps == 0 and state.hidden.shape == (num_layers, 2, 5)
    assert (state.cell is not None) == (cell == "lstm")
    assert (state.summary is None) == (readout == "last")
    for t in range(6):
        logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(logits, model(x[:, : t + 1]), atol=1e-5, rtol=0)
    assert state.steps == 6


def test_streaming_refuses_a_bidirectional_model() -> None:
    model = SequenceClassifier(3, 4, 2, bidirectional=True)
    with pytest.raises(ValueError, match=r"streaming needs a one-direction model.*got bidirectional=True"):
        model.initial_state(1)
    state = SequenceClassifier(3, 4, 2).initial_state(1)
    with pytest.raises(ValueError, match="one-direction"):
        model.step(torch.randn(1, 3), state)


@pytest.mark.parametrize(
    ("x_t", "state", "error", "message"),
    [
        (torch.randn(2, 3), "state", TypeError, "state must be a StreamState from initial_state"),
        (torch.randn(3, 3), None, ValueError, r"x_t must have shape \(batch, input_size\) = \(2, 3\).*got \(3, 3\)"),
        (torch.randn(2, 1, 3), None, ValueError, r"got \(2, 1, 3\)"),
        (torch.ones(2, 3, dtype=torch.int64), None, TypeError, "x_t must be a floating-point tensor"),
        ([[0.0]], None, TypeError, "x_t must be a torch.Tensor; got list"),
    ],
)
def test_step_validation(x_t: object, state: object, error: type[Exception], message: str) -> None:
    model = SequenceClassifier(3, 4, 2)
    with pytest.raises(error, match=message):
        model.step(x_t, model.initial_state(2) if state is None else state)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive int; got 0"):
        model.initial_state(0)


def test_step_applies_the_models_input_normalisation() -> None:
    model = SequenceClassifier(3, 5, 2, readout="mean", normalize=True).eval()
    assert model.normalize is not None
    model.normalize.set_statistics(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 3.0]))
    x = torch.randn(2, 4, 3)
    state = model.initial_state(2)
    for t in range(4):
        logits, state = model.step(x[:, t], state)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=0)


def test_normalize_is_off_by_default_and_leaves_the_tutorial_model_unchanged() -> None:
    plain = SequenceClassifier(28, 64, 10)
    assert plain.normalize is None and plain.config.normalize is False
    normalized = SequenceClassifier(28, 64, 10, normalize=True)
    assert sum(p.numel() for p in normalized.parameters()) == sum(p.numel() for p in plain.parameters())
    assert set(normalized.state_dict()) - set(plain.state_dict()) == {"normalize.mean", "normalize.scale", "normalize.fitted"}
    assert ModelConfig.from_dict(normalized.config.to_dict()).normalize is True
    assert "normalize=True" in repr(normalized) and "normalize" not in plain.extra_repr()


def test_normalize_standardises_the_input_and_padding_still_never_changes_a_result() -> None:
    model = SequenceClassifier(3, 5, 4, readout="mean", normalize=True).eval()
    lengths = torch.tensor([2, 7, 1, 5])
    sequences = [torch.randn(int(n), 3) * 10 + 50 for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=9.0)  # junk padding
    assert model.normalize is not None
    model.normalize.fit(padded, lengths)
    standardized = (padded - model.normalize.mean) / model.normalize.scale
    reference = SequenceClassifier(3, 5, 4, readout="mean").eval()
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")})
    torch.testing.assert_close(model(padded, lengths), reference(standardized, lengths), atol=1e-5, rtol=0)
    alone = torch.cat([model(seq[None]) for seq in sequences])
    torch.testing.assert_close(model(padded, lengths), alone, atol=1e-5, rtol=0)
