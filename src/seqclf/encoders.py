"""The recurrent encoder: an LSTM, GRU or RNN stack and a readout, padding-correct, streamable.

:class:`RecurrentEncoder` turns a padded batch of sequences ``(batch, time, input_size)``
into one vector per sequence ``(batch, num_features)``. It is the part that
:class:`~seqclf.SequenceClassifier` and :class:`~seqclf.LSTMFCN` share: a model puts a
front end before it (a :class:`~seqclf.normalization.Standardize`, an embedding of token
ids, convolutions) and a head after it. It holds no head and knows no classes.

:func:`check_input` and :func:`check_lengths` are the input checks every seqclf model
runs once at its entry point; a model that has checked its input calls
:meth:`RecurrentEncoder.encode`, which does not check again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ._checks import boolean, fraction, one_of, positive_int

__all__ = ["RecurrentEncoder", "StreamState", "check_input", "check_lengths", "grad_mode", "mean_over_steps"]

Cell = Literal["lstm", "gru", "rnn"]
Readout = Literal["last", "mean", "max"]

_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass(frozen=True)
class StreamState:
    """What a streaming ``step`` carries from one time step to the next.

    Attributes:
        hidden: ``(num_layers, batch, hidden_size)`` hidden state of each layer.
        cell: ``(num_layers, batch, hidden_size)`` LSTM cell state; None for GRU and RNN.
        steps: time steps read so far.
        summary: ``(batch, hidden_size)`` running sum (``readout="mean"``) or maximum
            (``readout="max"``) of the last layer's outputs; None for ``readout="last"``.
        bag: ``(batch, embedding_dim)`` running sum of the token vectors read, for a
            model that also reads a bag of words (``SequenceClassifier(..., bag=True)``);
            None otherwise.
    """

    hidden: Tensor
    cell: Tensor | None
    steps: int
    summary: Tensor | None
    bag: Tensor | None = None


class RecurrentEncoder(nn.Module):
    """A recurrent stack and a readout: ``(batch, time, input_size)`` to ``(batch, num_features)``.

    Padding never changes a result: with ``lengths``, each sequence's encoding equals the
    encoding of that sequence alone, whatever the padding holds.

    Args:
        input_size: features per time step.
        hidden_size: hidden units per direction.
        num_layers: stacked recurrent layers.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh).
        bidirectional: also read each sequence backwards.
        dropout: dropout between stacked layers.
        readout: how a sequence of hidden states becomes one vector: ``"last"`` (the
            last valid step; for a bidirectional encoder, the forward direction's last
            valid step and the backward direction's full pass), ``"mean"`` or ``"max"``
            over valid steps.

    Examples:
        >>> encoder = RecurrentEncoder(input_size=3, hidden_size=8, readout="mean")
        >>> encoder(torch.zeros(4, 10, 3), torch.tensor([10, 2, 5, 1])).shape
        torch.Size([4, 8])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        readout: Readout = "last",
    ) -> None:
        super().__init__()
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        one_of("cell", cell, get_args(Cell))
        one_of("readout", readout, get_args(Readout))
        boolean("bidirectional", bidirectional)
        self.cell: Cell = cell
        self.readout: Readout = readout
        self.bidirectional = bidirectional
        self.dropout = fraction("dropout", dropout)
        self.rnn: nn.LSTM | nn.GRU | nn.RNN = _CELLS[cell](
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=self.dropout if self.num_layers > 1 else 0.0,
        )

    @classmethod
    def from_rnn(cls, rnn: nn.LSTM | nn.GRU | nn.RNN, readout: Readout = "last") -> RecurrentEncoder:
        """An encoder around an existing recurrent module, its weights kept (nothing is initialised).

        Args:
            rnn: a ``batch_first`` :class:`torch.nn.LSTM`, :class:`~torch.nn.GRU` or
                :class:`~torch.nn.RNN` (tanh) with biases (and, for an LSTM, no projection).
            readout: as in the constructor.

        Raises:
            TypeError: ``rnn`` is not one of those modules.
            ValueError: ``rnn`` is not ``batch_first``, has no biases, a ReLU or a projection.
        """
        cells = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "rnn"}
        if type(rnn) not in cells:
            raise TypeError(f"rnn must be a torch.nn.LSTM, GRU or RNN; got {type(rnn).__name__}")
        if not rnn.batch_first or not rnn.bias or rnn.mode not in ("LSTM", "GRU", "RNN_TANH") or rnn.proj_size:
            raise ValueError(
                "rnn must be batch_first, with biases, no projection and (for an RNN) tanh; "
                f"got batch_first={rnn.batch_first}, bias={rnn.bias}, mode={rnn.mode!r}, proj_size={rnn.proj_size}"
            )
        one_of("readout", readout, get_args(Readout))
        encoder = cls.__new__(cls)
        nn.Module.__init__(encoder)
        encoder.input_size, encoder.hidden_size, encoder.num_layers = rnn.input_size, rnn.hidden_size, rnn.num_layers
        encoder.cell = cells[type(rnn)]  # type: ignore[assignment]
        encoder.readout, encoder.bidirectional, encoder.dropout = readout, rnn.bidirectional, float(rnn.dropout)
        encoder.rnn = rnn
        return encoder

    @property
    def num_features(self) -> int:
        """Size of the encoding: ``hidden_size``, doubled for a bidirectional encoder."""
        return self.hidden_size * (2 if self.bidirectional else 1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The encoding ``(batch, num_features)`` of ``x`` ``(batch, time, input_size)``, input checked."""
        check_input(x, self.input_size)
        if lengths is not None:
            lengths = check_lengths(lengths, x)
        return self.encode(x, lengths)

    def encode(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """:meth:`forward` without the input checks, for a model that has run them itself.

        Padded batches run densely: in one direction a step's output never depends on the
        padding after it, so the recurrent layers run over the whole padded batch and the
        readout gathers and masks by ``lengths``. The backward direction of a bidirectional
        encoder reads each sequence reversed within its own length, layer by layer.
        Nothing here branches on the values of ``lengths`` (no host sync; traced and
        exported programs stay correct for any lengths).

        Args:
            x: ``(batch, time, input_size)`` floating-point input.
            lengths: ``(batch,)`` int64 on ``x``'s device, each in ``[1, time]``; or None.
        """
        if lengths is None:
            out, _ = self.rnn(x)  # (B, T, D*H)
            return self._readout_full(out)
        # padding may hold anything (NaN, as the UCR archive pads): the results ignore it, but
        # backpropagating through the recurrence over NaN steps would give NaN gradients (0 * NaN)
        x = x.masked_fill(~(_positions(x) < lengths[:, None]).unsqueeze(-1), 0.0)  # (B, T, F)
        out = self._run_padded(x, lengths)  # (B, T, D*H), junk after each length
        return self._readout_padded(out, lengths)

    def _run_padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not self.bidirectional:
            out: Tensor = self.rnn(x)[0]  # causal: outputs before each length never see the padding
            return out  # (B, T, H)
        reverse = _reverse_within_lengths(lengths, x.shape[1])  # (B, T)
        layer_input = x
        for layer in range(self.num_layers):
            if layer > 0:
                layer_input = nn.functional.dropout(layer_input, self.dropout, self.training)
            forward = self._run_direction(layer_input, layer, "")  # (B, T, H)
            backward = self._run_direction(_gather_time(layer_input, reverse), layer, "_reverse")  # reversed time
            layer_input = torch.cat([forward, _gather_time(backward, reverse)], dim=2)  # (B, T, 2H)
        return layer_input

    def _layer_weights(self, layer: int, suffix: str) -> list[Tensor]:
        """``weight_ih, weight_hh, bias_ih, bias_hh`` of one layer and direction (``suffix`` "" or "_reverse")."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self.rnn, f"{name}_l{layer}{suffix}") for name in names]

    def _run_direction(self, x: Tensor, layer: int, suffix: str) -> Tensor:
        """One direction of one layer of ``self.rnn``, run forwards over ``x`` ``(B, T, F)``."""
        params = self._layer_weights(layer, suffix)
        h0 = x.new_zeros((1, x.shape[0], self.hidden_size))  # (1, B, H)
        # arguments: input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
        if self.cell == "lstm":
            out: Tensor = torch.lstm(x, (h0, h0), params, True, 1, 0.0, self.training, False, True)[0]
        elif self.cell == "gru":
            out = torch.gru(x, h0, params, True, 1, 0.0, self.training, False, True)[0]
        else:
            out = torch.rnn_tanh(x, h0, params, True, 1, 0.0, self.training, False, True)[0]
        return out  # (B, T, H)

    def _readout_padded(self, out: Tensor, lengths: Tensor) -> Tensor:
        if self.readout == "last":
            index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])  # (B, 1, D*H)
            last = out.gather(1, index).squeeze(1)  # (B, D*H)
            if self.bidirectional:
                hidden = self.hidden_size
                # the backward direction has read the whole sequence when it reaches t=0
                return torch.cat([last[:, :hidden], out[:, 0, hidden:]], dim=1)  # (B, 2H)
            return last
        if self.readout == "mean":
            return mean_over_steps(out, lengths)  # (B, D*H)
        valid = (_positions(out) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B, D*H)

    def _readout_full(self, out: Tensor) -> Tensor:
        if self.readout == "mean":
            return out.mean(dim=1)  # (B, D*H)
        if self.readout == "max":
            return out.amax(dim=1)  # (B, D*H)
        hidden = self.hidden_size
        if self.bidirectional:
            # forward direction ends at T-1, backward direction ends at t=0
            return torch.cat([out[:, -1, :hidden], out[:, 0, hidden:]], dim=1)  # (B, 2H)
        return out[:, -1]  # (B, H)

    # ------------------------------------------------------------ streaming
    def initial_state(self, batch_size: int) -> StreamState:
        """The state before the first :meth:`step`, for ``batch_size`` streams.

        Raises:
            ValueError: the encoder is bidirectional (its backward direction starts at the
                end of each sequence, which a stream has not reached).
        """
        self._require_one_direction()
        positive_int("batch_size", batch_size)
        weight = self._layer_weights(0, "")[1]  # (H', H)
        shape = (self.num_layers, batch_size, self.hidden_size)  # (L, B, H)
        zeros = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        summary: Tensor | None = None
        if self.readout == "mean":
            summary = zeros.new_zeros((batch_size, self.hidden_size))  # (B, H)
        elif self.readout == "max":
            summary = zeros.new_full((batch_size, self.hidden_size), float("-inf"))  # (B, H)
        return StreamState(zeros, zeros.clone() if self.cell == "lstm" else None, 0, summary)

    def step(self, x_t: Tensor, state: StreamState, *, grad: bool = False) -> tuple[Tensor, StreamState]:
        """Read one time step ``x_t`` ``(batch, input_size)``: the encoding so far and the new state.

        After ``t + 1`` steps the encoding equals ``encoder(x[:, : t + 1])`` (in eval mode).

        Args:
            x_t: ``(batch, input_size)`` floating-point input of one step.
            state: from :meth:`initial_state` or the previous step.
            grad: record autograd history through the steps (for training through a
                stream; the state then holds every step's graph and memory grows with
                each step). By default the step runs without it, in flat memory.
        """
        self._require_one_direction()
        self.check_step(x_t, state)
        with grad_mode(grad):
            return self._step(x_t, state)

    def check_step(self, x_t: Tensor, state: StreamState) -> None:
        """Raise unless ``x_t`` ``(batch, input_size)`` and ``state`` fit this encoder and each other."""
        if not isinstance(state, StreamState):
            raise TypeError(f"state must be a StreamState from initial_state(); got {type(state).__name__}")
        if not isinstance(x_t, Tensor):
            raise TypeError(f"x_t must be a torch.Tensor; got {type(x_t).__name__}")
        batch = state.hidden.shape[1]
        if x_t.shape != (batch, self.input_size):
            raise ValueError(
                f"x_t must have shape (batch, input_size) = ({batch}, {self.input_size}) "
                f"(the state's batch size); got {tuple(x_t.shape)}"
            )
        if not x_t.is_floating_point():
            raise TypeError(f"x_t must be a floating-point tensor; got dtype {x_t.dtype}")

    def _step(self, x_t: Tensor, state: StreamState) -> tuple[Tensor, StreamState]:
        out, hidden, cell = self._step_layers(x_t, state)  # out (B, H)
        steps = state.steps + 1
        summary = state.summary
        if self.readout == "mean":
            assert summary is not None
            summary = summary + out
            features = summary / steps  # (B, H)
        elif self.readout == "max":
            assert summary is not None
            summary = torch.maximum(summary, out)
            features = summary  # (B, H)
        else:
            features = out  # (B, H)
        return features, StreamState(hidden, cell, steps, summary)

    def _step_layers(self, x_t: Tensor, state: StreamState) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step through every layer with the cell kernels (far less overhead than ``self.rnn`` per step)."""
        layer_input = x_t  # (B, F)
        hiddens, cells = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                layer_input = nn.functional.dropout(layer_input, self.dropout, self.training)
            weights = self._layer_weights(layer, "")
            if state.cell is not None:
                h, c = torch.lstm_cell(layer_input, (state.hidden[layer], state.cell[layer]), *weights)
                cells.append(c)
            elif self.cell == "gru":
                h = torch.gru_cell(layer_input, state.hidden[layer], *weights)
            else:
                h = torch.rnn_tanh_cell(layer_input, state.hidden[layer], *weights)
            hiddens.append(h)
            layer_input = h  # (B, H)
        return layer_input, torch.stack(hiddens), torch.stack(cells) if cells else None

    def _require_one_direction(self) -> None:
        if self.bidirectional:
            raise ValueError(
                "streaming needs a one-direction model: a bidirectional model reads each sequence backwards "
                "from its end, which a stream has not reached; got bidirectional=True"
            )

    def extra_repr(self) -> str:
        return (
            f"cell={self.cell!r}, readout={self.readout!r}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}, num_layers={self.num_layers}, bidirectional={self.bidirectional}"
        )


# ------------------------------------------------------------ input checks
def check_input(x: Tensor, input_size: int) -> None:
    """Raise unless ``x`` is a floating-point tensor ``(batch, time >= 1, input_size)``.

    While ``torch.jit.trace`` records, only the type is checked: the sizes are traced
    values there, and comparing them would bake the example's sizes into the trace.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if _jit_tracing():
        return
    if x.dim() != 3 or x.shape[-1] != input_size:
        raise ValueError(f"x must have shape (batch, time, {input_size}); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor; got dtype {x.dtype}")
    if x.shape[1] == 0:
        raise ValueError(f"x must have at least one time step; got shape {tuple(x.shape)}")


