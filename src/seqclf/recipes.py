"""Training recipes: batch size, epochs, learning rate and schedule, as frozen settings.

``TUTORIAL`` is the classic tutorial's recipe (batches of 32, Adam 1e-3, constant).
``FAST`` reaches the tutorial's 3-epoch Fashion-MNIST test accuracy in a fraction of its
time: larger batches use the hardware better, and a one-cycle schedule (warm up to a
high rate, then anneal) lets fewer steps go as far (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, get_args

import torch
from torch import nn

from . import distributed
from .callbacks import Callback, LRScheduler
from .trainer import Trainer

__all__ = ["FAST", "RECIPES", "TUTORIAL", "Recipe"]

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
        if world_size == 1:
            return self.epochs * math.ceil(train_size / self.batch_size)
        return self.epochs * distributed.steps_per_epoch(train_size, self.batch_size, world_size)

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
        env = distributed.environment()  # under torchrun a run takes fewer, larger global steps
        world_size = 1 if env is None else env.world_size
        return Trainer(
            model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            callbacks=[*callbacks, *self.callbacks(train_size, world_size)],
            **kwargs,
        )


TUTORIAL = Recipe(batch_size=32, epochs=50, lr=1e-3)
"""The classic tutorial: batches of 32, Adam 1e-3, 50 epochs."""

FAST = Recipe(batch_size=256, epochs=3, lr=2e-2, schedule="one_cycle")
"""Batches of 256, Adam with a one-cycle schedule peaking at 2e-2, 3 epochs."""

RECIPES: dict[str, Recipe] = {"tutorial": TUTORIAL, "fast": FAST}
"""The recipes by name, as ``examples/mnist_lstm.py --recipe`` offers them."""
