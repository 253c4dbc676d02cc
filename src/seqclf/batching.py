"""How an epoch is cut into batches: the one place for plans, the per-rank split and step counts.

An epoch's plan is a list of index tensors, one per optimizer step. It is a pure function of
``(seed, epoch)`` (and the lengths, when bucketing), so a resumed run or another process
rebuilds it without carrying generator state. With ``world_size`` processes each global
batch of ``batch_size * world_size`` indices is split into disjoint per-rank parts.

The trainer (:meth:`seqclf.Trainer.epoch_batches`), the recipes (their step counts and
schedules) and the data-parallel code all ask this module, so they cannot disagree on how
many steps an epoch has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LengthBucketing", "RankPlan", "bucketed_epoch_plan", "epoch_plan", "rank_plan", "steps_per_epoch"]

_EPOCH_STRIDE = 1_000_003  # epoch e shuffles with seed + e * stride


def steps_per_epoch(size: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps every rank takes in an epoch of ``size`` sequences.

    Each step consumes one global batch of up to ``batch_size * world_size`` sequences,
    split across the ranks. A last global batch of fewer than ``world_size`` sequences
    would leave some rank without a part, and data-parallel training needs every rank to
    step together, so it is skipped (at most ``world_size - 1`` sequences per epoch; the
    next epoch reshuffles). Alone, this is ``ceil(size / batch_size)``.

    Example:
        >>> steps_per_epoch(97, 16), steps_per_epoch(97, 16, world_size=2)
        (7, 3)
    """
    for name, value in (("size", size), ("batch_size", batch_size), ("world_size", world_size)):
        low = 0 if name == "size" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    full, rest = divmod(size, batch_size * world_size)
    return full + (1 if rest >= world_size else 0)


