"""The recurrent sequence classifier: a recurrent encoder, a readout and a linear head."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from ._checks import boolean, config_from_dict, fraction, one_of, positive_int
from ._model_record import rebuild_model
from .normalization import Standardize
from .serialization import SerializableModel

__all__ = ["ModelConfig", "SequenceClassifier", "StreamState"]

Cell = Literal["lstm", "gru", "rnn"]
Readout = Literal["last", "mean", "max"]

_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`SequenceClassifier` (stored in checkpoints).

    Defaults reproduce the tutorial's model except the three sizes, which have none.
    """

    input_size: int
    hidden_size: int
    num_classes: int
    num_layers: int = 1
    cell: Cell = "lstm"
    bidirectional: bool = False
    dropout: float = 0.0
    readout: Readout = "last"
    normalize: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_classes", "num_layers"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))  # numpy ints stored as int
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (one logit per class); got {self.num_classes}")
        one_of("cell", self.cell, get_args(Cell))
        one_of("readout", self.readout, get_args(Readout))
        boolean("bidirectional", self.bidirectional)
        boolean("normalize", self.normalize)
        fraction("dropout", self.dropout)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        return config_from_dict(cls, data)


@dataclass(frozen=True)
class StreamState:
    """What :meth:`SequenceClassifier.step` carries from one time step to the next.

    Attributes:
        hidden: ``(num_layers, batch, hidden_size)`` hidden state of each layer.
        cell: ``(num_layers, batch, hidden_size)`` LSTM cell state; None for GRU and RNN.
        steps: time steps read so far.
        summary: ``(batch, hidden_size)`` running sum (``readout="mean"``) or maximum
            (``readout="max"``) of the last layer's outputs; None for ``readout="last"``.
    """

    hidden: Tensor
    cell: Tensor | None
    steps: int
    summary: Tensor | None


