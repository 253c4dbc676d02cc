"""LSTM-FCN: an LSTM branch beside a fully convolutional branch, padding-correct for any length.

The architecture follows Karim et al. (2017), "LSTM Fully Convolutional Networks for Time
Series Classification": three 1-D convolution blocks (convolution, normalisation, ReLU)
whose output is averaged over time, concatenated with an LSTM's encoding of the same
sequence, then a linear head. The LSTM branch is a :class:`~seqclf.encoders.RecurrentEncoder`,
the encoder :class:`~seqclf.SequenceClassifier` uses, so every improvement to it (and its
padding handling) is inherited here.

Padding never changes a result: before each convolution the padded steps are set to
zero, so every valid step sees exactly what it would see were its sequence alone (a
"same" convolution pads with zeros too); normalisation statistics and the average over
time count valid steps only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._checks import boolean, config_from_dict, fraction, one_of, positive_int
from ._convolutional import ConvolutionalClassifier
from ._model_record import rebuild_model
from .encoders import Readout, RecurrentEncoder, check_input, check_lengths
from .normalization import Standardize
from .registry import register_model
from .serialization import SerializableModel

Norm = Literal["batch", "layer"]
Layout = Literal["parallel", "serial"]

__all__ = ["LSTMFCN", "LSTMFCNConfig", "MaskedBatchNorm1d"]



@dataclass(frozen=True)
class LSTMFCNConfig:
    """Everything needed to rebuild an :class:`LSTMFCN` (stored in checkpoints).

    The defaults are the library's time-series model, chosen by measurement on UCR/UEA
    data (see the Benchmarks page of the documentation); only the two sizes have none.
    """

    input_size: int
    num_classes: int
    hidden_size: int = 32
    filters: tuple[int, ...] = (64, 128, 64)
    kernel_sizes: tuple[int, ...] = (8, 5, 3)
    norm: Norm = "batch"
    layout: Layout = "parallel"
    readout: Readout = "last"
    dropout: float = 0.2
    normalize: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "num_classes", "hidden_size"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))  # numpy ints stored as int
        for name in ("filters", "kernel_sizes"):
            value = getattr(self, name)
            if isinstance(value, list):  # from JSON
                object.__setattr__(self, name, tuple(value))
                value = getattr(self, name)
            if not isinstance(value, tuple) or not value:
                raise ValueError(f"{name} must be a non-empty tuple of positive ints; got {value!r}")
            for i, item in enumerate(value):
                positive_int(f"{name}[{i}]", item)
        if len(self.filters) != len(self.kernel_sizes):
            raise ValueError(
                f"filters and kernel_sizes must have the same length (one per block); "
                f"got {len(self.filters)} and {len(self.kernel_sizes)}"
            )
        one_of("norm", self.norm, get_args(Norm))
        one_of("layout", self.layout, get_args(Layout))
        one_of("readout", self.readout, get_args(Readout))
        boolean("normalize", self.normalize)
        fraction("dropout", self.dropout)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON- and ``weights_only``-safe; tuples become lists)."""
        data = asdict(self)
        data["filters"], data["kernel_sizes"] = list(self.filters), list(self.kernel_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMFCNConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        return config_from_dict(cls, data)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over ``(batch, channels, time)`` whose statistics count valid steps only.

    With ``mask=None`` it is :class:`torch.nn.BatchNorm1d`. With a mask, batch statistics
    (and so the running averages) are the mean and variance over the valid steps, so the
    amount of padding, and what it holds, changes nothing. Batch statistics are used in
    training, and in eval too with ``track_running_stats=False`` (as in torch); otherwise
    eval uses the running statistics and every step is normalised alone. ``momentum=None``
    keeps a cumulative average, as in torch.

    A training batch with a single value per channel (one sequence of one valid step)
    says nothing about the variance: it is normalised with the running statistics, which
    it leaves unchanged (torch's own batch norm refuses such a batch). Without running
    statistics its batch statistics are used.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Normalise ``x`` ``(B, C, T)``; ``mask`` ``(B, 1, T)`` is True on valid steps."""
        batch_statistics = self.training or self.running_mean is None  # torch's rule
        if not batch_statistics or x.dim() != 3:
            return super().forward(x)
        if mask is None:
            if x.shape[0] * x.shape[2] > 1:
                return super().forward(x)
            mask = torch.ones_like(x[:, :1], dtype=torch.bool)  # (B, 1, T): one value per channel
        return self._masked(x, mask)

    def _masked(self, x: Tensor, mask: Tensor) -> Tensor:
        weights = mask.to(x.dtype)  # (B, 1, T)
        count = weights.sum()
        mean = (x * weights).sum(dim=(0, 2)) / count.clamp(min=1)  # (C,)
        centred = (x - mean[None, :, None]) * weights  # (B, C, T), zero on padding
        var = centred.pow(2).sum(dim=(0, 2)) / count.clamp(min=1)  # (C,) biased, as BatchNorm normalises with
        if self.training and self.running_mean is not None and self.running_var is not None:
            assert self.num_batches_tracked is not None
            informative = count > 1  # no branch on it: no host sync
            with torch.no_grad():
                self.num_batches_tracked.add_(informative.to(self.num_batches_tracked.dtype))
                if self.momentum is None:  # cumulative average over the batches seen
                    factor = informative / self.num_batches_tracked.clamp(min=1)
                else:
                    factor = informative * self.momentum
                factor = factor.to(self.running_mean.dtype)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
            mean = torch.where(informative, mean, self.running_mean.to(x.dtype))  # (C,)
            var = torch.where(informative, var, self.running_var.to(x.dtype))  # (C,)
        out = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)  # (B, C, T)
        if self.affine:
            out = out * self.weight[None, :, None] + self.bias[None, :, None]
        return out


class _ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over the channels of each step of ``(B, C, T)``: per step, so padding-free."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T)


class _ConvBlock(nn.Module):
    """Zero the padding, convolve ("same" length), normalise, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: Norm) -> None:
        super().__init__()
        # "same" length, the extra zero of an even kernel on the right (as padding="same" does)
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, bias=False)
        self.norm: MaskedBatchNorm1d | _ChannelLayerNorm = (
            MaskedBatchNorm1d(out_channels) if norm == "batch" else _ChannelLayerNorm(out_channels)
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is not None:
            x = x.masked_fill(~mask, 0.0)  # (B, C_in, T): padding reads as the zeros of a lone sequence
        h = self.conv(F.pad(x, self.pad))  # (B, C_out, T)
        return F.relu(self.norm(h, mask))  # (B, C_out, T)


@register_model("lstm_fcn")
class LSTMFCN(ConvolutionalClassifier, nn.Module, SerializableModel):
    """LSTM-FCN time-series classifier; returns logits.

    ``forward(x, lengths=None)`` takes ``x`` of shape ``(batch, time, input_size)`` and
    optional ``lengths`` ``(batch,)``, the valid steps of each padded sequence, like
    :class:`~seqclf.SequenceClassifier`. Padding never changes a result.
    ``model.save(path)`` and ``LSTMFCN.load(path)`` write and read one safetensors file.

    Args:
        input_size: features (channels) per time step.
        num_classes: number of output logits.
        hidden_size: LSTM hidden units.
        filters: output channels of each convolution block.
        kernel_sizes: kernel size of each convolution block.
        norm: ``"batch"`` (batch norm whose statistics count valid steps only) or
            ``"layer"`` (layer norm over the channels of each step).
        layout: ``"parallel"`` (LSTM-FCN: the LSTM reads the input beside the convolutions)
            or ``"serial"`` (the LSTM reads the convolutions' output).
        readout: how the LSTM's hidden states become one vector (see ``SequenceClassifier``).
        dropout: dropout on the encoding before the head.
        normalize: standardise each input feature inside the model
            (:class:`~seqclf.normalization.Standardize`, as ``model.normalize``), with
            statistics that ``Trainer.fit`` fits on the training data and that are saved
            with the weights.

    Examples:
        >>> model = LSTMFCN(input_size=1, num_classes=3)
        >>> model(torch.zeros(4, 50, 1)).shape
        torch.Size([4, 3])
    """

    config_class: ClassVar[type[LSTMFCNConfig]] = LSTMFCNConfig
    config: LSTMFCNConfig

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_size: int = 32,
        filters: tuple[int, ...] = (64, 128, 64),
        kernel_sizes: tuple[int, ...] = (8, 5, 3),
        norm: Norm = "batch",
        layout: Layout = "parallel",
        readout: Readout = "last",
        dropout: float = 0.2,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.config = LSTMFCNConfig(
            input_size=input_size,
            num_classes=num_classes,
            hidden_size=hidden_size,
            filters=tuple(filters),
            kernel_sizes=tuple(kernel_sizes),
            norm=norm,
            layout=layout,
            readout=readout,
            dropout=float(dropout),
            normalize=normalize,
        )
        c = self.config
        self.normalize: Standardize | None = Standardize(c.input_size) if c.normalize else None
        channels = (c.input_size, *c.filters)
        self.blocks = nn.ModuleList(
            _ConvBlock(channels[i], channels[i + 1], k, c.norm) for i, k in enumerate(c.kernel_sizes)
        )
        lstm_input = c.input_size if c.layout == "parallel" else c.filters[-1]
        self.lstm = RecurrentEncoder(lstm_input, c.hidden_size, readout=c.readout)
        # The recurrent branch once held an unused 2-class head; drawing its initial weights
        # still keeps a seed's initial weights (and so every seeded result) as they were.
        nn.Linear(c.hidden_size, 2)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(self.num_features, c.num_classes)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[no-untyped-call]
        branch = self._modules.get("lstm")
        if branch is not None and not isinstance(branch, RecurrentEncoder):  # pickled when it was a classifier
            encoder = branch._modules.get("encoder")
            if not isinstance(encoder, RecurrentEncoder):
                rnn = branch._modules["rnn"]
                assert isinstance(rnn, nn.LSTM)
                encoder = RecurrentEncoder.from_rnn(rnn, self.config.readout)
            self._modules["lstm"] = encoder

    @classmethod
    def from_config(cls, config: LSTMFCNConfig) -> LSTMFCN:
        """A freshly initialised model built from ``config``."""
        return cls(**asdict(config))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> LSTMFCN:
        """A model rebuilt from a checkpoint's stored config and weights, in eval mode (read safely)."""
        return rebuild_model(cls, LSTMFCNConfig, path)

    @property
    def num_features(self) -> int:
        """Size of the encoding returned by :meth:`forward_features`."""
        if self.config.layout == "serial":
            return self.config.hidden_size
        return self.config.filters[-1] + self.config.hidden_size

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The encoding ``(batch, num_features)``: pooled convolutions beside the LSTM's."""
        check_input(x, self.config.input_size)
        if lengths is not None:  # nothing branches on its values: no host sync, traceable
            lengths = check_lengths(lengths, x)  # int64 on x.device
        mask, valid_steps = None, None
        if lengths is not None:
            valid_steps = lengths[:, None].to(x.dtype)  # (B, 1)
            mask = (torch.arange(x.shape[1], device=x.device) < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, F)
        h = x.transpose(1, 2)  # (B, F, T)
        for block in self.blocks:
            h = block(h, mask)  # (B, C_i, T)
        if self.config.layout == "serial":
            return self.lstm.encode(h.transpose(1, 2), lengths)  # (B, H); input checked above
        if mask is None or valid_steps is None:
            pooled = h.mean(dim=2)  # (B, C)
        else:
            pooled = h.masked_fill(~mask, 0.0).sum(dim=2) / valid_steps  # (B, C)
        encoded = self.lstm.encode(x, lengths)  # (B, H); input checked above
        return torch.cat([pooled, encoded], dim=1)  # (B, C + H)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"layout={c.layout!r}, norm={c.norm!r}, input_size={c.input_size}, filters={c.filters}, "
            f"kernel_sizes={c.kernel_sizes}, hidden_size={c.hidden_size}, num_classes={c.num_classes}"
            + (", normalize=True" if c.normalize else "")
        )