def epoch_plan(
    size: int,
    batch_size: int,
    *,
    seed: int | None,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[Tensor]:
    """The index batches of one epoch: shuffled by ``(seed, epoch)``, or in order when seed is None.

    The permutation depends only on ``seed`` and ``epoch`` (as with
    ``DistributedSampler``), so a resumed run or another rank rebuilds the same order
    without carrying generator state. With ``world_size > 1`` each global batch of
    ``batch_size * world_size`` indices is split into disjoint per-rank parts; this rank's
    non-empty parts are returned (see :func:`rank_plan` for the parts every rank steps on).
    """
    order = torch.arange(size) if seed is None else torch.randperm(size, generator=_generator(seed, epoch))
    return _split(torch.split(order, batch_size * world_size), rank, world_size)


@dataclass(frozen=True)
class LengthBucketing:
    """Batch training sequences of similar lengths together, for speed on variable-length data.

    Give it to the trainer as ``Trainer(..., batching=LengthBucketing())``. Each epoch the
    sequences are shuffled by ``(seed, epoch)`` as in :func:`epoch_plan`; each run of
    ``pool`` consecutive batches is then sorted by length and cut into batches, and the
    batches are shuffled. Every batch is trimmed to its own longest sequence, so a batch of
    short sequences costs little. The plan is a pure function of ``(seed, epoch, lengths)``,
    so a resumed run replays it exactly.

    It applies to in-memory training data with lengths (tensors, or a list of sequences);
    equal-length data has nothing to bucket.

    Args:
        pool: batches sorted together; larger pools give tighter buckets and less random
            batches.
    """

    pool: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.pool, bool) or not isinstance(self.pool, int) or self.pool < 1:
            raise ValueError(f"pool must be a positive int; got {self.pool!r}")

    def plan(
        self,
        lengths: Tensor,
        batch_size: int,
        *,
        seed: int | None,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> list[Tensor]:
        """The index batches of one epoch; see :func:`bucketed_epoch_plan`."""
        return bucketed_epoch_plan(
            lengths, batch_size, pool=self.pool, seed=seed, epoch=epoch, rank=rank, world_size=world_size
        )


def bucketed_epoch_plan(
    lengths: Tensor,
    batch_size: int,
    *,
    pool: int = 50,
    seed: int | None,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[Tensor]:
    """Index batches of sequences of similar ``lengths`` ``(N,)``, shuffled by ``(seed, epoch)``.

    Like :func:`epoch_plan` (each index once per epoch, global batches of
    ``batch_size * world_size`` split into disjoint per-rank parts), but each pool of
    ``pool`` global batches is sorted by length before it is cut, and the order of the full
    batches is shuffled (a last, smaller batch stays last). With ``seed=None`` nothing is
    shuffled.
    """
    lengths = lengths.to("cpu", torch.int64)
    size = len(lengths)
    generator = None if seed is None else _generator(seed, epoch)
    order = torch.arange(size) if generator is None else torch.randperm(size, generator=generator)
    step = batch_size * world_size
    batches: list[Tensor] = []
    for start in range(0, size, step * pool):
        chunk = order[start : start + step * pool]
        by_length = torch.sort(lengths[chunk], descending=True, stable=True).indices
        batches.extend(torch.split(chunk[by_length], step))
    full = [batch for batch in batches if len(batch) == step]
    partial = [batch for batch in batches if len(batch) < step]
    if generator is not None:
        full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return _split(full + partial, rank, world_size)


@dataclass(frozen=True)
class RankPlan:
    """One rank's share of an epoch: what it trains on at each optimizer step.

    Attributes:
        batches: the rank's index batches, one per step; every rank has the same number,
            :func:`steps_per_epoch`.
        loss_scales: per step, ``world_size`` times this rank's share of the global batch
            (None alone). Scaling each rank's mean loss by it makes the average of the
            ranks' gradients the gradient of the global batch's mean loss, for any dataset
            size (a last global batch split unevenly included).
    """

    batches: list[Tensor]
    loss_scales: list[float] | None


def rank_plan(
    size: int,
    batch_size: int,
    *,
    seed: int | None,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    lengths: Tensor | None = None,
    bucketing: LengthBucketing | None = None,
) -> RankPlan:
    """The batches rank ``rank`` steps on in epoch ``epoch`` of ``size`` sequences, and their loss scales.

    ``batch_size`` is per rank. With ``bucketing`` and ``lengths`` ``(size,)`` the plan is
    :func:`bucketed_epoch_plan`'s, otherwise :func:`epoch_plan`'s; either way it is cut to
    :func:`steps_per_epoch` steps so that every rank steps together.

    Example:
        >>> plan = rank_plan(97, 16, seed=0, rank=1, world_size=2)
        >>> len(plan.batches), [len(batch) for batch in plan.batches]
        (3, [16, 16, 16])
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}) (world_size); got {rank!r}")
    if lengths is not None and len(lengths) != size:
        raise ValueError(f"lengths must have shape ({size},) (size); got {tuple(lengths.shape)}")

    def plan_of(r: int) -> list[Tensor]:
        if bucketing is not None and lengths is not None:
            return bucketing.plan(lengths, batch_size, seed=seed, epoch=epoch, rank=r, world_size=world_size)
        return epoch_plan(size, batch_size, seed=seed, epoch=epoch, rank=r, world_size=world_size)

    if world_size == 1:
        return RankPlan(plan_of(0), None)
    steps = steps_per_epoch(size, batch_size, world_size)
    plans = [plan_of(r)[:steps] for r in range(world_size)]
    totals = [sum(len(plan[i]) for plan in plans) for i in range(steps)]
    mine = plans[rank]
    return RankPlan(mine, [world_size * len(mine[i]) / totals[i] for i in range(steps)])


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + epoch * _EPOCH_STRIDE)


def _split(global_batches: Sequence[Tensor], rank: int, world_size: int) -> list[Tensor]:
    """This rank's non-empty part of each global batch (the batches themselves when alone)."""
    if world_size == 1:
        return [batch for batch in global_batches if len(batch) > 0]
    parts = (batch.tensor_split(world_size)[rank] for batch in global_batches)
    return [part for part in parts if len(part) > 0]
