"""The recurrent sequence classifier: a recurrent encoder, a readout and a linear head."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, get_args

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import boolean, config_from_dict, fraction, one_of, positive_int
from ._model_record import rebuild_model, rename_legacy_weights
from .embedding import TokenEmbedding, check_ids
from .encoders import (
    Cell,
    Readout,
    RecurrentEncoder,
    StreamState,
    check_input,
    check_lengths,
    grad_mode,
    mean_over_steps,
)
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
    vocab_size: int | None = None
    freeze_embedding: bool = False
    bag: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_classes", "num_layers"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))  # numpy ints stored as int
        if self.vocab_size is not None:
            object.__setattr__(self, "vocab_size", positive_int("vocab_size", self.vocab_size))
            if self.normalize:
                raise ValueError(
                    "normalize must be False for a model that embeds token ids (vocab_size set): ids are not "
                    f"measurements to standardise; got normalize=True with vocab_size={self.vocab_size}"
                )
        boolean("freeze_embedding", self.freeze_embedding)
        boolean("bag", self.bag)
        if self.bag and self.vocab_size is None:
            raise ValueError("bag=True needs vocab_size (a model that embeds token ids); got vocab_size=None")
        if self.freeze_embedding and self.vocab_size is None:
            raise ValueError(
                "freeze_embedding=True needs vocab_size (a model that embeds token ids); got vocab_size=None"
            )
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


@register_model("text_lstm", hidden_size=64, vocab_size=30_000)
@register_model("rnn", hidden_size=64, cell="rnn")
@register_model("gru", hidden_size=64, cell="gru")
@register_model("lstm", hidden_size=64)
class SequenceClassifier(nn.Module, SerializableModel):
    """Classify sequences with a recurrent network; returns logits.

    ``forward(x, lengths=None)`` takes ``x`` of shape ``(batch, time, input_size)`` and
    optional ``lengths`` of shape ``(batch,)``: the number of valid steps of each padded
    sequence. Padding never changes a result: a padded batch gives the same logits as
    each sequence run alone.

    With ``vocab_size``, the model reads text: ``x`` is ``(batch, time)`` integer token
    ids in ``[0, vocab_size)``, embedded into ``input_size``-dimensional vectors
    (:class:`~seqclf.embedding.TokenEmbedding`, as ``model.embedding``) before the
    recurrent layers; ids in the padding are never read. :meth:`from_embedding` starts
    from vectors the user has (e.g. GloVe).

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
        vocab_size: read token ids in ``[0, vocab_size)`` and embed them (``input_size``
            is then the embedding's size); None: read float features.
        freeze_embedding: keep the embedding fixed in training (with ``vocab_size``).
        bag: also read the text as a bag of words (with ``vocab_size``): the mean of its
            token vectors over the valid steps, as fastText does, joined to the recurrent
            readout before the head. The head then sees which words occur as directly as
            their order.

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
        vocab_size: int | None = None,
        freeze_embedding: bool = False,
        bag: bool = False,
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
            vocab_size=vocab_size,
            freeze_embedding=freeze_embedding,
            bag=bag,
        )
        self.embedding: TokenEmbedding | None = None
        if self.config.vocab_size is not None:
            self.embedding = TokenEmbedding(self.config.vocab_size, input_size, freeze=freeze_embedding)
        # None when off: a model without normalisation has no statistics in its state_dict
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

        Examples:
            >>> model = SequenceClassifier.from_checkpoint("runs/lstm/step-00001875.pt")  # doctest: +SKIP
        """
        return rebuild_model(cls, ModelConfig, path)

    @classmethod
    def from_embedding(
        cls,
        vectors: Tensor | np.ndarray,
        hidden_size: int,
        num_classes: int,
        *,
        freeze: bool = False,
        **options: Any,
    ) -> SequenceClassifier:
        """A model that embeds token ids with the given ``vectors`` ``(vocab_size, embedding_dim)``.

        Row ``i`` of ``vectors`` is the vector of token id ``i`` (e.g. GloVe vectors laid
        out in a vocabulary's id order); ``vocab_size`` and ``input_size`` are its two sizes.

        Args:
            vectors: the initial embedding, copied (not shared).
            hidden_size: hidden units per direction.
            num_classes: number of output logits.
            freeze: keep the vectors fixed in training; False: train them with the rest.
            **options: any other constructor argument (``cell``, ``readout``...).

        Examples:
            >>> vectors = torch.randn(1000, 50)  # e.g. GloVe rows in id order
            >>> model = SequenceClassifier.from_embedding(vectors, hidden_size=32, num_classes=2, freeze=True)
            >>> model(torch.tensor([[4, 8, 15]])).shape
            torch.Size([1, 2])
        """
        if not isinstance(vectors, (Tensor, np.ndarray)) or vectors.ndim != 2:
            got = f"shape {tuple(vectors.shape)}" if hasattr(vectors, "shape") else type(vectors).__name__
            raise ValueError(f"vectors must be a 2-D (vocab_size, embedding_dim) tensor or array; got {got}")
        model = cls(
            input_size=int(vectors.shape[1]),
            hidden_size=hidden_size,
            num_classes=num_classes,
            vocab_size=int(vectors.shape[0]),
            freeze_embedding=freeze,
            **options,
        )
        assert model.embedding is not None
        model.embedding.load_vectors(vectors)
        return model

    @property
    def num_features(self) -> int:
        """Size of the sequence encoding returned by :meth:`forward_features`."""
        c = self.config
        return c.hidden_size * (2 if c.bidirectional else 1) + (c.input_size if c.bag else 0)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits ``(batch, num_classes)`` for ``x`` ``(batch, time, input_size)`` (token ids ``(batch, time)``
        with ``vocab_size``)."""
        return self.forward_head(self.forward_features(x, lengths))

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` from an encoding ``(batch, num_features)``."""
        logits: Tensor = self.head(self.dropout(features))  # (B, C)
        return logits

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The sequence encoding ``(batch, num_features)`` chosen by ``readout``.

        See :meth:`seqclf.encoders.RecurrentEncoder.encode` for how padded batches run.
        """
        if self.embedding is not None:
            check_ids(x, self.embedding.vocab_size, lengths)
            if lengths is not None:
                lengths = check_lengths(lengths, x)  # int64 on x.device
            vectors = self.embedding.embed(x, lengths)  # (B, T, E)
            encoding = self.encoder.encode(vectors, lengths)  # (B, D*H)
            if not self.config.bag:
                return encoding
            return torch.cat([encoding, mean_over_steps(vectors, lengths)], dim=1)  # (B, D*H + E)
        _refuse_ids(x)
        check_input(x, self.config.input_size)
        if lengths is not None:
            lengths = check_lengths(lengths, x)  # int64 on x.device
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, F), padded steps kept at 0
        return self.encoder.encode(x, lengths)  # (B, D*H)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[no-untyped-call]
        if "embedding" not in self._modules and "embedding" not in self.__dict__:  # pickled before token models
            self.embedding = None
        if "encoder" not in self._modules and "rnn" in self._modules:  # pickled before the encoder existed
            rnn = self._modules["rnn"]
            assert isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN))
            encoder = RecurrentEncoder.from_rnn(rnn, self.config.readout)
            # the encoder takes the place of the recurrent layers: parameters keep their order
            self._modules = {("encoder" if k == "rnn" else k): (encoder if k == "rnn" else v)
                             for k, v in self._modules.items()}
            self._register_load_state_dict_pre_hook(_rename_legacy_weights)  # type: ignore[no-untyped-call]

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
        state = self.encoder.initial_state(batch_size)
        if self.config.bag:
            state = replace(state, bag=state.hidden.new_zeros((batch_size, self.config.input_size)))  # (B, E)
        return state

    def step(self, x_t: Tensor, state: StreamState, *, grad: bool = False) -> tuple[Tensor, StreamState]:
        """Read one time step ``x_t`` ``(batch, input_size)``; return the logits so far and the new state.

        After ``t + 1`` steps the logits equal ``model(x[:, : t + 1])`` (in eval mode). The
        step records no autograd history unless ``grad=True``, so a stream of any length
        runs in flat memory without ``torch.no_grad()``.

        Args:
            x_t: ``(batch, input_size)`` floating-point input of one step; ``(batch,)``
                token ids with ``vocab_size``.
            state: from :meth:`initial_state` or the previous step.
            grad: record autograd history through the steps, to train through a stream
                (the state then holds every step's graph: memory grows with each step).

        Examples:
            >>> model = SequenceClassifier(3, 8, 2).eval()
            >>> state = model.initial_state(batch_size=1)
            >>> for x_t in torch.randn(5, 1, 3):
            ...     logits, state = model.step(x_t, state)
            >>> logits.shape
            torch.Size([1, 2])
        """
        if self.embedding is not None:
            if not isinstance(state, StreamState):
                raise TypeError(f"state must be a StreamState from initial_state(); got {type(state).__name__}")
            batch = state.hidden.shape[1]
            if isinstance(x_t, Tensor) and x_t.shape != (batch,):
                raise ValueError(
                    f"x_t must be token ids of shape (batch,) = ({batch},) (the state's batch size); "
                    f"got {tuple(x_t.shape)}"
                )
            check_ids(x_t if not isinstance(x_t, Tensor) else x_t[:, None], self.embedding.vocab_size, name="x_t")
            if self.config.bag and (state.bag is None or state.bag.shape != (batch, self.config.input_size)):
                raise ValueError(
                    "state must come from this model's initial_state() (it carries the bag of words' running sum); "
                    f"got bag={None if state.bag is None else tuple(state.bag.shape)}"
                )
            with grad_mode(grad):
                x_t = self.embedding.embed(x_t[:, None], None)[:, 0]  # (B, E)
        self.encoder.check_step(x_t, state)
        with grad_mode(grad):
            if self.normalize is not None:
                x_t = self.normalize(x_t[:, None])[:, 0]  # (B, F)
            features, new_state = self.encoder.step(x_t, state, grad=grad)  # (B, H)
            if self.config.bag:
                assert state.bag is not None  # checked above with the ids
                bag = state.bag + x_t  # (B, E)
                new_state = replace(new_state, bag=bag)
                features = torch.cat([features, bag / new_state.steps], dim=1)  # (B, H + E)
            return self.forward_head(features), new_state

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"cell={c.cell!r}, readout={c.readout!r}, input_size={c.input_size}, "
            f"hidden_size={c.hidden_size}, num_layers={c.num_layers}, "
            f"bidirectional={c.bidirectional}, num_classes={c.num_classes}"
            + (", normalize=True" if c.normalize else "")
            + (f", vocab_size={c.vocab_size}" if c.vocab_size is not None else "")
            + (", bag=True" if c.bag else "")
        )



def _refuse_ids(x: Tensor) -> None:
    """A float model given what look like token ids: say so (``x.float()`` would read ids as magnitudes)."""
    if isinstance(x, Tensor) and x.dim() == 2 and not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"x looks like token ids (integer, shape {tuple(x.shape)}); this model reads floating-point "
            "features (batch, time, input_size). Give ids to a model that embeds them: "
            "SequenceClassifier(..., vocab_size=V) (converting ids with x.float() would read them as magnitudes)"
        )


def _rename_legacy_weights(
    state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool, *args: Any
) -> None:
    """``load_state_dict`` pre-hook: older weight names of a :class:`SequenceClassifier` at ``prefix``, renamed."""
    renamed = rename_legacy_weights(SequenceClassifier.legacy_weight_names, state_dict, prefix)
    state_dict.clear()
    state_dict.update(renamed)
