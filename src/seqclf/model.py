"""The recurrent sequence classifier: a recurrent encoder, a readout and a linear head."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, get_args

from torch import Tensor, nn

from ._checks import boolean, config_from_dict, fraction, one_of, positive_int
from ._model_record import rebuild_model, rename_legacy_weights
from .encoders import Cell, Readout, RecurrentEncoder, StreamState, check_input, check_lengths, grad_mode
from .normalization import Standardize
from .registry import register_model
from .serialization import SerializableModel

__all__ = ["ModelConfig", "SequenceClassifier", "StreamState"]


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


@register_model("rnn", hidden_size=64, cell="rnn")
@register_model("gru", hidden_size=64, cell="gru")
@register_model("lstm", hidden_size=64)
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
    legacy_weight_names: ClassVar[dict[str, str]] = {"rnn.": "encoder.rnn."}

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
        self.encoder = RecurrentEncoder(input_size, hidden_size, num_layers, cell, bidirectional, dropout, readout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)
        # files written before the encoder existed name its weights "rnn.*"
        self._register_load_state_dict_pre_hook(_rename_legacy_weights)  # type: ignore[no-untyped-call]

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

        Example:
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

        See :meth:`seqclf.encoders.RecurrentEncoder.encode` for how padded batches run.
        """
        check_input(x, self.config.input_size)
        if lengths is not None:
            lengths = check_lengths(lengths, x)  # int64 on x.device
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, F), padded steps kept at 0
        return self.encoder.encode(x, lengths)  # (B, D*H)

    @property
    def rnn(self) -> nn.LSTM | nn.GRU | nn.RNN:
        """Deprecated: the recurrent layers, now ``model.encoder.rnn``."""
        warnings.warn(
            "SequenceClassifier.rnn is deprecated; use model.encoder.rnn", DeprecationWarning, stacklevel=2
        )
        return self.encoder.rnn

    # ------------------------------------------------------------ streaming
    def initial_state(self, batch_size: int) -> StreamState:
        """The state before the first step of :meth:`step`, for ``batch_size`` streams.

        Raises:
            ValueError: the model is bidirectional (its backward direction starts at the
                end of each sequence, which a stream has not reached).
        """
        return self.encoder.initial_state(batch_size)

    def step(self, x_t: Tensor, state: StreamState, *, grad: bool = False) -> tuple[Tensor, StreamState]:
        """Read one time step ``x_t`` ``(batch, input_size)``; return the logits so far and the new state.

        After ``t + 1`` steps the logits equal ``model(x[:, : t + 1])`` (in eval mode). The
        step records no autograd history unless ``grad=True``, so a stream of any length
        runs in flat memory without ``torch.no_grad()``.

        Args:
            x_t: ``(batch, input_size)`` floating-point input of one step.
            state: from :meth:`initial_state` or the previous step.
            grad: record autograd history through the steps, to train through a stream
                (the state then holds every step's graph: memory grows with each step).

        Example:
            >>> model = SequenceClassifier(3, 8, 2).eval()
            >>> state = model.initial_state(batch_size=1)
            >>> for x_t in torch.randn(5, 1, 3):
            ...     logits, state = model.step(x_t, state)
            >>> logits.shape
            torch.Size([1, 2])
        """
        self.encoder.check_step(x_t, state)
        with grad_mode(grad):
            if self.normalize is not None:
                x_t = self.normalize(x_t[:, None])[:, 0]  # (B, F)
            features, state = self.encoder.step(x_t, state, grad=grad)  # (B, H)
            return self.forward_head(features), state

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"cell={c.cell!r}, readout={c.readout!r}, input_size={c.input_size}, "
            f"hidden_size={c.hidden_size}, num_layers={c.num_layers}, "
            f"bidirectional={c.bidirectional}, num_classes={c.num_classes}"
            + (", normalize=True" if c.normalize else "")
        )



def _rename_legacy_weights(
    state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool, *args: Any
) -> None:
    """``load_state_dict`` pre-hook: older weight names of a :class:`SequenceClassifier` at ``prefix``, renamed."""
    renamed = rename_legacy_weights(SequenceClassifier.legacy_weight_names, state_dict, prefix)
    state_dict.clear()
    state_dict.update(renamed)
