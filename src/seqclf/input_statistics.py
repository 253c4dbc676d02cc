"""The training data's input statistics, fitted into a model's :class:`~seqclf.normalization.Standardize` layers.

This is training-side work: it reads the training data once, before the first step of a
fresh run (``Trainer.fit`` calls it). Under data-parallel training, a ``DataLoader`` with a
``DistributedSampler`` gives each process its own share of the data: the statistics are
then summed over every process, so all of them hold those of the whole data.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from . import distributed
from .batching import epoch_plan
from .data import DatasetSource, LoaderSource, TensorSource
from .normalization import Standardize, _Moments

__all__ = ["fit_standardizers"]

logger = logging.getLogger(__name__)

_CHUNK = 4096  # sequences per step of the statistics pass (bounds the float64 copy)


def fit_standardizers(model: nn.Module, source: TensorSource | DatasetSource | LoaderSource) -> None:
    """Fit every unfitted :class:`~seqclf.normalization.Standardize` in ``model`` on all of ``source``'s sequences.

    A no-op (the data is not read) when the model has none left to fit. Called by
    ``Trainer.fit`` before the first step of a fresh run; batches are seen as the model
    will see them (after any ``transform``), and padded steps are left out.

    With several processes, a ``DataLoader`` whose ``DistributedSampler`` splits the data
    is read by every rank (a collective: every rank must call this), and the moments of
    the ranks' shares are summed, so every rank gets the statistics of all the data. (A
    ``DistributedSampler`` that pads its shares to equal size repeats a few sequences:
    those count twice.) Data held whole by every rank (tensors, a ``Dataset``) is read
    whole by each.

    Raises:
        ValueError: a layer does not take the data's number of features, or the data has
            no valid time step.
    """
    layers = [m for m in model.modules() if isinstance(m, Standardize) and not m.is_fitted]
    if not layers:
        return
    features = {layer.num_features for layer in layers}
    plan = None if isinstance(source, LoaderSource) else epoch_plan(len(source), _CHUNK, seed=None)
    moments: _Moments | None = None
    for batch in source.batches(plan):
        if moments is None:
            if features != {batch.x.shape[-1]}:
                raise ValueError(
                    f"every unfitted Standardize in the model must take the input's {batch.x.shape[-1]} features "
                    f"to be fitted on the training data; got layers of {sorted(features)} features "
                    "(fit those yourself with Standardize.fit before training)"
                )
            moments = _Moments(batch.x.shape[-1])
        moments.update(batch.x, batch.lengths)
    if isinstance(source, LoaderSource) and distributed.has_distributed_sampler(source.loader):
        moments = moments or _Moments(layers[0].num_features)  # a rank with no batch still joins the sums
        _sum_over_ranks(moments, layers[0].mean.device)
    if moments is None:
        raise ValueError("the standardisation must be fitted on the training data; got no batches")
    mean, std = moments.result()
    for layer in layers:
        layer.set_statistics(mean.to(layer.mean.device), std.to(layer.scale.device))
    logger.info("fitted the input standardisation on %d valid steps", int(moments.count))


def _sum_over_ranks(moments: _Moments, device: torch.device) -> None:
    """Merge every rank's ``moments`` into ``moments`` on every rank (two all-reduces; nothing when alone).

    The mean is the count-weighted mean of the ranks' means; the squared deviations are
    each rank's own plus its count times its mean's squared distance to the overall mean
    (Chan et al.'s merge, which stays accurate when the mean is large next to the spread).
    """
    if distributed.world_size() == 1:
        return
    count = torch.tensor([moments.count], dtype=torch.float64, device=device)  # (1,)
    mean = _or_zeros(moments.mean, moments.num_features, device)  # (F,)
    m2 = _or_zeros(moments.m2, moments.num_features, device)  # (F,)
    totals = distributed.all_reduce_sum(torch.cat([count, count * mean]))  # (1 + F,)
    total = float(totals[0])
    if total == 0:
        return  # no rank saw a valid step: result() says so
    overall = totals[1:] / total  # (F,)
    spread = distributed.all_reduce_sum(m2 + count * (mean - overall) ** 2)  # (F,)
    moments.count, moments.mean, moments.m2 = total, overall, spread


def _or_zeros(value: Tensor | None, size: int, device: torch.device) -> Tensor:
    return torch.zeros(size, dtype=torch.float64, device=device) if value is None else value.to(device)
