"""Random convolutional kernels (ROCKET family): thousands of fixed kernels, pooled, then a linear head.

The transform follows Dempster et al. (2020), "ROCKET: exceptionally fast and accurate
time series classification using random convolutional kernels", with the pooling of
MultiRocket (Tan et al., 2022): each of ``num_kernels`` random kernels (length 7, 9 or
11, normal weights centred to sum zero, a uniform bias, an exponentially drawn dilation,
"same" padding or none at random) is convolved with the standardised series and, with
``difference=True``, with its first difference; each output is pooled into the
proportion of positive values (PPV), the maximum, the mean of positive values (MPV) and
the mean index of positive values (MIPV). A linear head maps the pooled features to
logits.

The kernels are fixed (buffers, not parameters); only the head learns. The usual fit is
closed-form (:meth:`Rocket.fit_closed_form`: standardised features, ridge regression with
the penalty chosen by leave-one-out error, :func:`seqclf.ridge.fit_ridge`), which is what
the estimator does; ``Trainer.fit`` trains the head by gradient instead, as for any model.

Padding never changes a result: padded steps are set to zero (what a "same" convolution
of a lone sequence reads there) and every pooling counts the outputs of a lone sequence
only. Dilations follow the longest training sequence (:meth:`Rocket.set_reference_length`,
called by :meth:`Rocket.fit_closed_form`); they are saved with the weights.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._checks import boolean, config_from_dict, positive_int
from ._convolutional import ConvolutionalClassifier
from ._model_record import rebuild_model
from .encoders import _tracing, check_input, check_lengths
from .hydra import HydraFeatures
from .normalization import Standardize
from .registry import register_model
from .ridge import DEFAULT_ALPHAS, RidgeFit, fit_ridge
from .serialization import SerializableModel

__all__ = ["Rocket", "RocketConfig"]

_TAPS = 11  # every kernel is stored centred in 11 taps (lengths 7 and 9 zero-padded)
_LENGTHS = (7, 9, 11)
_POOLS = 4  # PPV, max, MPV, MIPV
_DILATION_LEVELS = 32  # dilations are rounded to this many exponentially spaced values
_DEFAULT_REFERENCE_LENGTH = 64
_CHUNK = 64  # sequences per forward pass in fit_closed_form


@dataclass(frozen=True)
class RocketConfig:
    """Everything needed to rebuild a :class:`Rocket` (stored in checkpoints)."""

    input_size: int
    num_classes: int
    num_kernels: int = 5_000
    difference: bool = True
    hydra: bool = False
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("input_size", "num_classes", "num_kernels"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name)))
        boolean("difference", self.difference)
        boolean("hydra", self.hydra)
        boolean("normalize", self.normalize)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RocketConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        return config_from_dict(cls, data)


@register_model("rocket_hydra", hydra=True)
@register_model("rocket")
class Rocket(ConvolutionalClassifier, nn.Module, SerializableModel):
    """A random-convolutional-kernel classifier (ROCKET kernels, MultiRocket pooling); returns logits.

    ``forward(x, lengths=None)`` takes ``x`` ``(batch, time, input_size)`` and optional
    ``lengths`` ``(batch,)`` like every seqclf model; padding never changes a result.
    Fit it with :meth:`fit_closed_form` (ridge regression, seconds), or train its head
    with ``Trainer``.

    Args:
        input_size: features (channels) per time step. With more than one, each kernel
            reads a random subset of the channels (as ROCKET's multivariate version).
        num_classes: number of output logits.
        num_kernels: random kernels; each gives 4 features per representation.
        difference: also convolve the first difference of each series (MultiRocket),
            doubling the features.
        hydra: add Hydra's competing-kernel counts (:class:`~seqclf.hydra.HydraFeatures`,
            64 groups of 8 kernels per dilation) to the features, as MultiRocket-Hydra
            does (registered as ``"rocket_hydra"``).
        normalize: standardise each input feature inside the model, with statistics
            fitted on the training data and saved with the weights.

    Examples:
        >>> model = Rocket(input_size=1, num_classes=3, num_kernels=100)
        >>> model(torch.zeros(4, 50, 1)).shape
        torch.Size([4, 3])
    """

    config_class: ClassVar[type[RocketConfig]] = RocketConfig
    config: RocketConfig
    weight: Tensor
    bias: Tensor
    kernel_length: Tensor
    padded: Tensor
    dilation_exponent: Tensor
    dilation: Tensor
    feature_mean: Tensor
    feature_scale: Tensor

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        num_kernels: int = 5_000,
        difference: bool = True,
        hydra: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.config = c = RocketConfig(
            input_size=input_size,
            num_classes=num_classes,
            num_kernels=num_kernels,
            difference=difference,
            hydra=hydra,
            normalize=normalize,
        )
        k, channels = c.num_kernels, c.input_size
        cpu = torch.device("cpu")  # drawn on the CPU even when built on the meta device (to be loaded into)
        lengths = torch.tensor(_LENGTHS, device=cpu)[torch.randint(0, len(_LENGTHS), (k,), device=cpu)]  # (K,)
        taps = torch.arange(_TAPS, device=cpu)
        start = (_TAPS - lengths[:, None]) // 2  # (K, 1) each kernel centred in the 11 taps
        in_kernel = (taps >= start) & (taps < start + lengths[:, None])  # (K, 11)
        # each kernel reads a random subset of 2 ** U(0, log2(C + 1)) channels (all of one channel)
        n_channels = (2 ** (torch.rand(k, device=cpu) * math.log2(channels + 1))).floor().clamp(1, channels)  # (K,)
        rank = torch.rand(k, channels, device=cpu).argsort(dim=1).argsort(dim=1)  # (K, C) a random order
        chosen = rank < n_channels[:, None]  # (K, C)
        mask = (chosen[:, :, None] & in_kernel[:, None, :]).float()  # (K, C, 11)
        weight = torch.randn(k, channels, _TAPS, device=cpu) * mask
        weight = weight - mask * (weight.sum(dim=(1, 2)) / mask.sum(dim=(1, 2)))[:, None, None]  # sums to zero
        self.register_buffer("weight", weight)  # (K, C, 11)
        self.register_buffer("bias", torch.rand(k, device=cpu) * 2 - 1)  # (K,) uniform in [-1, 1)
        self.register_buffer("kernel_length", lengths)  # (K,)
        self.register_buffer("padded", torch.rand(k, device=cpu) < 0.5)  # (K,) "same" padding or none
        self.register_buffer("dilation_exponent", torch.rand(k, device=cpu))  # (K,) in [0, 1): where in the range
        self.register_buffer("dilation", torch.ones(k, dtype=torch.int64, device=cpu))  # (K,)
        self.normalize: Standardize | None = Standardize(channels) if c.normalize else None
        self.register_buffer("feature_mean", torch.zeros(self._pooled_features))  # of the pooled features
        self.register_buffer("feature_scale", torch.ones(self._pooled_features))
        self.hydra: HydraFeatures | None = HydraFeatures(channels) if c.hydra else None
        self.dropout = nn.Identity()
        self.head = nn.Linear(self.num_features, c.num_classes)
        self._groups: list[tuple[int, Tensor, list[tuple[int, int, int]]]] = []
        self.set_reference_length(_DEFAULT_REFERENCE_LENGTH)
        self.register_load_state_dict_post_hook(_regroup)  # type: ignore[no-untyped-call]

    @classmethod
    def from_config(cls, config: RocketConfig) -> Rocket:
        """A freshly drawn model built from ``config``."""
        return cls(**asdict(config))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> Rocket:
        """A model rebuilt from a checkpoint's stored config and weights, in eval mode (read safely)."""
        return rebuild_model(cls, RocketConfig, path)

    @property
    def num_features(self) -> int:
        """Size of the encoding returned by :meth:`forward_features`."""
        return self._pooled_features + (0 if self.hydra is None else self.hydra.num_features)

    @property
    def _pooled_features(self) -> int:
        return self.config.num_kernels * _POOLS * (2 if self.config.difference else 1)

    @torch.no_grad()
    def set_reference_length(self, length: int) -> None:
        """Spread the dilations over sequences of ``length`` steps (ROCKET: up to ``(length - 1) / (k - 1)``)."""
        length = positive_int("length", length)
        span = torch.clamp((length - 1) / (self.kernel_length.float() - 1), min=1.0)  # (K,)
        top = torch.log2(span)  # (K,) the largest exponent of each kernel
        levels = torch.round(self.dilation_exponent * (_DILATION_LEVELS - 1)) / (_DILATION_LEVELS - 1)
        self.dilation.copy_(torch.floor(2 ** (levels * top)).to(torch.int64).clamp(min=1))
        self._group_kernels()
        if getattr(self, "hydra", None) is not None:
            assert self.hydra is not None
            self.hydra.set_reference_length(length)

    def _group_kernels(self) -> None:
        """Cache the convolutions to run: per distinct dilation, its kernels, in runs of one output margin.

        Within a dilation the kernels are ordered by margin (0 for "same" padding, else half
        the kernel's span), so that each run of one margin is a slice of the convolution's
        output, whose valid steps are the same for every kernel of the run.
        """
        self._groups = []
        self._order = torch.arange(0)
        if self.dilation.is_meta:  # a skeleton that weights are checked against; grouped when they are loaded
            return
        dilation = self.dilation.cpu()
        margin = torch.where(self.padded.cpu(), 0, (self.kernel_length.cpu() - 1) // 2) * dilation  # (K,)
        order = []
        for d in torch.unique(dilation).tolist():
            index = torch.nonzero(dilation == d).flatten()
            index = index[torch.argsort(margin[index], stable=True)]
            margins, counts = torch.unique_consecutive(margin[index], return_counts=True)
            runs: list[tuple[int, int, int]] = []
            start = 0
            for m, n in zip(margins.tolist(), counts.tolist(), strict=True):
                runs.append((start, start + n, m))
                start += n
            self._groups.append((int(d), index, runs))
            order.append(index)
        self._order = torch.argsort(torch.cat(order))  # features in kernel order from features in group order

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The standardised pooled features ``(batch, num_features)``.

        Run eagerly, a large batch is transformed ``64`` sequences at a time (the
        convolutions' outputs of a whole batch could fill the memory); the result is the same.
        """
        check_input(x, self.config.input_size)
        if lengths is not None:
            lengths = check_lengths(lengths, x)  # int64 on x.device
        if len(x) > _CHUNK and not _tracing():
            return torch.cat([
                self.forward_features(x[i : i + _CHUNK], None if lengths is None else lengths[i : i + _CHUNK])
                for i in range(0, len(x), _CHUNK)
            ])
        if self.normalize is not None:
            x = self.normalize(x, lengths)  # (B, T, C); padded steps 0
        h = x.transpose(1, 2)  # (B, C, T)
        if lengths is not None:
            valid = torch.arange(x.shape[1], device=x.device) < lengths[:, None]  # (B, T)
            h = h.masked_fill(~valid[:, None, :], 0.0)
        steps = x.shape[1]
        pooled = [self._pool(h, lengths, steps)]
        if not self.config.difference and self.hydra is None:
            return (pooled[0] - self.feature_mean) / self.feature_scale
        diff_lengths = None if lengths is None else lengths - 1  # a lone sequence of n steps has n - 1
        diff = F.pad(h[:, :, 1:] - h[:, :, :-1], (0, 1))  # (B, C, T): x[t + 1] - x[t]; the last step is 0
        if diff_lengths is not None:
            diff = diff.masked_fill(torch.arange(steps, device=x.device) >= diff_lengths[:, None, None], 0.0)
        if self.config.difference:
            pooled.append(self._pool(diff, diff_lengths, steps - 1))
        features = (torch.cat(pooled, dim=1) - self.feature_mean) / self.feature_scale  # (B, pooled features)
        if self.hydra is None:
            return features
        return torch.cat([features, self.hydra(h, diff, lengths, steps)], dim=1)  # (B, num_features)

    def _pool(self, h: Tensor, steps: Tensor | None, valid: int) -> Tensor:
        """PPV, max, MPV and MIPV of every kernel over ``h`` ``(B, C, T)`` -> ``(B, 4K)``.

        ``steps`` ``(B,)``: each sequence's valid steps (``h`` is zero after them); None: the
        first ``valid`` steps of every sequence are (then each kernel's outputs are one slice).
        """
        length = h.shape[2]
        parts = []
        for dilation, index, runs in self._groups:
            index = index.to(h.device)
            conv = F.conv1d(h, self.weight[index], self.bias[index], padding=5 * dilation, dilation=dilation)
            for start, end, margin in runs:  # a kernel without padding has outputs only where it lies inside
                if steps is None:
                    parts.append(_pooled(conv[:, start:end, margin : max(valid - margin, margin)], None))
                else:
                    time = torch.arange(length, device=h.device)
                    inside = (time >= margin) & (time < steps[:, None] - margin)  # (B, T)
                    parts.append(_pooled(conv[:, start:end], inside, margin))
        pooled = torch.cat(parts, dim=2)[:, :, self._order.to(h.device)]  # (B, 4, K) in kernel order
        return pooled.flatten(1)  # (B, 4K)

    @torch.no_grad()
    def fit_closed_form(
        self, x: Tensor, y: Tensor, lengths: Tensor | None = None, *, alphas: tuple[float, ...] = DEFAULT_ALPHAS
    ) -> RidgeFit:
        """Fit everything data-dependent to ``x`` ``(N, T, C)`` and labels ``y`` ``(N,)``; returns the ridge fit.

        Sets the input standardisation, the dilations (from the longest sequence), the
        features' standardisation and the head (ridge regression, penalty by leave-one-out
        error, logits scaled to fit the leave-one-out predictions).
        """
        check_input(x, self.config.input_size)
        if lengths is not None:
            lengths = check_lengths(lengths, x)
        longest = x.shape[1] if lengths is None else int(lengths.max())
        if self.normalize is not None:
            self.normalize.fit(x, lengths)
        self.set_reference_length(longest)
        self.feature_mean.zero_()
        self.feature_scale.fill_(1.0)
        if self.hydra is not None:
            self.hydra.reset_scaling()
        was_training = self.training
        self.eval()
        features = self.forward_features(x, lengths)  # (N, F) unscaled; scaled in place below
        pooled = features[:, : self._pooled_features]  # (N, pooled features), a view
        mean = pooled.mean(dim=0, dtype=torch.float64)
        std = ((pooled - mean.to(pooled.dtype)) ** 2).mean(dim=0, dtype=torch.float64).sqrt()
        scale = torch.where(std > 1e-6 * mean.abs().clamp(min=1.0), std, torch.ones_like(std))  # constant: 1
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(scale)
        pooled.sub_(self.feature_mean).div_(self.feature_scale)  # as forward_features now gives
        if self.hydra is not None:
            root = features[:, self._pooled_features :]  # (N, Hydra features): the square-rooted counts
            self.hydra.fit_scaling(root)
            nonzero = root != 0
            root.sub_(self.hydra.mean).mul_(nonzero).div_(self.hydra.scale)
            del nonzero
        fit = fit_ridge(features, y.to(features.device), self.config.num_classes, alphas)
        head = self.head
        assert isinstance(head, nn.Linear)
        head.weight.copy_(fit.weight)
        head.bias.copy_(fit.bias)
        self.train(was_training)
        return fit

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"input_size={c.input_size}, num_kernels={c.num_kernels}, difference={c.difference}, hydra={c.hydra}, "
            f"num_classes={c.num_classes}" + (", normalize=True" if c.normalize else "")
        )


def _pooled(out: Tensor, inside: Tensor | None, first: int = 0) -> Tensor:
    """PPV, max, MPV and MIPV over time of convolution outputs ``out`` ``(B, K, T)`` -> ``(B, 4, K)``.

    ``inside`` ``(B, T)``: which steps are outputs of each lone sequence (None: all), the
    first of them at step ``first``. A kernel with no output (a sequence shorter than it)
    pools to 0, 0, 0 and -1.
    """
    if inside is None and out.shape[2] == 0:  # every sequence is shorter than the kernels
        none = out.new_zeros(out.shape[:2])
        return torch.stack([none, none, none, none - 1], dim=1)
    time = torch.arange(-first, out.shape[2] - first, device=out.device, dtype=out.dtype)  # (T,) from the first
    positive = out > 0  # (B, K, T)
    if inside is None:
        count = torch.full(out.shape[:1], float(out.shape[2]), device=out.device, dtype=out.dtype)[:, None]  # (B, 1)
        peak = out.amax(dim=2)  # (B, K)
    else:
        count = inside.sum(dim=1, keepdim=True).to(out.dtype)  # (B, 1)
        positive = positive & inside[:, None, :]
        peak = out.masked_fill(~inside[:, None, :], float("-inf")).amax(dim=2)
        peak = torch.where(count > 0, peak, torch.zeros_like(peak))
    weights = positive.to(out.dtype)  # (B, K, T)
    n_positive = weights.sum(dim=2)  # (B, K)
    ppv = n_positive / count.clamp(min=1)
    mpv = (out * weights).sum(dim=2) / n_positive.clamp(min=1)
    position = (weights @ time) / n_positive.clamp(min=1) / count.clamp(min=1)  # (B, K) the mean positive step
    mipv = torch.where(n_positive > 0, position, -torch.ones_like(position))
    return torch.stack([ppv, peak, mpv, mipv], dim=1)


def _regroup(module: nn.Module, _keys: Any) -> None:
    """After ``load_state_dict``: regroup the kernels by their loaded dilations (a function, so the model pickles)."""
    if isinstance(module, Rocket):
        module._group_kernels()
