"""InceptionTime: a deep convolutional time-series classifier, padding-correct for any length.

The architecture follows Ismail Fawaz et al. (2020), "InceptionTime: Finding AlexNet for
Time Series Classification": a stack of Inception modules (a 1x1 bottleneck, then
convolutions of several kernel sizes side by side, beside a max-pool branch; the outputs
concatenated, batch-normalised and rectified) with a residual shortcut every three
modules, then global average pooling over time and a linear head.

Padding never changes a result, as in :class:`~seqclf.LSTMFCN`: before each convolution
the padded steps are set to zero (what a "same" convolution of a lone sequence reads
there), the max-pool branch reads padded steps as minus infinity (what max-pooling a lone
sequence pads with), batch-norm statistics and the average over time count valid steps
only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._checks import boolean, config_from_dict, fraction, positive_int
from ._convolutional import ConvolutionalClassifier
from ._model_record import rebuild_model
from .encoders import check_input, check_lengths
from .lstm_fcn import MaskedBatchNorm1d
from .normalization import Standardize
from .registry import register_model
from .serialization import SerializableModel

__all__ = ["InceptionTime", "InceptionTimeConfig"]



@dataclass(frozen=True)
class InceptionTimeConfig:
    """Everything needed to rebuild an :class:`InceptionTime` (stored in checkpoints).

    The defaults are the published network's (32 filters per branch, kernels 40, 20 and
    10, depth 6, a bottleneck of 32, residual shortcuts) unless noted in
    :class:`InceptionTime`; only the two sizes have none.
    """

    input_size: int
    num_classes: int
    filters: int = 32
    kernel_sizes: tuple[int, ...] = (40, 20, 10)
    depth: int = 6
    bottleneck: int = 32
    residual: bool = True
    dropout: float = 0.0
    normalize: bool = False

    def __post_init__(self) -> None:
        for name in ("input_size", "num_classes", "filters", "depth", "bottleneck"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))  # numpy ints stored as int
        value = self.kernel_sizes
        if isinstance(value, list):  # from JSON
            object.__setattr__(self, "kernel_sizes", tuple(value))
            value = self.kernel_sizes
        if not isinstance(value, tuple) or not value:
            raise ValueError(f"kernel_sizes must be a non-empty tuple of positive ints; got {value!r}")
        for i, item in enumerate(value):
            positive_int(f"kernel_sizes[{i}]", item)
        boolean("residual", self.residual)
        boolean("normalize", self.normalize)
        fraction("dropout", self.dropout)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON- and ``weights_only``-safe; tuples become lists)."""
        data = asdict(self)
        data["kernel_sizes"] = list(self.kernel_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InceptionTimeConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        return config_from_dict(cls, data)


def _same(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """``conv`` of ``x`` ``(B, C, T)`` to the same length, zeros around it; an even kernel's extra zero on the right."""
    k = conv.kernel_size[0]
    out: Tensor = conv(F.pad(x, ((k - 1) // 2, k // 2)))  # (B, C_out, T)
    return out


class _InceptionModule(nn.Module):
    """Bottleneck, parallel convolutions and a max-pool branch; concatenated, normalised, ReLU."""

    def __init__(self, in_channels: int, config: InceptionTimeConfig) -> None:
        super().__init__()
        # as published: no bottleneck on a univariate input, where it would only widen it
        self.bottleneck = (
            nn.Conv1d(in_channels, config.bottleneck, 1, bias=False) if in_channels > 1 else None
        )
        width = config.bottleneck if self.bottleneck is not None else in_channels
        self.convs = nn.ModuleList(nn.Conv1d(width, config.filters, k, bias=False) for k in config.kernel_sizes)
        self.pool_conv = nn.Conv1d(in_channels, config.filters, 1, bias=False)
        self.norm = MaskedBatchNorm1d(config.filters * (len(config.kernel_sizes) + 1))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` ``(B, C_in, T)``, zero on padded steps -> ``(B, filters * (kernels + 1), T)``."""
        h = x if self.bottleneck is None else self.bottleneck(x)  # (B, W, T); zero where x is (no bias)
        branches = [_same(h, cast(nn.Conv1d, conv)) for conv in self.convs]  # each (B, F, T)
        if mask is not None:
            x = x.masked_fill(~mask, float("-inf"))  # (B, C_in, T): what max-pooling a lone sequence pads with
        pooled = F.max_pool1d(x, 3, stride=1, padding=1)  # (B, C_in, T)
        if mask is not None:
            pooled = pooled.masked_fill(~mask, 0.0)  # no infinities reach the 1x1 convolution
        branches.append(self.pool_conv(pooled))  # (B, F, T)
        out = F.relu(self.norm(torch.cat(branches, dim=1), mask))  # (B, F * (K + 1), T)
        return out if mask is None else out.masked_fill(~mask, 0.0)


class _Shortcut(nn.Module):
    """The residual path: a 1x1 convolution and batch norm, added before the ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = MaskedBatchNorm1d(out_channels)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        out: Tensor = self.norm(self.conv(x), mask)  # (B, C_out, T)
        return out


@register_model("inception_time_small", filters=16, bottleneck=16, depth=3)
@register_model("inception_time")
class InceptionTime(ConvolutionalClassifier, nn.Module, SerializableModel):
    """InceptionTime time-series classifier (one network of the published ensemble); returns logits.

    ``forward(x, lengths=None)`` takes ``x`` of shape ``(batch, time, input_size)`` and
    optional ``lengths`` ``(batch,)``, the valid steps of each padded sequence, like
    :class:`~seqclf.SequenceClassifier`. Padding never changes a result.
    ``model.save(path)`` and ``InceptionTime.load(path)`` write and read one safetensors file.

    Args:
        input_size: features (channels) per time step.
        num_classes: number of output logits.
        filters: output channels of each convolution branch (a module outputs
            ``filters * (len(kernel_sizes) + 1)`` channels).
        kernel_sizes: the kernel sizes of the parallel convolutions of each module.
        depth: the number of Inception modules.
        bottleneck: channels of the 1x1 bottleneck before the convolutions (not used on
            a module's input of one channel).
        residual: add a shortcut around every three modules.
        dropout: dropout on the pooled encoding before the head.
        normalize: standardise each input feature inside the model
            (:class:`~seqclf.normalization.Standardize`), with statistics that
            ``Trainer.fit`` fits on the training data and saves with the weights.

    Examples:
        >>> model = InceptionTime(input_size=1, num_classes=3)
        >>> model(torch.zeros(4, 50, 1)).shape
        torch.Size([4, 3])
    """

    config_class: ClassVar[type[InceptionTimeConfig]] = InceptionTimeConfig
    config: InceptionTimeConfig

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        filters: int = 32,
        kernel_sizes: tuple[int, ...] = (40, 20, 10),
        depth: int = 6,
        bottleneck: int = 32,
        residual: bool = True,
        dropout: float = 0.0,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.config = InceptionTimeConfig(
            input_size=input_size,
            num_classes=num_classes,
            filters=filters,
            kernel_sizes=tuple(kernel_sizes),
            depth=depth,
            bottleneck=bottleneck,
            residual=residual,
            dropout=float(dropout),
            normalize=normalize,
        )
        c = self.config
        self.normalize: Standardize | None = Standardize(c.input_size) if c.normalize else None
        width = c.filters * (len(c.kernel_sizes) + 1)
        self.modules_ = nn.ModuleList(
            _InceptionModule(c.input_size if i == 0 else width, c) for i in range(c.depth)
        )
        # a shortcut from the input of modules 0, 3, 6... to the output of modules 2, 5, 8...
        starts = range(0, c.depth - 2, 3) if c.residual else range(0)
        self.shortcuts = nn.ModuleList(_Shortcut(c.input_size if i == 0 else width, width) for i in starts)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(width, c.num_classes)

    @classmethod
    def from_config(cls, config: InceptionTimeConfig) -> InceptionTime:
        """A freshly initialised model built from ``config``."""
        return cls(**asdict(config))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> InceptionTime:
        """A model rebuilt from a checkpoint's stored config and weights, in eval mode (read safely)."""
        return rebuild_model(cls, InceptionTimeConfig, path)

    @property
    def num_features(self) -> int:
        """Size of the encoding returned by :meth:`forward_features`."""
        return self.config.filters * (len(self.config.kernel_sizes) + 1)

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The encoding ``(batch, num_features)``: the last module's output averaged over valid steps."""
        check_input(x, self.config.input_size)
        mask = None
        if lengths is not None:  # nothing branches on its values: no host sync, traceable
            lengths = check_lengths(lengths, x)  # int64 on x.device
            mask = (torch.arange(x.shape[1], device=x.device) < lengths[:, None]).unsqueeze(1)  # (B, 1, T)
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, F)
        h = x.transpose(1, 2)  # (B, F, T)
        if mask is not None:
            h = h.masked_fill(~mask, 0.0)  # (B, F, T): padding reads as the zeros of a lone sequence
        residual = h
        for i, module in enumerate(self.modules_):
            h = module(h, mask)  # (B, W, T)
            if self.config.residual and i % 3 == 2:
                h = F.relu(h + self.shortcuts[i // 3](residual, mask))  # (B, W, T)
                if mask is not None:
                    h = h.masked_fill(~mask, 0.0)
                residual = h
        if mask is None or lengths is None:
            return h.mean(dim=2)  # (B, W)
        return h.sum(dim=2) / lengths[:, None].to(h.dtype)  # (B, W); padded steps are zero

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"input_size={c.input_size}, filters={c.filters}, kernel_sizes={c.kernel_sizes}, depth={c.depth}, "
            f"bottleneck={c.bottleneck}, residual={c.residual}, num_classes={c.num_classes}"
            + (", normalize=True" if c.normalize else "")
        )