class SequenceClassifier(nn.Module, SerializableModel):
    """Classify sequences with a recurrent network; returns logits.

    ``forward(x, lengths=None)`` takes ``x`` of shape ``(batch, time, input_size)`` and
    optional ``lengths`` of shape ``(batch,)``: the number of valid steps of each padded
    sequence. Padding never changes a result: a padded batch gives the same logits as
    each sequence run alone.

    The defaults (with ``input_size=28, hidden_size=64, num_classes=10``) are the classic
    MNIST tutorial's model: ``LSTM(28, 64)`` then ``Linear(64, 10)`` on the last step.

    Args:
        input_size: features per time step.
        hidden_size: hidden units per direction.
        num_classes: number of output logits.
        num_layers: stacked recurrent layers.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh).
        bidirectional: also read each sequence backwards.
        dropout: dropout between stacked layers and before the head.
        readout: how a sequence of hidden states becomes one vector: ``"last"`` (the
            last valid step; for a bidirectional model, the forward direction's last valid
            step and the backward direction's full pass), ``"mean"`` or ``"max"`` over
            valid steps.
        normalize: standardise each input feature inside the model
            (:class:`~seqclf.normalization.Standardize`, as ``model.normalize``), with
            statistics that ``Trainer.fit`` fits on the training data and that are saved
            with the weights, so prediction needs no separate preprocessing.

    Examples:
        >>> model = SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
        >>> model(torch.zeros(4, 28, 28)).shape
        torch.Size([4, 10])
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    config: ModelConfig

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        readout: Readout = "last",
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(
            input_size=input_size,
            hidden_size=hidden_size,
            num_classes=num_classes,
            num_layers=num_layers,
            cell=cell,
            bidirectional=bidirectional,
            dropout=float(dropout),
            readout=readout,
            normalize=normalize,
        )
        # None when off: the tutorial's model keeps exactly its state_dict
        self.normalize: Standardize | None = Standardize(input_size) if normalize else None
        self.rnn = _CELLS[cell](
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)

    @classmethod
    def from_config(cls, config: ModelConfig) -> SequenceClassifier:
        """A freshly initialised model built from ``config``."""
        return cls(**config.to_dict())

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> SequenceClassifier:
        """A model rebuilt from a checkpoint's stored config and weights, in eval mode.

        The file is read safely (``torch.load(weights_only=True)``; see
        :func:`seqclf.checkpoint.load_checkpoint`), so a file crafted to run code is refused;
        its checksum, class name, config and weight shapes are checked.

        Examples:
            >>> model = SequenceClassifier.from_checkpoint("runs/lstm/step-00001875.pt")  # doctest: +SKIP
        """
        return rebuild_model(cls, ModelConfig, path)

    @property
    def num_features(self) -> int:
        """Size of the sequence encoding returned by :meth:`forward_features`."""
        return self.config.hidden_size * (2 if self.config.bidirectional else 1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits ``(batch, num_classes)`` for ``x`` ``(batch, time, input_size)``."""
        return self.forward_head(self.forward_features(x, lengths))

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` from an encoding ``(batch, num_features)``."""
        logits: Tensor = self.head(self.dropout(features))  # (B, C)
        return logits

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The sequence encoding ``(batch, num_features)`` chosen by ``readout``.

        Padded batches run densely: in one direction a step's output never depends on the
        padding after it, so the recurrent layers run over the whole padded batch and the
        readout gathers and masks by ``lengths``. The backward direction of a bidirectional
        model reads each sequence reversed within its own length, layer by layer. Nothing
        here branches on the values of ``lengths`` (no host sync; traced and exported
        programs stay correct for any lengths).
        """
        self._check_input(x)
        if lengths is not None:
            lengths = self._check_lengths(lengths, x)
        return self._encode(x, lengths)

    def _encode(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """:meth:`forward_features` on input already checked (``lengths`` int64 on x's device)."""
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, F), padded steps kept at 0
        elif lengths is not None:
            # padding may hold anything (NaN, as the UCR archive pads): the results ignore it, but
            # backpropagating through the recurrence over NaN steps would give NaN gradients (0 * NaN)
            valid = _positions(x) < lengths[:, None]  # (B, T)
            x = x.masked_fill(~valid.unsqueeze(-1), 0.0)  # (B, T, F)
        if lengths is None:
            out, _ = self.rnn(x)  # (B, T, D*H)
            return self._readout_full(out)
        out = self._encode_padded(x, lengths)  # (B, T, D*H), junk after each length
        return self._readout_padded(out, lengths)

    def _encode_padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not self.config.bidirectional:
            out: Tensor = self.rnn(x)[0]  # causal: outputs before each length never see the padding
            return out  # (B, T, H)
        reverse = _reverse_within_lengths(lengths, x.shape[1])  # (B, T)
        layer_input = x
        for layer in range(self.config.num_layers):
            if layer > 0:
                layer_input = nn.functional.dropout(layer_input, self.config.dropout, self.training)
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
        h0 = x.new_zeros((1, x.shape[0], self.config.hidden_size))  # (1, B, H)
        # arguments: input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
        if self.config.cell == "lstm":
            out: Tensor = torch.lstm(x, (h0, h0), params, True, 1, 0.0, self.training, False, True)[0]
        elif self.config.cell == "gru":
            out = torch.gru(x, h0, params, True, 1, 0.0, self.training, False, True)[0]
        else:
            out = torch.rnn_tanh(x, h0, params, True, 1, 0.0, self.training, False, True)[0]
        return out  # (B, T, H)

    def _readout_padded(self, out: Tensor, lengths: Tensor) -> Tensor:
        if self.config.readout == "last":
            index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])  # (B, 1, D*H)
            last = out.gather(1, index).squeeze(1)  # (B, D*H)
            if self.config.bidirectional:
                hidden = self.config.hidden_size
                # the backward direction has read the whole sequence when it reaches t=0
                return torch.cat([last[:, :hidden], out[:, 0, hidden:]], dim=1)  # (B, 2H)
            return last
        valid = (_positions(out) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        if self.config.readout == "mean":
            total = out.masked_fill(~valid, 0.0).sum(dim=1)  # (B, D*H)
            return total / lengths[:, None].to(out.dtype)
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B, D*H)

    def _readout_full(self, out: Tensor) -> Tensor:
        if self.config.readout == "mean":
            return out.mean(dim=1)  # (B, D*H)
        if self.config.readout == "max":
            return out.amax(dim=1)  # (B, D*H)
        hidden = self.config.hidden_size
        if self.config.bidirectional:
            # forward direction ends at T-1, backward direction ends at t=0
            return torch.cat([out[:, -1, :hidden], out[:, 0, hidden:]], dim=1)  # (B, 2H)
        return out[:, -1]  # (B, H)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if _jit_tracing():
            return  # sizes are traced values here: comparing them would bake this example's sizes into the trace
        if x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(
                f"x must have shape (batch, time, {self.config.input_size}); got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor; got dtype {x.dtype}")
        if x.shape[1] == 0:
            raise ValueError(f"x must have at least one time step; got shape {tuple(x.shape)}")

    @staticmethod
    def _check_lengths(lengths: Tensor, x: Tensor) -> Tensor:
        """``lengths`` as int64 on ``x``'s device, its type and shape checked.

        The values are checked eagerly on the CPU (with the values found), and without a
        host sync elsewhere (an asynchronous device assert); traced, compiled and exported
        programs skip the value check (:func:`seqclf.data.as_source` checks a whole dataset
        once).
        """
        if not isinstance(lengths, Tensor):
            raise TypeError(f"lengths must be a torch.Tensor or None; got {type(lengths).__name__}")
        if not _jit_tracing() and lengths.shape != (x.shape[0],):
            raise ValueError(
                f"lengths must have shape (batch,) = ({x.shape[0]},); got {tuple(lengths.shape)}"
            )
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
                    f"lengths must lie in [1, {time_steps}] (the time dimension of x); "
                    f"got values from {low} to {high}"
                )
        else:
            valid = ((lengths >= 1) & (lengths <= time_steps)).all()
            torch._assert_async(valid, f"lengths must lie in [1, {time_steps}] (the time dimension of x)")
        return lengths

    # ------------------------------------------------------------ streaming
    def initial_state(self, batch_size: int) -> StreamState:
        """The state before the first step of :meth:`step`, for ``batch_size`` streams.

        Raises:
            ValueError: the model is bidirectional (its backward direction starts at the
                end of each sequence, which a stream has not reached).
        """
        self._require_one_direction()
        positive_int("batch_size", batch_size)
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)  # (L, B, H)
        zeros = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        summary: Tensor | None = None
        if self.config.readout == "mean":
            summary = zeros.new_zeros((batch_size, self.config.hidden_size))  # (B, H)
        elif self.config.readout == "max":
            summary = zeros.new_full((batch_size, self.config.hidden_size), float("-inf"))  # (B, H)
        return StreamState(zeros, zeros.clone() if self.config.cell == "lstm" else None, 0, summary)

    def step(self, x_t: Tensor, state: StreamState) -> tuple[Tensor, StreamState]:
        """Read one time step ``x_t`` ``(batch, input_size)``; return the logits so far and the new state.

        After ``t + 1`` steps the logits equal ``model(x[:, : t + 1])`` (in eval mode).

        Examples:
            >>> model = SequenceClassifier(3, 8, 2).eval()
            >>> state = model.initial_state(batch_size=1)
            >>> for x_t in torch.randn(5, 1, 3):
            ...     logits, state = model.step(x_t, state)
            >>> logits.shape
            torch.Size([1, 2])
        """
        self._require_one_direction()
        if not isinstance(state, StreamState):
            raise TypeError(f"state must be a StreamState from initial_state(); got {type(state).__name__}")
        batch = state.hidden.shape[1]
        if not isinstance(x_t, Tensor):
            raise TypeError(f"x_t must be a torch.Tensor; got {type(x_t).__name__}")
        if x_t.shape != (batch, self.config.input_size):
            raise ValueError(
                f"x_t must have shape (batch, input_size) = ({batch}, {self.config.input_size}) "
                f"(the state's batch size); got {tuple(x_t.shape)}"
            )
        if not x_t.is_floating_point():
            raise TypeError(f"x_t must be a floating-point tensor; got dtype {x_t.dtype}")
        if self.normalize is not None:
            x_t = self.normalize(x_t[:, None])[:, 0]  # (B, F)
        out, hidden, cell = self._step_layers(x_t, state)  # out (B, H)
        steps = state.steps + 1
        summary = state.summary
        if self.config.readout == "mean":
            assert summary is not None
            summary = summary + out
            features = summary / steps
        elif self.config.readout == "max":
            assert summary is not None
            summary = torch.maximum(summary, out)
            features = summary
        else:
            features = out
        return self.forward_head(features), StreamState(hidden, cell, steps, summary)

    def _step_layers(self, x_t: Tensor, state: StreamState) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step through every layer with the cell kernels (far less overhead than ``self.rnn`` per step)."""
        layer_input = x_t  # (B, F)
        hiddens, cells = [], []
        for layer in range(self.config.num_layers):
            if layer > 0:
                layer_input = nn.functional.dropout(layer_input, self.config.dropout, self.training)
            weights = self._layer_weights(layer, "")
            if state.cell is not None:
                h, c = torch.lstm_cell(layer_input, (state.hidden[layer], state.cell[layer]), *weights)
                cells.append(c)
            elif self.config.cell == "gru":
                h = torch.gru_cell(layer_input, state.hidden[layer], *weights)
            else:
                h = torch.rnn_tanh_cell(layer_input, state.hidden[layer], *weights)
            hiddens.append(h)
            layer_input = h  # (B, H)
        return layer_input, torch.stack(hiddens), torch.stack(cells) if cells else None

    def _require_one_direction(self) -> None:
        if self.config.bidirectional:
            raise ValueError(
                "streaming needs a one-direction model: a bidirectional model reads each sequence backwards "
                "from its end, which a stream has not reached; got bidirectional=True"
            )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"cell={c.cell!r}, readout={c.readout!r}, input_size={c.input_size}, "
            f"hidden_size={c.hidden_size}, num_layers={c.num_layers}, "
            f"bidirectional={c.bidirectional}, num_classes={c.num_classes}"
            + (", normalize=True" if c.normalize else "")
        )


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
