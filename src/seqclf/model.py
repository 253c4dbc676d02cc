"""The recurrent sequence classifier: a recurrent encoder, a readout and a linear head."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .normalization import Standardize

Cell = Literal["lstm", "gru", "rnn"]
Readout = Literal["last", "mean", "max"]

_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


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
            _check_positive_int(name, getattr(self, name))
        if self.cell not in get_args(Cell):
            raise ValueError(f"cell must be one of {get_args(Cell)}; got {self.cell!r}")
        if self.readout not in get_args(Readout):
            raise ValueError(f"readout must be one of {get_args(Readout)}; got {self.readout!r}")
        if not isinstance(self.bidirectional, bool):
            raise TypeError(f"bidirectional must be a bool; got {self.bidirectional!r}")
        if not isinstance(self.normalize, bool):
            raise TypeError(f"normalize must be a bool; got {self.normalize!r}")
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not 0.0 <= self.dropout < 1.0
        ):
            raise ValueError(f"dropout must be a float in [0, 1); got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config has unknown fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)


class SequenceClassifier(nn.Module):
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
        :func:`seqclf.checkpoint.load_checkpoint`), so a file crafted to run code is refused.

        Example:
            >>> model = SequenceClassifier.from_checkpoint("runs/lstm/step-00001875.pt")  # doctest: +SKIP
        """
        from .checkpoint import load_checkpoint, load_model_state, stored_model_config  # it imports this module

        checkpoint = load_checkpoint(path)
        model = cls.from_config(stored_model_config(checkpoint))
        load_model_state(model, checkpoint)
        return model.eval()

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
        """The sequence encoding ``(batch, num_features)`` chosen by ``readout``."""
        self._check_input(x)
        lengths_cpu = None if lengths is None else self._check_lengths(lengths, x)
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, F), padded steps kept at 0
        if lengths_cpu is not None and bool((lengths_cpu == x.shape[1]).all()):
            lengths_cpu = None  # nothing is padded: the dense kernel is faster and equal
        if lengths_cpu is None:
            out, _ = self.rnn(x)  # (B, T, D*H)
            return self._readout_dense(out)
        packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        packed_out, state = self.rnn(packed)
        if self.config.readout == "last":
            h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H), batch order restored
            directions = 2 if self.config.bidirectional else 1
            last_layer: Tensor = h_n[-directions:]  # (D, B, H): forward at its last valid step, backward at t=0
            return last_layer.transpose(0, 1).reshape(x.shape[0], self.num_features)  # (B, D*H)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])  # (B, T, D*H)
        valid = torch.arange(x.shape[1], device=x.device) < lengths_cpu.to(x.device)[:, None]  # (B, T)
        valid = valid.unsqueeze(-1)  # (B, T, 1)
        if self.config.readout == "mean":
            total = out.masked_fill(~valid, 0.0).sum(dim=1)  # (B, D*H)
            return total / lengths_cpu.to(device=x.device, dtype=out.dtype)[:, None]
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B, D*H)

    def _readout_dense(self, out: Tensor) -> Tensor:
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
        if not isinstance(lengths, Tensor):
            raise TypeError(f"lengths must be a torch.Tensor or None; got {type(lengths).__name__}")
        if lengths.shape != (x.shape[0],):
            raise ValueError(
                f"lengths must have shape (batch,) = ({x.shape[0]},); got {tuple(lengths.shape)}"
            )
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must be an integer tensor; got dtype {lengths.dtype}")
        lengths_cpu = lengths.to("cpu", torch.int64)
        if x.shape[0] > 0:
            low, high = int(lengths_cpu.min()), int(lengths_cpu.max())
            if low < 1 or high > x.shape[1]:
                raise ValueError(
                    f"lengths must lie in [1, {x.shape[1]}] (the time dimension of x); "
                    f"got values from {low} to {high}"
                )
        return lengths_cpu

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"cell={c.cell!r}, readout={c.readout!r}, input_size={c.input_size}, "
            f"hidden_size={c.hidden_size}, num_layers={c.num_layers}, "
            f"bidirectional={c.bidirectional}, num_classes={c.num_classes}"
            + (", normalize=True" if c.normalize else "")
        )
