from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from seqclf import SequenceClassifier
from seqclf.callbacks import LRScheduler
from seqclf.recipes import FAST, RECIPES, TUTORIAL, Recipe

from .conftest import make_sequences


def test_the_tutorial_recipe_is_the_tutorials() -> None:
    assert (TUTORIAL.batch_size, TUTORIAL.epochs, TUTORIAL.lr, TUTORIAL.schedule) == (32, 50, 1e-3, "constant")
    assert TUTORIAL.callbacks(1000) == []
    assert RECIPES == {"tutorial": TUTORIAL, "fast": FAST}


def test_recipes_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAST.lr = 1.0  # type: ignore[misc]


def test_steps_count_the_last_partial_batch() -> None:
    assert Recipe(batch_size=256, epochs=2).steps(60_000) == 2 * 235


def test_one_cycle_trainer_follows_the_recipe() -> None:
    recipe = Recipe(batch_size=8, epochs=2, lr=0.05, schedule="one_cycle", warmup=0.25)
    x, y = make_sequences(30)  # 4 batches per epoch, the last one partial
    trainer = recipe.trainer(SequenceClassifier(3, 8, 2), len(x), seed=0, device="cpu")
    assert (trainer.epochs, trainer.batch_size, trainer.lr) == (2, 8, 0.05)
    [schedule] = [callback for callback in trainer.callbacks if isinstance(callback, LRScheduler)]
    trainer.fit((x, y))
    scheduler = schedule.scheduler
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert scheduler.total_steps == 8 and scheduler.last_epoch == 8  # the whole cycle, no more
    lr = trainer.optimizer.param_groups[0]
    assert lr["max_lr"] == 0.05 and lr["lr"] < 0.05 / 10  # annealed


def test_user_callbacks_come_before_the_schedule() -> None:
    from seqclf import Callback

    user = Callback()
    trainer = FAST.trainer(SequenceClassifier(3, 8, 2), 100, callbacks=[user], device="cpu")
    assert trainer.callbacks[0] is user and isinstance(trainer.callbacks[1], LRScheduler)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int; got 0"),
        ({"epochs": 1.5}, ValueError, "epochs must be a positive int; got 1.5"),
        ({"lr": -1.0}, ValueError, "lr must be a positive float; got -1.0"),
        ({"schedule": "cosine"}, ValueError, r"schedule must be one of \('constant', 'one_cycle'\); got 'cosine'"),
        ({"warmup": 1.0}, ValueError, r"warmup must be a float in \(0, 1\); got 1.0"),
    ],
)
def test_recipe_validation(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Recipe(**kwargs)


def test_steps_count_global_batches_under_several_processes() -> None:
    recipe = Recipe(batch_size=16, epochs=2)
    assert recipe.steps(97) == 2 * 7
    assert recipe.steps(97, world_size=2) == 2 * 3  # global batches of 32; a tail smaller than the world is skipped
