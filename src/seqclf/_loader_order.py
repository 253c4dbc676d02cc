"""Which generators decide a ``DataLoader``'s order, so that a resumed epoch replays it exactly.

A ``DataLoader`` draws from a generator when each epoch's iterator starts: its sampler's
shuffle (``RandomSampler``, ``SubsetRandomSampler``, ``WeightedRandomSampler``) and the
workers' base seed. Without a generator of their own these draw from torch's global
generator, whose state a mid-epoch checkpoint holds at the middle of the epoch: a resumed
run would draw another order. The trainer therefore gives every such sampler and loader
that has no generator one of its own, seeded by ``(seed, epoch, rank)``, and records the
state at the epoch's start of the generators the user gave.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

_SEEDED = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)  # shuffle with `self.generator`
_FIXED = (SequentialSampler, DistributedSampler)  # an order set by the epoch alone


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for ``(seed, epoch, rank)``, distinct from the trainer's own shuffling seeds."""
    return (seed * 6364136223846793005 + epoch * 1442695040888963407 + rank * 2862933555777941757 + 1) % 2**63


class LoaderOrder:
    """The generators of one ``DataLoader`` (and its sampler), while the trainer runs it.

    Args:
        loader: the user's ``DataLoader``.
    """

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader
        samplers: list[Any] = [loader.sampler]
        batch_sampler = loader.batch_sampler
        if batch_sampler is not None and batch_sampler is not loader.sampler:
            if isinstance(batch_sampler, BatchSampler):
                samplers.append(batch_sampler.sampler)
            else:
                samplers.append(batch_sampler)
        self.samplers = [s for i, s in enumerate(samplers) if all(s is not t for t in samplers[:i])]
        unknown = [s for s in self.samplers if not isinstance(s, (*_SEEDED, *_FIXED))]
        self.unknown: str | None = type(unknown[0]).__name__ if unknown else None
        """The class of a sampler whose order the trainer cannot replay, or None."""
        self.generator = torch.Generator()
        owners: list[Any] = [loader, *(s for s in self.samplers if isinstance(s, _SEEDED))]
        self._ours = [owner for owner in owners if owner.generator is None]
        self.users: list[torch.Generator] = []
        """The generators the user gave (each once), whose state at an epoch's start is recorded."""
        for owner in owners:
            if owner.generator is not None and all(owner.generator is not g for g in self.users):
                self.users.append(owner.generator)

    def __enter__(self) -> LoaderOrder:
        for owner in self._ours:
            owner.generator = self.generator
        return self

    def __exit__(self, *exc: object) -> None:
        for owner in self._ours:
            owner.generator = None

    def start_epoch(self, seed: int, epoch: int, rank: int) -> list[torch.Tensor]:
        """Seed the trainer's generator for this epoch; return the user's generators' states now."""
        self.generator.manual_seed(epoch_seed(seed, epoch, rank))
        return [generator.get_state() for generator in self.users]

    def user_states(self) -> list[torch.Tensor]:
        """The current states of the user's generators."""
        return [generator.get_state() for generator in self.users]

    def set_user_states(self, states: list[torch.Tensor]) -> None:
        """Put the user's generators in ``states`` (from :meth:`user_states` or :meth:`start_epoch`)."""
        for generator, state in zip(self.users, states, strict=True):
            generator.set_state(state)

    def replay_epoch(self, seed: int, epoch: int, rank: int, states: list[torch.Tensor]) -> None:
        """Put every generator back where it was at the start of ``epoch`` (``states``: the user's)."""
        self.generator.manual_seed(epoch_seed(seed, epoch, rank))
        self.set_user_states(states)


class LoaderReplay:
    """A trainer's record of its ``DataLoader``'s generators, from epoch to epoch and through a resume.

    Attributes:
        order: the generators of the last ``fit``'s ``DataLoader`` (None: no ``DataLoader``).
        epoch_states: the user's generators' states at the current epoch's start.
        resume_states: their states in a loaded checkpoint, until the next epoch starts.
    """

    def __init__(self) -> None:
        self.order: LoaderOrder | None = None
        self.epoch_states: list[torch.Tensor] = []
        self.resume_states: list[torch.Tensor] | None = None

    def begin_epoch(self, seed: int, epoch: int, rank: int, done: int) -> None:
        """Set the generators for ``epoch``: fresh at its start, replayed when ``done`` batches are past."""
        if self.order is None:
            return
        if done == 0:
            if self.resume_states is not None:  # a resume at an epoch's start
                self.order.set_user_states(self.resume_states)
            self.epoch_states = self.order.start_epoch(seed, epoch, rank)
        else:
            self.order.replay_epoch(seed, epoch, rank, self.epoch_states)
        self.resume_states = None

    def states(self) -> dict[str, list[torch.Tensor]]:
        """The states a checkpoint keeps: at the epoch's start and now."""
        return {
            "loader_epoch_start": list(self.epoch_states),
            "loader_now": [] if self.order is None else self.order.user_states(),
        }

    def restore(self, states: dict[str, Any]) -> None:
        """Take the states of :meth:`states` from a checkpoint (applied when the next epoch starts)."""
        self.epoch_states = list(states.get("loader_epoch_start", []))
        self.resume_states = list(states.get("loader_now", [])) or None