def check_lengths(lengths: Tensor, x: Tensor) -> Tensor:
    """``lengths`` as int64 on ``x``'s device, its type, shape and values checked.

    The values are checked eagerly on the CPU (with the values found), and without a
    host sync elsewhere (an asynchronous device assert); traced, compiled and exported
    programs skip the value check (the trainer checks a whole dataset once).
    """
    if not isinstance(lengths, Tensor):
        raise TypeError(f"lengths must be a torch.Tensor or None; got {type(lengths).__name__}")
    if not _jit_tracing() and lengths.shape != (x.shape[0],):
        raise ValueError(f"lengths must have shape (batch,) = ({x.shape[0]},); got {tuple(lengths.shape)}")
    # dtype attributes, not Tensor.is_complex(): torch 2.2's dynamo cannot trace that call
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor; got dtype {lengths.dtype}")
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    if _tracing() or x.shape[0] == 0:
        return lengths
    time_steps = x.shape[1]
    if lengths.device.type == "cpu":
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > time_steps:
            raise ValueError(
                f"lengths must lie in [1, {time_steps}] (the time dimension of x); got values from {low} to {high}"
            )
    else:
        valid = ((lengths >= 1) & (lengths <= time_steps)).all()
        torch._assert_async(valid, f"lengths must lie in [1, {time_steps}] (the time dimension of x)")
    return lengths


