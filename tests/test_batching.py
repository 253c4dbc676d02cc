"""Epoch plans, bucketing, the per-rank split, loss scales and step counts: the one place they live."""

from __future__ import annotations

import pytest
import torch

import seqclf
from seqclf import batching, distributed
from seqclf.batching import LengthBucketing, bucketed_epoch_plan, epoch_plan, rank_plan, steps_per_epoch


def test_epoch_plan_covers_every_index_once_and_depends_only_on_seed_and_epoch() -> None:
    plan = epoch_plan(10, 4, seed=3, epoch=1)
    assert [len(b) for b in plan] == [4, 4, 2]
    assert sorted(torch.cat(plan).tolist()) == list(range(10))
    assert all(torch.equal(a, b) for a, b in zip(plan, epoch_plan(10, 4, seed=3, epoch=1), strict=True))
    assert not torch.equal(torch.cat(plan), torch.cat(epoch_plan(10, 4, seed=3, epoch=2)))
    assert torch.equal(torch.cat(epoch_plan(5, 2, seed=None)), torch.arange(5))
    assert epoch_plan(0, 4, seed=1) == []


def test_epoch_plan_shards_global_batches_across_ranks() -> None:
    whole = epoch_plan(10, 4, seed=1)
    ranks = [epoch_plan(10, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    for global_batch, part0, part1 in zip(whole, *ranks, strict=True):
        assert torch.equal(torch.cat([part0, part1]), global_batch)


def test_bucketed_plan_covers_every_index_once_and_is_a_function_of_seed_epoch_and_lengths() -> None:
    lengths = torch.randint(1, 100, (103,), generator=torch.Generator().manual_seed(0))
    plan = bucketed_epoch_plan(lengths, 8, pool=4, seed=5, epoch=2)
    assert sorted(torch.cat(plan).tolist()) == list(range(103))
    assert [len(b) for b in plan][-1] == 103 % 8  # the smaller batch stays last
    again = LengthBucketing(pool=4).plan(lengths.clone(), 8, seed=5, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip(plan, again, strict=True))
    assert not torch.equal(torch.cat(plan), torch.cat(bucketed_epoch_plan(lengths, 8, pool=4, seed=5, epoch=3)))

    def padding(batches: list[torch.Tensor]) -> int:  # batches of similar lengths: far less padding
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    assert padding(plan) < padding(epoch_plan(103, 8, seed=5, epoch=2)) / 3


def test_bucketed_plan_shards_global_batches_across_ranks() -> None:
    lengths = torch.randint(1, 50, (40,), generator=torch.Generator().manual_seed(1))
    whole = bucketed_epoch_plan(lengths, 8, seed=1, pool=2)
    ranks = [bucketed_epoch_plan(lengths, 4, seed=1, pool=2, rank=r, world_size=2) for r in range(2)]
    for batch, part0, part1 in zip(whole, *ranks, strict=True):
        assert torch.equal(torch.cat([part0, part1]), batch)


@pytest.mark.parametrize("pool", [0, -1, 1.5, True])
def test_length_bucketing_validation(pool: object) -> None:
    with pytest.raises(ValueError, match=f"pool must be a positive int; got {pool!r}"):
        LengthBucketing(pool=pool)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "batch_size", "world_size", "steps"),
    [(96, 16, 2, 3), (97, 16, 2, 3), (98, 16, 2, 4), (10, 4, 3, 1), (12, 4, 3, 1), (13, 4, 3, 1), (15, 4, 3, 2),
     (5, 8, 1, 1), (97, 16, 1, 7), (0, 4, 1, 0), (1, 4, 2, 0)],
)
def test_steps_per_epoch_leaves_no_rank_without_a_part(size: int, batch_size: int, world_size: int, steps: int) -> None:
    assert steps_per_epoch(size, batch_size, world_size) == steps
    plans = [epoch_plan(size, batch_size, seed=0, rank=rank, world_size=world_size) for rank in range(world_size)]
    assert all(len(part) > 0 for plan in plans for part in plan[:steps])
    assert sum(len(part) for plan in plans for part in plan[:steps]) >= size - world_size + 1


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("bucketed", [False, True])
def test_every_rank_plans_the_same_number_of_steps_the_step_count_says(world_size: int, bucketed: bool) -> None:
    generator = torch.Generator().manual_seed(world_size)
    for size in (1, 2, 3, 7, 16, 31, 32, 33, 97, 100):
        lengths = torch.randint(1, 20, (size,), generator=generator)
        bucketing = LengthBucketing(pool=2) if bucketed else None
        plans = [rank_plan(size, 8, seed=4, epoch=1, rank=r, world_size=world_size, lengths=lengths,
                           bucketing=bucketing) for r in range(world_size)]
        steps = steps_per_epoch(size, 8, world_size)
        assert [len(plan.batches) for plan in plans] == [steps] * world_size
        if world_size == 1:
            assert plans[0].loss_scales is None
            continue
        for i in range(steps):  # the parts of one step are disjoint and come from one global batch
            parts = torch.cat([plan.batches[i] for plan in plans])
            assert len(set(parts.tolist())) == len(parts) and all(len(plan.batches[i]) > 0 for plan in plans)
            scales = [plan.loss_scales[i] for plan in plans if plan.loss_scales is not None]
            # world_size * share: the ranks' mean losses so scaled average to the global batch's mean loss
            assert scales == pytest.approx([world_size * len(plan.batches[i]) / len(parts) for plan in plans])
            assert sum(scales) == pytest.approx(world_size)


