"""Callbacks: small objects the trainer calls at six points of a run.

A callback overrides any of the no-op methods of :class:`Callback`. It pauses training
by setting ``trainer.state.should_stop = True`` (``fit`` returns after the current batch;
the next ``fit``, or a resume from the checkpoint saved then, continues exactly where it
stopped, mid-epoch included); it ends the run for good by also setting
``trainer.state.finished = True``, as :class:`EarlyStopping` does (a later ``fit`` or
resume trains no more, and logs why). A stateful callback implements
``state_dict``/``load_state_dict`` so that a resumed run resumes it too.

``every_n_steps`` means the same in every callback: every ``n`` optimizer steps counted
over the whole run (``trainer.state.step``: ``n``, ``2n``, ...), never restarting at an epoch.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler as TorchLRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau

from . import distributed
from .checkpoint import (
    checkpoint_files,
    checkpoint_name,
    remove_temporary_files,
    save_checkpoint,
    step_of,
)
from .data import Batch
from .history import Record

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "LRScheduler", "PeriodicEvaluation", "StepOutput"]

if TYPE_CHECKING:
    from .trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What one training step produced; tensors stay on the device (read them sparingly).

    Attributes:
        loss: the batch's mean loss, a 0-d tensor, detached.
        logits: ``(B, C)`` logits, detached.
        batch: the batch the step trained on.
        batch_index: the batch's index within the epoch (0-based).
    """

    loss: Tensor
    logits: Tensor
    batch: Batch
    batch_index: int


