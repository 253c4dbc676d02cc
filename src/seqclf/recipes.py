"""Training recipes: batch size, epochs, learning rate and schedule, as frozen settings.

``TUTORIAL`` is the classic tutorial's recipe (batches of 32, Adam 1e-3, constant).
``FAST`` reaches the tutorial's 3-epoch Fashion-MNIST test accuracy in a fraction of its
time: larger batches use the hardware better, and a one-cycle schedule (warm up to a
high rate, then anneal) lets fewer steps go as far (see the Benchmarks page of the documentation).

:class:`SmallDataRecipe` trains on the small data sets typical of time-series
classification (tens to hundreds of sequences): a budget in optimizer steps rather than
epochs, a one-cycle schedule, and a stratified validation split with early stopping that
restores the best weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from . import distributed
from .batching import steps_per_epoch
from .callbacks import Callback, EarlyStopping, LRScheduler
from .trainer import Trainer

__all__ = ["FAST", "RECIPES", "SMALL_DATA", "TUTORIAL", "Recipe", "SmallDataRecipe"]

Schedule = Literal["constant", "one_cycle"]


@dataclass(frozen=True)
class Recipe:
    """How to train: the settings that decide speed and final accuracy together.

    Attributes:
        batch_size: sequences per optimizer step.
        epochs: passes over the training data.
        lr: Adam's learning rate; with ``"one_cycle"``, the peak rate.
        schedule: ``"constant"``, or ``"one_cycle"`` (``torch.optim.lr_scheduler.OneCycleLR``
            stepped after every batch, from ``lr / 25`` up to ``lr`` and down to nearly 0).
        warmup: with ``"one_cycle"``, the fraction of the steps spent warming up.
    """

    batch_size: int = 32
    epochs: int = 50
    lr: float = 1e-3
    schedule: Schedule = "constant"
    warmup: float = 0.3

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive float; got {self.lr!r}")
        if self.schedule not in get_args(Schedule):
            raise ValueError(f"schedule must be one of {get_args(Schedule)}; got {self.schedule!r}")
        if not 0.0 < self.warmup < 1.0:
            raise ValueError(f"warmup must be a float in (0, 1); got {self.warmup!r}")

    def steps(self, train_size: int, world_size: int = 1) -> int:
        """Optimizer steps of the whole run on ``train_size`` sequences and ``world_size`` processes."""
        return self.epochs * steps_per_epoch(train_size, self.batch_size, world_size)

    def callbacks(self, train_size: int, world_size: int = 1) -> list[Callback]:
        """The callbacks the schedule needs for a run on ``train_size`` sequences."""
        if self.schedule == "constant":
            return []
        factory = partial(
            torch.optim.lr_scheduler.OneCycleLR,
            max_lr=self.lr,
            total_steps=self.steps(train_size, world_size),
            pct_start=self.warmup,
        )
        return [LRScheduler(factory)]

    def trainer(
        self, model: nn.Module, train_size: int, *, callbacks: Sequence[Callback] = (), **kwargs: Any
    ) -> Trainer:
        """A :class:`Trainer` following this recipe; ``kwargs`` go to it (``seed``, ``device``).

        The schedule's callback comes last, so the others see the rate each step used.
        """
        return Trainer(
            model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            callbacks=[*callbacks, *self.callbacks(train_size, _job_world_size())],
            **kwargs,
        )


TUTORIAL = Recipe(batch_size=32, epochs=50, lr=1e-3)
"""The classic tutorial: batches of 32, Adam 1e-3, 50 epochs."""

FAST = Recipe(batch_size=256, epochs=3, lr=2e-2, schedule="one_cycle")
"""Batches of 256, Adam with a one-cycle schedule peaking at 2e-2, 3 epochs."""

RECIPES: dict[str, Recipe] = {"tutorial": TUTORIAL, "fast": FAST}
"""The recipes by name, as ``examples/mnist_lstm.py --recipe`` offers them."""


@dataclass(frozen=True)
class SmallDataRecipe:
    """How to train on a small data set: enough steps, a schedule, and the best weights kept.

    A tiny training set gives few optimizer steps per epoch, so an epoch budget that suits
    large data leaves a model underfitted. This recipe trains for at least ``min_steps``
    optimizer steps and at least ``min_epochs`` epochs, with a one-cycle schedule
    (warm up to ``lr``, then cosine annealing to nearly 0). When the data set is large
    enough for a validation set of ``min_val_size`` sequences, a stratified
    ``val_fraction`` of it is held out: the weights of the epoch with the lowest
    validation loss are restored at the end, and training stops early when the validation
    loss has not improved for ``patience`` of the epochs. A smaller validation set is too
    coarse to choose weights by (measured: it loses accuracy, see the Benchmarks page),
    so a smaller data set trains on everything and keeps the weights at the end of the
    annealed schedule, as the field's reference deep models do. The same settings serve
    every data set.

    Attributes:
        batch_size: sequences per optimizer step (fewer when the data set is smaller).
        min_steps: the least number of optimizer steps of a run.
        min_epochs: the least number of epochs of a run.
        classes_per_budget: the number of classes ``min_steps`` serves; with more
            classes the least number of steps grows in proportion (37 classes: 1850
            steps), so that many classes of few sequences each get the training they
            need (measured: see the Benchmarks page).
        lr: Adam's peak learning rate.
        warmup: the fraction of the steps spent warming up.
        val_fraction: fraction of each class held out for validation (at least one
            sequence of each class with two or more); ``0`` trains on everything for the
            whole budget and keeps the last weights.
        min_val_size: hold out a validation set only when it would have at least this
            many sequences.
        patience: early stopping's patience as a fraction of the run's epochs.

    Examples:
        >>> from seqclf import LSTMFCN
        >>> model = LSTMFCN(input_size=1, num_classes=2)
        >>> trainer = SmallDataRecipe(min_steps=10, min_epochs=1).fit(
        ...     model, torch.randn(20, 30, 1), torch.arange(20) % 2, seed=0)
        >>> trainer.predict(torch.randn(3, 30, 1)).shape
        torch.Size([3])
    """

    batch_size: int = 16
    min_steps: int = 1000
    min_epochs: int = 30
    classes_per_budget: int = 20
    lr: float = 3e-3
    warmup: float = 0.1
    val_fraction: float = 0.2
    min_val_size: int = 50
    patience: float = 0.25

    def __post_init__(self) -> None:
        for name in ("batch_size", "min_steps", "min_epochs", "classes_per_budget", "min_val_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive float; got {self.lr!r}")
        if not 0.0 < self.warmup < 1.0:
            raise ValueError(f"warmup must be a float in (0, 1); got {self.warmup!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be a float in [0, 1); got {self.val_fraction!r}")
        if not 0.0 < self.patience <= 1.0:
            raise ValueError(f"patience must be a float in (0, 1]; got {self.patience!r}")

    def epochs(self, train_size: int, world_size: int = 1) -> int:
        """Epochs of a run on ``train_size`` sequences: enough for ``min_steps`` and ``min_epochs``.

        On ``world_size`` processes each optimizer step takes a global batch of
        ``batch_size * world_size`` sequences, so an epoch has fewer steps and the run more epochs.
        """
        steps = steps_per_epoch(train_size, self.batch_size, world_size)
        if steps == 0:
            raise ValueError(
                f"train_size must be at least the number of processes ({world_size}) for an epoch to have a step; "
                f"got {train_size}"
            )
        return max(self.min_epochs, math.ceil(self.min_steps / steps))

    def for_classes(self, num_classes: int) -> SmallDataRecipe:
        """This recipe for ``num_classes`` classes: ``min_steps`` grown in proportion beyond ``classes_per_budget``."""
        if num_classes <= self.classes_per_budget:
            return self
        return replace(self, min_steps=math.ceil(self.min_steps * num_classes / self.classes_per_budget))

    def split(self, y: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Stratified indices ``(train, validation)`` of labels ``y``; a seeded, shuffled draw.

        Each class with ``n >= 2`` members gives ``max(1, round(val_fraction * n))`` of them
        (but never all) to validation; a class with one member stays in training. When the
        validation set would have fewer than ``min_val_size`` sequences it is empty.
        """
        if not isinstance(y, Tensor) or y.dim() != 1:
            raise ValueError(f"y must be a 1-D tensor of class indices; got {type(y).__name__}")
        generator = torch.Generator().manual_seed(seed)
        train, val = [], []
        for label in torch.unique(y):
            members = torch.nonzero(y == label).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            held = 0
            if self.val_fraction > 0 and len(members) >= 2:
                held = min(len(members) - 1, max(1, round(self.val_fraction * len(members))))
            val.append(members[:held])
            train.append(members[held:])
        held_out = torch.cat(val)
        if len(held_out) < self.min_val_size:
            return torch.arange(len(y)), held_out[:0]
        return torch.cat(train).sort().values, held_out.sort().values

    def callbacks(self, train_size: int, *, validation: bool = True, world_size: int = 1) -> list[Callback]:
        """Early stopping (with a validation set) then the schedule, for ``train_size`` sequences on ``world_size``."""
        epochs = self.epochs(train_size, world_size)
        factory = partial(
            torch.optim.lr_scheduler.OneCycleLR,
            max_lr=self.lr,
            total_steps=epochs * steps_per_epoch(train_size, self.batch_size, world_size),
            pct_start=self.warmup,
        )
        stopping: list[Callback] = []
        if validation:
            patience = max(1, math.ceil(self.patience * epochs))
            stopping = [EarlyStopping("val_loss", patience=patience, restore_best_weights=True)]
        return [*stopping, LRScheduler(factory)]

    def fit(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        lengths: Tensor | None = None,
        *,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        **kwargs: Any,
    ) -> Trainer:
        """Train ``model`` on ``x`` ``(N, T, F)``, labels ``y`` ``(N,)``; returns the trainer.

        The validation split is drawn from ``seed``, which also seeds the trainer;
        ``kwargs`` go to :class:`Trainer` (``device``, ``progress``). Under ``torchrun`` the
        budget counts the job's optimizer steps, each on a global batch of
        ``batch_size * world_size`` sequences.
        """
        if not isinstance(x, Tensor) or not isinstance(y, Tensor) or len(x) != len(y):
            raise ValueError(
                "x and y must be tensors with one label per sequence; "
                f"got {type(x).__name__} of {len(x)} and {type(y).__name__} of {len(y)}"
            )
        train_index, val_index = self.split(y, seed)
        world_size = _job_world_size()
        recipe = self.for_classes(int(torch.unique(y).numel()))
        trainer = Trainer(
            model,
            epochs=recipe.epochs(len(train_index), world_size),
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            callbacks=[*callbacks, *recipe.callbacks(len(train_index), validation=len(val_index) > 0,
                                                     world_size=world_size)],
            **kwargs,
        )
        trainer.fit(_subset(x, y, lengths, train_index), _subset(x, y, lengths, val_index) if len(val_index) else None)
        return trainer


def _job_world_size() -> int:
    """The processes a trainer built now trains on: those of the ``torchrun`` job (1 alone)."""
    env = distributed.environment()
    return 1 if env is None else env.world_size


def _subset(x: Tensor, y: Tensor, lengths: Tensor | None, index: Tensor) -> tuple[Tensor, ...]:
    if lengths is None:
        return x[index], y[index]
    return x[index], lengths[index], y[index]


SMALL_DATA = SmallDataRecipe()
"""The time-series default: at least 1000 steps of 16 (50 per class beyond 20 classes), one-cycle to 3e-3,
20% validation (if >= 50)."""
