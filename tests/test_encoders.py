from __future__ import annotations

import itertools

import pytest
import torch

from seqclf.encoders import RecurrentEncoder, StreamState, check_input, check_lengths, grad_mode, mean_over_steps


def test_an_encoder_is_the_recurrent_layers_and_a_readout_only() -> None:
    encoder = RecurrentEncoder(3, 5, num_layers=2, cell="gru")
    assert sorted({name.split(".")[0] for name in encoder.state_dict()}) == ["rnn"]
    x = torch.randn(4, 6, 3)
    torch.testing.assert_close(encoder(x), encoder.rnn(x)[0][:, -1], atol=0, rtol=0)
    assert RecurrentEncoder(3, 5, bidirectional=True).num_features == 10


@pytest.mark.parametrize(("cell", "readout", "bidirectional"),
                         list(itertools.product(["lstm", "gru", "rnn"], ["last", "mean", "max"], [False, True])))
def test_padding_never_changes_an_encoding(cell: str, readout: str, bidirectional: bool) -> None:
    encoder = RecurrentEncoder(3, 4, num_layers=2, cell=cell, bidirectional=bidirectional,  # type: ignore[arg-type]
                               readout=readout).eval()  # type: ignore[arg-type]
    sequences = [torch.randn(n, 3) for n in (5, 1, 3)]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=-8.0)
    batched = encoder(padded, torch.tensor([5, 1, 3]))
    torch.testing.assert_close(batched, torch.cat([encoder(s[None]) for s in sequences]), atol=1e-6, rtol=0)


def test_step_equals_the_prefix_encoding_without_autograd_history() -> None:
    encoder = RecurrentEncoder(3, 6, num_layers=2, readout="max").eval()
    x = torch.randn(2, 4, 3)
    state = encoder.initial_state(batch_size=2)
    assert isinstance(state, StreamState) and state.steps == 0
    for t in range(4):
        features, state = encoder.step(x[:, t], state)
        torch.testing.assert_close(features, encoder(x[:, : t + 1]), atol=1e-6, rtol=0)
    assert features.grad_fn is None and state.hidden.grad_fn is None and state.steps == 4
    _, state = encoder.step(x[:, 0], encoder.initial_state(batch_size=2), grad=True)
    assert state.hidden.grad_fn is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hidden_size": 0}, ValueError, "hidden_size must be a positive int; got 0"),
        ({"cell": "lstmx"}, ValueError, r"cell must be one of \('lstm', 'gru', 'rnn'\); got 'lstmx'"),
        ({"readout": "first"}, ValueError, "readout must be one of"),
        ({"bidirectional": 1}, TypeError, "bidirectional must be a bool; got 1"),
        ({"dropout": 1.0}, ValueError, r"dropout must be a float in \[0, 1\); got 1.0"),
    ],
)
def test_constructor_validation(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RecurrentEncoder(**{"input_size": 3, "hidden_size": 4, **kwargs})  # type: ignore[arg-type]


def test_input_checks_name_the_argument() -> None:
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor; got list"):
        check_input([[0.0]], 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, 3\); got \(2, 3\)"):
        check_input(torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match="x must have at least one time step"):
        check_input(torch.zeros(2, 0, 3), 3)
    x = torch.zeros(2, 4, 3)
    assert check_lengths(torch.tensor([4, 1], dtype=torch.int32), x).dtype == torch.int64
    with pytest.raises(TypeError, match=r"lengths must be an integer tensor; got dtype torch\.float32"):
        check_lengths(torch.tensor([4.0, 1.0]), x)
    with pytest.raises(ValueError, match=r"lengths must have shape \(batch,\) = \(2,\); got \(3,\)"):
        check_lengths(torch.tensor([4, 1, 1]), x)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\] .* got values from 1 to 5"):
        check_lengths(torch.tensor([5, 1]), x)


def test_a_bidirectional_encoder_refuses_to_stream() -> None:
    with pytest.raises(ValueError, match="streaming needs a one-direction model"):
        RecurrentEncoder(3, 4, bidirectional=True).initial_state(batch_size=1)


def test_grad_mode_follows_the_flag_and_the_caller() -> None:
    with grad_mode(False):
        assert not torch.is_grad_enabled()
    with grad_mode(True):
        assert torch.is_grad_enabled()
    with torch.no_grad(), grad_mode(True):
        assert not torch.is_grad_enabled()


def test_from_rnn_wraps_an_existing_module_without_initialising() -> None:
    rnn = torch.nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True)
    rng = torch.get_rng_state()
    encoder = RecurrentEncoder.from_rnn(rnn, readout="mean")
    assert torch.equal(torch.get_rng_state(), rng) and encoder.rnn is rnn
    assert (encoder.cell, encoder.num_features, encoder.num_layers) == ("gru", 8, 2)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(encoder(x), rnn(x)[0].mean(dim=1), atol=0, rtol=0)
    with pytest.raises(ValueError, match="rnn must be batch_first"):
        RecurrentEncoder.from_rnn(torch.nn.LSTM(3, 4))
    with pytest.raises(ValueError, match="mode='RNN_RELU'"):
        RecurrentEncoder.from_rnn(torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True))
    with pytest.raises(TypeError, match=r"rnn must be a torch\.nn\.LSTM, GRU or RNN; got Linear"):
        RecurrentEncoder.from_rnn(torch.nn.Linear(3, 4))  # type: ignore[arg-type]


def test_mean_over_steps_reads_only_the_valid_steps() -> None:
    x = torch.randn(3, 5, 2)
    lengths = torch.tensor([5, 1, 3])
    junk = x.clone()
    junk[1, 1:] = float("nan")
    junk[2, 3:] = 1e6
    means = mean_over_steps(junk, lengths)
    expected = torch.stack([x[i, :n].mean(dim=0) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(means, expected)
    torch.testing.assert_close(mean_over_steps(x, None), x.mean(dim=1))