class Callback:
    """Base class: every event is a no-op; override the ones you need."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step of ``fit`` (also of a resumed fit)."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Before the first batch of an epoch (``trainer.state.epoch`` is its index)."""

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        """After each optimizer step (``trainer.state.step`` counts steps in all)."""

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After the end-of-epoch evaluation of ``eval_data``."""

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        """After an epoch; ``record`` is the entry just added to ``trainer.history``."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch, or after training was stopped."""

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state to store in a checkpoint (stateless callbacks return ``{}``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        On a resumed fit this is called before ``on_fit_start``; a callback that builds
        objects in ``on_fit_start`` should keep the state and apply it there.
        """


class EarlyStopping(Callback):
    """Stop when a monitored metric has not improved for ``patience`` epochs.

    Args:
        monitor: a key of the epoch record, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping.
        mode: ``"min"`` if smaller is better, ``"max"`` if larger is better.
        min_delta: the smallest change that counts as an improvement.
        restore_best_weights: at the end of the epoch that ends the fit (stopped early or
            not), load the model weights of the best epoch back into the model, before any
            ``Checkpoint`` saves, so the last checkpoint holds the weights the fit returns. The best weights are
            part of this callback's state, so a resumed run restores them too.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        mode: Literal["min", "max"] = "min",
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1; got {patience!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0; got {min_delta!r}")
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"restore_best_weights must be a bool; got {restore_best_weights!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.best_epoch: int | None = None
        self.best_weights: dict[str, Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        value = record.get(self.monitor)
        if not isinstance(value, (int, float)):
            raise KeyError(
                f"EarlyStopping monitor must name a numeric key of the epoch record "
                f"{sorted(record)}; got {self.monitor!r}"
            )
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.bad_epochs, self.best_epoch = float(value), 0, trainer.state.epoch
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            self._restore_if_last(trainer)
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            if trainer.is_main_process:
                logger.info("early stopping: %s did not improve for %d epochs", self.monitor, self.patience)
            trainer.state.should_stop = trainer.state.finished = True  # an end, not a pause
        self._restore_if_last(trainer)

    def _restore_if_last(self, trainer: Trainer) -> None:
        """Put the best weights back when this epoch ends the run.

        It happens here, at the epoch's end, rather than in ``on_fit_end``, so that a
        ``Checkpoint`` (which runs after every other callback) saves the weights the fit
        returns. A paused or interrupted run keeps its current weights, so that it resumes exactly.
        """
        last = trainer.state.finished or trainer.state.epoch + 1 >= trainer.epochs
        if self.restore_best_weights and self.best_weights is not None and last:
            trainer.model.load_state_dict(self.best_weights)
            if trainer.is_main_process:
                logger.info("restored the weights of epoch %s (%s=%.4g)", self.best_epoch, self.monitor, self.best)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": self.best, "bad_epochs": self.bad_epochs, "best_epoch": self.best_epoch}
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
        best_epoch = state.get("best_epoch")
        self.best_epoch = None if best_epoch is None else int(best_epoch)
        self.best_weights = state.get("best_weights")

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, mode={self.mode!r}, "
            f"restore_best_weights={self.restore_best_weights})"
        )


class PeriodicEvaluation(Callback):
    """Evaluate on a (small) held-out set every ``every_n_steps`` optimizer steps.

    This is the classic tutorial's "every 10 steps, test on 200 images" loop. The data
    is checked and moved to the device once, at fit start; evaluation runs under
    ``torch.inference_mode()`` and reads the step's loss only when it reports. With several
    processes, all of them evaluate (each a part of ``data``), the step's loss is averaged
    over them, and only the main process reports.

    Args:
        data: anything ``Trainer.evaluate`` accepts.
        every_n_steps: evaluate after optimizer steps ``n, 2n, 3n, ...`` counted over the whole
            run (``trainer.state.step``), like :class:`Checkpoint`'s ``every_n_steps``.
        report: called with each result, a dict with ``epoch``, ``batch``, ``step``,
            ``train_loss``, ``loss`` and ``accuracy``; by default results are logged.
    """

    def __init__(
        self,
        data: Any,
        every_n_steps: int = 10,
        report: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an int >= 1; got {every_n_steps!r}")
        self.data, self.every_n_steps, self.report = data, every_n_steps, report
        self.results: list[dict[str, float]] = []
        self._source: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self._source = trainer.as_source(self.data, name="PeriodicEvaluation data")

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        if trainer.state.step % self.every_n_steps != 0:
            return
        metrics = trainer.evaluate(self._source)
        result = {
            "epoch": trainer.state.epoch,
            "batch": output.batch_index,
            "step": trainer.state.step,
            "train_loss": float(distributed._all_reduce_mean(output.loss)),
            "loss": metrics["loss"],
            "accuracy": metrics["accuracy"],
        }
        self.results.append(result)
        if not trainer.is_main_process:
            return
        if self.report is not None:
            self.report(result)
        else:
            logger.info(
                "epoch %d batch %d: train loss %.4f, eval accuracy %.4f",
                trainer.state.epoch, output.batch_index, result["train_loss"], result["accuracy"],
            )

    def __repr__(self) -> str:
        return f"PeriodicEvaluation(every_n_steps={self.every_n_steps})"


class Checkpoint(Callback):
    """Save the run so that a crash, a Ctrl-C or a full disk loses at most one interval.

    Each save is one file, ``directory/step-00000120.pt`` (the optimizer step), holding
    everything :meth:`Trainer.fit(..., resume_from=path) <seqclf.Trainer.fit>` needs to
    continue exactly; :func:`seqclf.checkpoint.latest_checkpoint` finds the newest.
    Saves are atomic (see :mod:`seqclf.checkpoint`): a failed save raises ``OSError`` and
    leaves the earlier files intact. A run with a NaN/Inf loss is never saved.

    A save also happens when ``fit`` ends (finished, stopped early, or interrupted by
    Ctrl-C) unless that step is saved already. The trainer runs ``Checkpoint`` callbacks
    after the others, so a save includes what the other callbacks did at that event. In
    multi-process training only the main process (``trainer.is_main_process``) writes.

    Args:
        directory: where to save; created if missing. A new run refuses a directory that
            already holds checkpoints (resume from them, or choose another directory);
            files not named like a checkpoint are never touched.
        every_n_steps: also save every ``n`` optimizer steps (counted over the whole run:
            after steps ``n, 2n, ...``), mid-epoch; None: don't.
        every_n_epochs: save after every ``n``-th epoch; None: don't.
        keep_last: how many checkpoints to keep, deleting the oldest; None keeps all.

    Examples:
        >>> trainer = Trainer(model, epochs=50, callbacks=[Checkpoint("runs/lstm", every_n_steps=500)])
        >>> trainer.fit(train, resume_from=latest_checkpoint("runs/lstm"))  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        keep_last: int | None = 3,
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str or os.PathLike; got {type(directory).__name__}")
        for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs),
                            ("keep_last", keep_last)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1 or None; got {value!r}")
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"directory must be a directory; got the file {str(self.directory)!r}")
        self.every_n_steps, self.every_n_epochs, self.keep_last = every_n_steps, every_n_epochs, keep_last
        self.last_path: Path | None = None
        self._saved_step = -1

    def on_fit_start(self, trainer: Trainer) -> None:
        self._saved_step = trainer.state.step
        if not trainer.is_main_process:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in remove_temporary_files(self.directory):
            logger.warning("removed %s, left by a save that was cut short", path)
        existing = checkpoint_files(self.directory)
        step = trainer.state.step
        later = [path.name for path in existing if step_of(path) > step]
        if (existing and step == 0) or later:
            found = later or [path.name for path in existing]
            raise FileExistsError(
                f"Checkpoint directory {str(self.directory)!r} must not hold checkpoints "
                f"{'of another run' if step == 0 else f'from later than the resumed step {step}'}; got {found}. "
                "Resume from its newest (fit(..., resume_from=latest_checkpoint(directory))), "
                "or move those files, or choose another directory."
            )

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        if self.every_n_steps is not None and trainer.state.step % self.every_n_steps == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        if self.every_n_epochs is not None and (trainer.state.epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        if trainer.state.step != self._saved_step:
            self.save(trainer)

    def save(self, trainer: Trainer) -> Path | None:
        """Save now (after checking the run has not diverged); return the file, or None off the main process.

        With several processes every rank must call it (``trainer.state_dict()`` is a collective).
        """
        state = trainer.state_dict()  # every rank: the epoch's sums and every rank's generators
        self._saved_step = trainer.state.step  # on every rank, so that all ranks agree on the next save
        if not trainer.is_main_process:
            return None
        trainer.check_finite()
        path = self.directory / checkpoint_name(trainer.state.step)
        # the name holds the step: a file of this name is this run's own save of this step
        save_checkpoint(state, path, overwrite=True)
        self.last_path = path
        if self.keep_last is not None:
            for old in checkpoint_files(self.directory)[: -self.keep_last]:
                old.unlink(missing_ok=True)
        return path

    def __repr__(self) -> str:
        return (
            f"Checkpoint({str(self.directory)!r}, every_n_steps={self.every_n_steps}, "
            f"every_n_epochs={self.every_n_epochs}, keep_last={self.keep_last})"
        )


SchedulerFactory = Callable[[torch.optim.Optimizer], TorchLRScheduler]


class LRScheduler(Callback):
    """Drive a torch learning-rate scheduler from the training loop; resumable.

    The scheduler is built at fit start from the trainer's optimizer (so a callback can be
    declared before the trainer exists) and stepped after every optimizer step, or after
    every epoch with ``interval="epoch"``. Its state is this callback's state: a
    checkpoint that stores ``state_dict()`` resumes the schedule where it stopped.

    Args:
        factory: takes the optimizer and returns a ``torch.optim.lr_scheduler.LRScheduler``.
        interval: ``"step"`` (after each batch) or ``"epoch"`` (after each epoch).

    Examples:
        >>> from torch.optim.lr_scheduler import OneCycleLR
        >>> schedule = LRScheduler(lambda opt: OneCycleLR(opt, max_lr=1e-2, total_steps=1000))
    """

    def __init__(self, factory: SchedulerFactory, interval: Literal["step", "epoch"] = "step") -> None:
        if not callable(factory):
            raise TypeError(f"factory must be a callable taking the optimizer; got {type(factory).__name__}")
        if interval not in ("step", "epoch"):
            raise ValueError(f"interval must be 'step' or 'epoch'; got {interval!r}")
        self.factory, self.interval = factory, interval
        self.scheduler: TorchLRScheduler | None = None
        self._pending: dict[str, Any] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.scheduler is not None and self.scheduler.optimizer is trainer.optimizer:
            return  # a second fit() continues the same schedule
        # building a scheduler resets the optimizer's hyperparameters to the schedule's start
        # (OneCycleLR also cycles Adam's beta1): a resumed run keeps the restored ones
        saved_groups = [
            {key: value for key, value in group.items() if key != "params"} for group in trainer.optimizer.param_groups
        ]
        scheduler = self.factory(trainer.optimizer)
        if isinstance(scheduler, ReduceLROnPlateau) or not isinstance(scheduler, TorchLRScheduler):
            raise TypeError(
                "factory must return a torch.optim.lr_scheduler.LRScheduler stepped without a metric "
                f"(ReduceLROnPlateau is not supported); got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler
        if self._pending is not None:
            for group, saved in zip(trainer.optimizer.param_groups, saved_groups, strict=True):
                group.update(saved)
            self._restore(self._pending)
            self._pending = None

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        if self.interval == "step" and self.scheduler is not None:
            self.scheduler.step()

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        if self.interval == "epoch" and self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        if self.scheduler is None:
            return {} if self._pending is None else dict(self._pending)
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.scheduler is None:
            self._pending = dict(state)  # applied when fit builds the scheduler
        else:
            self._restore(state)

    def _restore(self, state: dict[str, Any]) -> None:
        assert self.scheduler is not None
        self.scheduler.load_state_dict(state)
        for group, lr in zip(self.scheduler.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr

    def __repr__(self) -> str:
        name = type(self.scheduler).__name__ if self.scheduler is not None else getattr(self.factory, "__name__", "?")
        return f"LRScheduler({name}, interval={self.interval!r})"