@contextlib.contextmanager
def grad_mode(grad: bool) -> Iterator[None]:
    """Autograd off, unless ``grad`` asks for it (and the caller has not turned it off)."""
    boolean("grad", grad)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        yield


def _jit_tracing() -> bool:
    """True while torch.jit.trace (or the TorchScript-based ONNX exporter) records the model."""
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined,no-untyped-call]


def _tracing() -> bool:
    """True while torch.jit, torch.compile, torch.export or the ONNX exporter records the model."""
    return bool(
        _jit_tracing()
        or _is_compiling()
        or _is_exporting()
        or torch.onnx.is_in_onnx_export()
    )


# torch.compiler.is_compiling and is_exporting arrived in torch 2.3; torch 2.2's torch.export
# traces through dynamo, which torch._dynamo.is_compiling reports
_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling
_is_exporting: Callable[[], bool] = getattr(torch.compiler, "is_exporting", None) or (lambda: False)


def mean_over_steps(x: Tensor, lengths: Tensor | None) -> Tensor:
    """The mean ``(batch, features)`` of ``x`` ``(batch, time, features)`` over each sequence's valid steps.

    ``lengths``: ``(batch,)`` int64 on ``x``'s device, each in ``[1, time]``; None: every
    step is valid. The padding is masked, so whatever it holds is never read.
    """
    if lengths is None:
        return x.mean(dim=1)
    valid = (_positions(x) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    return x.masked_fill(~valid, 0.0).sum(dim=1) / lengths[:, None].to(x.dtype)


def _positions(x: Tensor) -> Tensor:
    """Time indices ``0..T-1`` of ``x`` ``(B, T, ...)``, as a ``(1, T)`` tensor."""
    return torch.arange(x.shape[1], device=x.device)[None, :]  # (1, T)


def _reverse_within_lengths(lengths: Tensor, time_steps: int) -> Tensor:
    """Index ``(B, T)`` that reverses each sequence within its length and keeps the padding after it.

    It is its own inverse, so the same gather also puts reversed outputs back in order.
    """
    t = torch.arange(time_steps, device=lengths.device)[None, :]  # (1, T)
    n = lengths[:, None]  # (B, 1)
    return torch.where(t < n, n - 1 - t, t)  # (B, T)


def _gather_time(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, t]]`` for ``x`` ``(B, T, F)`` and ``index`` ``(B, T)``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # (B, T, F)