def test_a_rank_plan_alone_is_the_epoch_plan_or_the_bucketed_plan() -> None:
    lengths = torch.randint(1, 30, (50,), generator=torch.Generator().manual_seed(2))
    plain = rank_plan(50, 8, seed=3, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip(plain.batches, epoch_plan(50, 8, seed=3, epoch=2), strict=True))
    bucketed = rank_plan(50, 8, seed=3, epoch=2, lengths=lengths, bucketing=LengthBucketing(pool=3))
    expected = bucketed_epoch_plan(lengths, 8, pool=3, seed=3, epoch=2)
    assert all(torch.equal(a, b) for a, b in zip(bucketed.batches, expected, strict=True))
    assert len(rank_plan(50, 8, seed=3, lengths=lengths).batches) == 7  # lengths without bucketing: shuffled


def test_uneven_last_global_batch_gets_scales_that_weight_each_rank_by_its_share() -> None:
    # 38 = 2 global batches of 16 and 6 left: split 3 / 3; 37 leaves 5: split 3 / 2
    plans = [rank_plan(37, 8, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(b) for b in plans[0].batches] == [8, 8, 3] and [len(b) for b in plans[1].batches] == [8, 8, 2]
    assert plans[0].loss_scales == [1.0, 1.0, 2 * 3 / 5] and plans[1].loss_scales == [1.0, 1.0, 2 * 2 / 5]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: steps_per_epoch(-1, 4), "size must be an int >= 0; got -1"),
        (lambda: steps_per_epoch(10, 0), "batch_size must be an int >= 1; got 0"),
        (lambda: steps_per_epoch(10, 4, world_size=True), "world_size must be an int >= 1; got True"),
        (lambda: rank_plan(10, 4, seed=0, rank=2, world_size=2), r"rank must lie in \[0, 2\) \(world_size\); got 2"),
        (lambda: rank_plan(10, 4, seed=0, lengths=torch.ones(9)), r"lengths must have shape \(10,\) \(size\); got \(9,\)"),
    ],
)
def test_bad_arguments_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("name", ["epoch_plan", "bucketed_epoch_plan", "LengthBucketing"])
def test_the_old_names_in_seqclf_data_still_work_with_a_deprecation_warning(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"seqclf.data.{name} has moved to seqclf.batching.{name}"):
        old = getattr(seqclf.data, name)
    assert old is getattr(batching, name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        seqclf.data.no_such_name  # noqa: B018


def test_the_old_step_count_in_seqclf_distributed_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="seqclf.distributed.steps_per_epoch has moved to seqclf.batching"):
        assert distributed.steps_per_epoch(97, 16, 2) == 3
