"""The training loop: fit, evaluate, predict; one readable loop with callbacks."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed
from ._checks import positive_int
from ._files import CheckpointError, to_cpu
from ._interrupt import DeferredInterrupt
from ._loader_order import LoaderOrder, epoch_seed
from ._model_record import check_model_record, model_record
from .callbacks import Callback, Checkpoint, StepOutput
from .checkpoint import load_checkpoint
from .data import (
    Batch,
    DatasetSource,
    LengthBucketing,
    LoaderSource,
    TensorSource,
    _is_x,
    _warn_if_one_class,
    as_source,
    epoch_plan,
)
from .history import History, Record
from .normalization import fit_standardizers
from .progress import _default_callbacks

__all__ = ["DivergenceError", "TrainState", "Trainer", "resolve_device"]

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFunction = Callable[[Tensor, Tensor], Tensor]
Source = TensorSource | DatasetSource | LoaderSource


class DivergenceError(FloatingPointError):
    """Training produced a NaN or Inf loss (or weight); the message names the epoch and step."""


@dataclass
class TrainState:
    """All the state of a run in one place: what a checkpoint must hold to continue it.

    Attributes:
        seed: the shuffling seed; epoch ``e``'s order depends only on ``(seed, e)``.
        epoch: index of the current epoch (= epochs completed when between epochs).
        step: optimizer steps taken in all.
        batch_in_epoch: batches done in the current epoch (for a mid-epoch resume).
        should_stop: set by a callback to stop ``fit`` after the current batch: a pause. A
            stop mid-epoch leaves the epoch open; the next ``fit`` (or a resume from the
            checkpoint saved on the way out) continues it exactly where it stopped.
        finished: set (with ``should_stop``) by a callback that ends the run for good, as
            :class:`~seqclf.callbacks.EarlyStopping` does: a later ``fit`` or resume trains
            no more and logs why.
        epoch_done: the current epoch's batches, evaluation and record are done; the next
            epoch starts when ``fit`` continues (a checkpoint saved at an epoch's end).
        epoch_loss_sum, epoch_correct, epoch_seen: running sums of the current epoch,
            kept on the device between batches (no host sync per step).
        epoch_finite_batches: batches of the current epoch after which ``epoch_loss_sum``
            was still finite; a NaN/Inf loss makes the sum non-finite for good, so this
            counts the batches before the first bad one without a host sync.
    """

    seed: int
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    should_stop: bool = False
    finished: bool = False
    epoch_done: bool = False
    epoch_loss_sum: Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_correct: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    epoch_seen: int = 0
    epoch_finite_batches: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))

    def next_epoch(self) -> None:
        """Close the current epoch: the next one starts at its first batch."""
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_done = False

    def reset_epoch(self, device: torch.device) -> None:
        """Start the running sums of a new epoch."""
        self.batch_in_epoch = 0
        self.epoch_loss_sum = torch.zeros((), device=device)
        self.epoch_correct = torch.zeros((), dtype=torch.int64, device=device)
        self.epoch_seen = 0
        self.epoch_finite_batches = torch.zeros((), dtype=torch.int64, device=device)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; anything else is passed to ``torch.device``."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device; got {type(device).__name__}")
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}") from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device must be one this machine has; got {device!r}, but torch finds no CUDA device "
                             "(device='auto' picks the best available)")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device must be one this machine has; got {device!r}, but it has {count} CUDA "
                             f"device(s): cuda:0 to cuda:{count - 1}")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device must be one this machine has; got {device!r}, but MPS is not available "
                         "(device='auto' picks the best available)")
    return resolved


class Trainer:
    """Train, evaluate and apply a classifier that maps ``(x, lengths)`` to logits.

    Args:
        model: a :class:`SequenceClassifier` or any module with ``forward(x, lengths)``.
        epochs: passes over the training data.
        batch_size: sequences per optimizer step.
        lr: learning rate of the default optimizer (Adam).
        optimizer: a factory taking the model's parameters, e.g.
            ``lambda params: torch.optim.SGD(params, lr=0.1)``; overrides ``lr``.
        seed: makes a run reproducible: the shuffling order and torch's global generator
            (dropout) are derived from it. The initial weights are the caller's: seed
            them with :func:`seqclf.seed_everything` before building the model.
        device: ``"auto"`` (CUDA, then MPS, then CPU), or any ``torch.device``.
        grad_clip_norm: clip the gradients' global norm to this value.
        loss_fn: the training loss, called as ``loss_fn(logits (B, C), labels (B,))`` and
            returning the batch's mean loss; ``None`` is ``nn.CrossEntropyLoss()``. For
            imbalanced classes, ``nn.CrossEntropyLoss(weight=class_weights)``. A module is
            moved to ``device``. ``evaluate`` and ``val_loss`` always report the plain
            cross-entropy, comparable between runs with different losses.
        callbacks: :class:`~seqclf.callbacks.Callback` objects called at each event, in
            order, except that :class:`~seqclf.callbacks.Checkpoint` callbacks run last so
            that they save what the others did at the same event.
        progress: the live progress bar (:class:`~seqclf.progress.ProgressBar`):
            ``None`` shows it when stderr is a terminal and this is the main process,
            ``True`` shows it on the main process even when not a terminal, ``False``
            never. A ``ProgressBar`` given in ``callbacks`` is used instead of the default.
        batching: how training batches are formed: None shuffles (:func:`seqclf.data.epoch_plan`);
            :class:`~seqclf.data.LengthBucketing` groups sequences of similar lengths
            (faster on variable-length data; see ``docs/variable-length.md``).

    Launched by ``torchrun`` with ``WORLD_SIZE`` > 1, the trainer trains data-parallel
    (see ``docs/distributed.md``): ``batch_size`` is per process, each step's global batch is
    ``batch_size * world_size``; every rank takes a disjoint part of each global batch;
    the model is wrapped in ``DistributedDataParallel`` (``trainer.model`` stays the plain
    module); metrics are summed over the ranks, so every rank reports the global figures,
    and only rank 0 (``trainer.is_main_process``) logs.

    Examples:
        >>> from seqclf import SequenceClassifier
        >>> model = SequenceClassifier(input_size=3, hidden_size=8, num_classes=2)
        >>> trainer = Trainer(model, epochs=1, batch_size=4, seed=0)
        >>> history = trainer.fit((torch.randn(8, 5, 3), torch.randint(0, 2, (8,))))
        >>> len(history)
        1
    """

    eval_batch_size: int = 1024
    """Batch size of ``evaluate``/``predict``; larger than training batches for speed."""

    def __init__(
        self,
        model: nn.Module,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-3,
        optimizer: OptimizerFactory | None = None,
        seed: int | None = None,
        device: str | torch.device = "auto",
        grad_clip_norm: float | None = None,
        loss_fn: LossFunction | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        batching: LengthBucketing | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.epochs = positive_int("epochs", epochs)
        self.batch_size = positive_int("batch_size", batch_size)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a positive float; got {lr!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
        if grad_clip_norm is not None and not grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be a positive float or None; got {grad_clip_norm!r}")
        if loss_fn is not None and (isinstance(loss_fn, type) or not callable(loss_fn)):
            raise TypeError(
                "loss_fn must be a loss instance or function called as loss_fn(logits, labels), "
                f"e.g. nn.CrossEntropyLoss(weight=...), or None; got {loss_fn!r}"
            )
        for i, callback in enumerate(callbacks):
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks[{i}] must be a seqclf Callback; got {type(callback).__name__}")
        if batching is not None and not isinstance(batching, LengthBucketing):
            raise TypeError(f"batching must be a LengthBucketing or None; got {type(batching).__name__}")
        self.lr, self.seed, self.grad_clip_norm = float(lr), seed, grad_clip_norm
        self.batching = batching
        env = distributed.environment()
        self.rank, self.world_size = (0, 1) if env is None else (env.rank, env.world_size)
        self.device = resolve_device(device) if env is None else distributed.setup(resolve_device(device), env)
        self.model = model.to(self.device)
        # the module that trains: the model itself, or its DDP wrapper (which broadcasts rank 0's weights)
        self._train_model: nn.Module = self.model if env is None else distributed.wrap(self.model, self.device)
        self.optimizer = (optimizer or self._default_optimizer)(self.model.parameters())
        self.callbacks = sorted(_default_callbacks(callbacks, progress), key=lambda c: isinstance(c, Checkpoint))
        self.train_source: Source | None = None
        """The training data of the current ``fit``, as a batch source (for callbacks)."""
        self.state = TrainState(seed=0 if seed is None else seed)
        self.history = History()
        self.loss_fn: LossFunction = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.to(self.device)  # e.g. the class weights of nn.CrossEntropyLoss(weight=...)
        self._interrupt = DeferredInterrupt()
        self._loader_order: LoaderOrder | None = None  # the generators of the last fit's DataLoader
        self._loader_epoch_states: list[Tensor] = []  # their states at the current epoch's start
        self._loader_resume_states: list[Tensor] | None = None  # their states in a loaded checkpoint
        self._loss_scales: list[float] | None = None  # per batch of the epoch: the rank's share of the global batch
        if env is not None:
            distributed.at_teardown(self._release_process_group)

    def _release_process_group(self) -> None:
        """Drop the DDP wrapper (it holds the process group), so that the group dies before the interpreter."""
        self._train_model = self.model

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (and in a single process): the process that logs, reports and writes files."""
        return self.rank == 0

    @property
    def global_batch_size(self) -> int:
        """Sequences per optimizer step over all processes: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    def _default_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr)

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        train_data: Any,
        eval_data: Any = None,
        *,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for ``epochs`` epochs (those not done yet) and return the history.

        ``train_data`` and ``eval_data`` may be a ``(X, y)`` or ``(X, lengths, y)``
        tuple of tensors or numpy arrays (any float dtype, any integer labels), a
        ``Dataset`` of ``(sequence, label)`` or ``(sequence, length, label)`` items, or a
        ``DataLoader``; see
        :func:`seqclf.data.as_source`. Everything, including the checkpoint named by
        ``resume_from``, is checked before the first step.

        Args:
            resume_from: a checkpoint file (see :class:`~seqclf.callbacks.Checkpoint`) to
                continue from: weights, optimizer, callbacks, history, epoch and step
                within it, and random generators are restored, so the run ends exactly as
                if it had never stopped (same data, batch size and seed; see
                ``docs/reliability.md`` for what is exact on which data path).

        A run a callback paused (``state.should_stop``) continues where it stopped, mid-epoch
        included; a run a callback ended (``state.finished``, e.g. early stopping) trains no
        more: ``fit`` logs a warning saying so and returns the history.

        Raises:
            DivergenceError: a loss became NaN or Inf (checked at each epoch end and
                before each checkpoint save, without a host sync per step).
            KeyboardInterrupt: after Ctrl-C. The first press ends the run after the
                current step: ``on_fit_end`` runs (a ``Checkpoint`` callback saves the run
                there) and the interrupt is raised again so the caller stops too. A second
                press stops at once, saving nothing.
        """
        train = self.train_source = self.as_source(train_data, name="train_data")
        _warn_if_one_class(train, "train_data")
        evaluation = None if eval_data is None else self.as_source(eval_data, name="eval_data")
        order = None
        if isinstance(train, LoaderSource):
            distributed.require_distributed_sampler(train.loader, name="train_data")
            order = LoaderOrder(train.loader)
        if self.batching is not None and not isinstance(train, TensorSource) and self.is_main_process:
            logger.warning("batching=%r applies to in-memory tensor data only; %s batches are shuffled as usual",
                           self.batching, type(train).__name__)
        if resume_from is not None:
            checkpoint = load_checkpoint(resume_from)
            if order is not None:
                _check_loader_resumable(order, checkpoint, self.rank)
            self.load_state_dict(checkpoint)
        else:  # fit the model's input standardisation (if it has an unfitted one) on train_data
            if order is not None and self.state.batch_in_epoch > 0 and not self.state.epoch_done:
                _check_loader_resumable(order, None, self.rank)  # the same trainer continues a paused epoch
            fit_standardizers(self.model, train)
        if self.state.epoch_done:
            self.state.next_epoch()
        if self.state.finished:
            logger.warning(
                "the run ended at epoch %d (step %d): a callback ended it for good (e.g. EarlyStopping), so fit "
                "trains no more; to train on anyway, set trainer.state.finished = False",
                self.state.epoch, self.state.step,
            )
            return self.history
        self._start_run()
        self.state.should_stop = False  # a stop is a pause: fit continues where the last one stopped
        self._loader_order = order
        self._emit("on_fit_start")
        with self._interrupt, order if order is not None else contextlib.nullcontext():
            try:
                while self.state.epoch < self.epochs:
                    record = self.run_epoch(train, evaluation)
                    if record is None:  # stopped mid-epoch: the epoch stays open, to be continued
                        break
                    self.history.append(record)
                    if self.is_main_process:
                        logger.info("epoch %d: %s", record["epoch"], _format_record(record))
                    self.state.epoch_done = True
                    self._emit("on_epoch_end", record)
                    stop = self._agree_to_stop()
                    self.state.next_epoch()
                    if stop:
                        break
            except KeyboardInterrupt:
                if not self._interrupt.forced:
                    logger.warning("interrupted at epoch %d, batch %d (step %d)",
                                   self.state.epoch, self.state.batch_in_epoch, self.state.step)
                    self._emit("on_fit_end")
                raise
            self._emit("on_fit_end")
            self._interrupt.check()  # Ctrl-C during the last epoch's end: saved above, now stop
        return self.history

    def _start_run(self) -> None:
        """Seed a fresh run (a resumed run keeps the state it was given)."""
        if self.state.step > 0 or self.state.epoch > 0 or self.state.batch_in_epoch > 0:
            return
        self.state.should_stop = False
        if self.seed is None:
            # derived from torch's global generator, so seed_everything() makes it reproducible;
            # rank 0's draw is used by all ranks, as the shuffling order must be the same everywhere
            self.state.seed = distributed.broadcast_int(int(torch.randint(0, 2**31 - 1, ()).item()))
        else:
            self.state.seed = self.seed
            torch.manual_seed(self.seed)  # dropout and any other random op in the model
        if self.world_size > 1:
            # each rank its own dropout stream (rank 0's is that of a single-process run with this seed)
            torch.manual_seed(self.state.seed + self.rank)

    def run_epoch(self, train: Source, evaluation: Source | None) -> Record | None:
        """Train one epoch (or its remainder, when resumed) and evaluate; return its record.

        Returns None when a callback stopped the run before the epoch's end: the epoch
        stays open (no record, no evaluation) and the next ``fit`` continues it.
        """
        started = time.perf_counter()
        if self.state.batch_in_epoch == 0:
            self.state.reset_epoch(self.device)
        self._emit("on_epoch_start")
        self._train_model.train()
        for batch in self.epoch_batches(train):
            scale = None if self._loss_scales is None else self._loss_scales[self.state.batch_in_epoch]
            output = self.train_step(batch.to(self.device), loss_scale=scale)
            self.state.step += 1
            self.state.batch_in_epoch += 1
            self._emit("on_batch_end", output)
            if self._agree_to_stop():  # a Ctrl-C during the step stops the run here, between steps
                self.check_finite()
                return None
        self.check_finite()  # one sync per epoch: a diverged run stops before evaluating or saving
        record: Record = {"epoch": self.state.epoch, "step": self.state.step, **self._epoch_metrics()}
        if evaluation is not None:
            metrics = self.evaluate(evaluation)
            self._emit("on_evaluate", metrics)
            record.update({f"val_{key}": value for key, value in metrics.items()})
        record["duration_s"] = time.perf_counter() - started
        return record

    def epoch_batches(self, train: Source) -> Iterator[Batch]:
        """The current epoch's batches, skipping those a resumed run has already done."""
        done = self.state.batch_in_epoch
        state = self.state
        self._loss_scales = None
        if isinstance(train, LoaderSource):
            distributed.set_sampler_epoch(train.loader, state.epoch)
            order = self._loader_order
            if order is not None:
                if done == 0:
                    if self._loader_resume_states is not None:  # a resume at an epoch's start
                        order.set_user_states(self._loader_resume_states)
                    self._loader_epoch_states = order.start_epoch(state.seed, state.epoch, self.rank)
                else:
                    order.replay_epoch(state.seed, state.epoch, self.rank, self._loader_epoch_states)
                self._loader_resume_states = None
            for i, batch in enumerate(train.batches(None)):
                if i >= done:
                    yield batch
            return
        if isinstance(train, DatasetSource):  # the loader's worker seeds: drawn from this, not the global generator
            train.generator = torch.Generator().manual_seed(epoch_seed(state.seed, state.epoch, self.rank))
        lengths = train.lengths_cpu if isinstance(train, TensorSource) else None
        batching = self.batching if lengths is not None else None

        def plan_of(rank: int) -> list[Tensor]:
            if batching is not None and lengths is not None:
                return batching.plan(lengths, self.batch_size, seed=state.seed, epoch=state.epoch,
                                     rank=rank, world_size=self.world_size)
            return epoch_plan(len(train), self.batch_size, seed=state.seed, epoch=state.epoch,
                              rank=rank, world_size=self.world_size)

        plans = [plan_of(rank) for rank in (range(self.world_size) if self.world_size > 1 else [0])]
        plan = plans[self.rank]
        if self.world_size > 1:
            steps = distributed.steps_per_epoch(len(train), self.batch_size, self.world_size)
            steps = min(steps, *(len(part) for part in plans))  # every rank takes the same number of steps
            plan = plan[:steps]
            # each rank's mean loss weighted by its share of the global batch: DDP's average of the
            # gradients is then the gradient of the global batch's mean loss, for any dataset size
            totals = [sum(len(part[i]) for part in plans) for i in range(steps)]
            self._loss_scales = [self.world_size * len(plan[i]) / totals[i] for i in range(steps)]
        yield from train.batches(plan[done:])

    def train_step(self, batch: Batch, loss_scale: float | None = None) -> StepOutput:
        """One optimizer step on ``batch``; adds to the epoch's running sums without a sync.

        ``loss_scale`` multiplies the loss that is back-propagated (not the one reported):
        with several processes, ``world_size`` times this rank's share of the global batch.
        """
        assert batch.y is not None
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._train_model(batch.x, batch.lengths)  # (B, C)
        loss = self.loss_fn(logits, batch.y)
        # under DDP backward also averages the gradients over the ranks
        torch.autograd.backward(loss if loss_scale is None or loss_scale == 1.0 else loss * loss_scale)
        if self.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        loss, logits = loss.detach(), logits.detach()
        state = self.state
        state.epoch_loss_sum = state.epoch_loss_sum + loss * len(batch.y)
        state.epoch_correct = state.epoch_correct + (logits.argmax(dim=1) == batch.y).sum()
        state.epoch_seen += len(batch.y)
        state.epoch_finite_batches = state.epoch_finite_batches + torch.isfinite(state.epoch_loss_sum)
        return StepOutput(loss=loss, logits=logits, batch=batch, batch_index=state.batch_in_epoch)

    def _agree_to_stop(self) -> bool:
        """Whether to stop; raises a held Ctrl-C.

        With several processes all ranks decide together, at the same step: all stop if a
        callback stopped any one of them, and all raise if any one was interrupted (so that
        the checkpoint saved on the way out is a collective every rank reaches).
        """
        state = self.state
        if self.world_size > 1:
            state.should_stop, state.finished, self._interrupt.requested = distributed.any_rank(
                state.should_stop, state.finished, self._interrupt.requested
            )
        self._interrupt.check()
        return state.should_stop or state.finished

    def run_state(self) -> TrainState:
        """The run's state as one process holding all of it would have it.

        Alone, ``self.state`` itself. With several processes, a copy whose running epoch
        sums are summed over the ranks (a collective: every rank must call it), which is
        what a checkpoint stores so that it resumes on any number of processes.
        """
        if self.world_size == 1:
            return self.state
        state = replace(self.state)
        loss_sum, correct, seen = self._sum_over_ranks(
            [float(state.epoch_loss_sum), float(state.epoch_correct), float(state.epoch_seen)]
        )
        state.epoch_loss_sum = torch.tensor(loss_sum, dtype=state.epoch_loss_sum.dtype, device=self.device)
        state.epoch_correct = torch.tensor(round(correct), dtype=torch.int64, device=self.device)
        state.epoch_seen = round(seen)
        return state

    # ------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly, as plain data (tensors on the CPU).

        ``{"model", "optimizer", "trainer", "callbacks", "history", "rng"}``: the model's class
        name, config and weights; the optimizer's class and state; the batch sizes, world
        size and the run state (:class:`TrainState`, its epoch sums over all processes); each
        callback's state; the history; and the random generators of every process (torch,
        CUDA, Python, NumPy, and those deciding a user's ``DataLoader`` order), one entry per
        rank. :func:`seqclf.checkpoint.save_checkpoint` writes it to a file.

        With several processes it is a collective: every rank must call it (each gets all of it).
        """
        state = self.run_state()
        generators = distributed.all_gather_object(self._generator_states())
        values = {f.name: getattr(state, f.name) for f in fields(state)}
        return {
            "model": model_record(self.model),
            "optimizer": {"class": type(self.optimizer).__name__, "state_dict": to_cpu(self.optimizer.state_dict())},
            "trainer": {
                "batch_size": self.batch_size,
                "global_batch_size": self.global_batch_size,
                "world_size": self.world_size,
                "epochs": self.epochs,
                "state": to_cpu(values),
            },
            "callbacks": [{"class": type(c).__name__, "state": to_cpu(c.state_dict())} for c in self.callbacks],
            "history": self.history.to_list(),
            "rng": generators,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put this trainer where :meth:`state_dict` (or a checkpoint file) left off; all or nothing.

        Everything is checked before anything changes: the structure, the global batch
        size, the model's class, config, weight names and shapes, the optimizer's class and
        parameter groups, the run state's fields, the callbacks' and generators' entries.
        If a callback's or the optimizer's ``load_state_dict`` still fails, what was already
        loaded is put back. On the same number of processes each rank gets its own random
        generators back (a resume is bitwise exact); on another number, every rank continues
        rank 0's streams (see ``docs/reliability.md``).

        Raises:
            CheckpointError: naming what does not fit; the trainer is then unchanged.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict from Trainer.state_dict(); got {type(state_dict).__name__}")
        plan = self._check_state_dict(state_dict)
        callbacks_before = [copy.deepcopy(c.state_dict()) for c in self.callbacks]
        optimizer_before = copy.deepcopy(self.optimizer.state_dict())
        try:
            for callback, callback_state in plan.callbacks:
                callback.load_state_dict(callback_state)
            self.optimizer.load_state_dict(copy.deepcopy(plan.optimizer))  # a copy: torch keeps the given tensors
            self.model.load_state_dict(plan.weights)
        except Exception as error:
            for callback, before in zip(self.callbacks, callbacks_before, strict=True):
                callback.load_state_dict(before)
            self.optimizer.load_state_dict(optimizer_before)
            raise CheckpointError(f"checkpoint must load into this trainer; got {type(error).__name__}: {error}. "
                                  "The trainer was left as it was.") from error
        state = self.state
        for name, value in plan.values.items():
            setattr(state, name, value.to(self.device) if isinstance(value, Tensor) else value)
        if not self.is_main_process:
            # the stored epoch sums are over all ranks: rank 0 carries them on, the others start at zero
            state.epoch_loss_sum = torch.zeros_like(state.epoch_loss_sum)
            state.epoch_correct = torch.zeros_like(state.epoch_correct)
            state.epoch_seen = 0
        self.history.clear()
        self.history.extend(dict(record) for record in plan.history)
        self._set_generator_states(plan.generators, plan.same_world)
        logger.info("resumed at epoch %d, batch %d (step %d)", state.epoch, state.batch_in_epoch, state.step)

    def _check_state_dict(self, data: dict[str, Any]) -> _LoadPlan:
        """Check all of ``data`` against this trainer; what to load, or a CheckpointError."""
        for key, kind in (("model", dict), ("optimizer", dict), ("trainer", dict), ("callbacks", list),
                          ("history", list), ("rng", (list, dict))):
            if not isinstance(data.get(key), kind):
                raise CheckpointError(
                    f"checkpoint is not a valid seqclf checkpoint: {key!r} must be "
                    f"{'a list' if kind is list else 'a dict' if kind is dict else 'a list or a dict'}; "
                    f"got {type(data.get(key)).__name__}"
                )
        saved = data["trainer"]
        if saved.get("global_batch_size") != self.global_batch_size:
            raise CheckpointError(
                "batch_size * processes must equal the checkpoint's global batch to resume its epochs "
                f"exactly: expected {saved.get('global_batch_size')!r} (batch_size {saved.get('batch_size')!r} "
                f"on {saved.get('world_size')!r} processes); got {self.global_batch_size} "
                f"(batch_size {self.batch_size} on {self.world_size})"
            )
        weights = check_model_record(self.model, data["model"])
        optimizer = _check_optimizer(self.optimizer, data["optimizer"])
        values = _check_train_state(saved.get("state"))
        callbacks = _match_callbacks(self.callbacks, data["callbacks"])
        history = data["history"]
        if not all(isinstance(record, dict) for record in history):
            raise CheckpointError("checkpoint 'history' must be a list of dicts (one per epoch)")
        entries = data["rng"] if isinstance(data["rng"], list) else [data["rng"]]  # format 1: one entry
        same_world = len(entries) == self.world_size
        mine = entries[self.rank] if same_world else entries[0] if entries else None
        if not isinstance(mine, dict) or not isinstance(mine.get("torch"), Tensor) or "python" not in mine \
                or not isinstance(mine.get("numpy"), dict):
            raise CheckpointError(
                "checkpoint 'rng' must hold each process's generator states (a dict with 'torch', 'python' and "
                f"'numpy'); got {type(mine).__name__} for rank {self.rank if same_world else 0}"
            )
        return _LoadPlan(weights, optimizer, values, callbacks, history, mine, same_world)

    def _generator_states(self) -> dict[str, Any]:
        """This process's random generators (and a user's DataLoader's, at the epoch's start and now)."""
        _, key, position, has_gauss, cached = np.random.get_state(legacy=True)
        states: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": {"key": [int(k) for k in key], "pos": int(position), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "loader_epoch_start": list(self._loader_epoch_states),
            "loader_now": [] if self._loader_order is None else self._loader_order.user_states(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def _set_generator_states(self, states: dict[str, Any], same_world: bool) -> None:
        torch.set_rng_state(states["torch"])
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy = states["numpy"]
        np.random.set_state(
            ("MT19937", np.array(numpy["key"], dtype=np.uint32), numpy["pos"], numpy["has_gauss"],
             numpy["cached_gaussian"])
        )
        cuda = states.get("cuda")
        if cuda is not None and torch.cuda.is_available():
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            else:
                logger.warning("checkpoint has RNG states of %d CUDA devices; this machine has %d: not restored",
                               len(cuda), torch.cuda.device_count())
        self._loader_epoch_states = list(states.get("loader_epoch_start", []))
        self._loader_resume_states = list(states.get("loader_now", [])) or None
        if not same_world:
            if self.rank > 0:  # rank 0's stream continues on rank 0; the others draw their own
                torch.manual_seed(epoch_seed(self.state.seed, self.state.step, self.rank))
            if self.is_main_process:
                logger.warning(
                    "resuming on %d process(es) a run saved on another number: the data order and the steps are "
                    "the same, but random layers (dropout) draw other numbers than the uninterrupted run, and the "
                    "sums are in another order, so the result matches it to float tolerance only",
                    self.world_size,
                )

    def check_finite(self) -> None:
        """Raise :class:`DivergenceError` if a loss of this epoch or a weight is NaN or Inf.

        One host sync. The trainer calls it at each epoch end; a ``Checkpoint`` calls it
        before each save, so a diverged model is never saved.
        """
        state = self.state
        parameters = [(name, p.detach()) for name, p in self.model.named_parameters()]
        checks = [torch.isfinite(state.epoch_loss_sum).to(self.device)]
        checks += [torch.isfinite(p).all().to(self.device) for _, p in parameters]
        finite = torch.stack(checks)  # (1 + P,)
        if bool(finite.all()):
            return
        if not bool(finite[0]):
            batch = int(state.epoch_finite_batches)
            step = state.step - state.batch_in_epoch + batch + 1
            raise DivergenceError(
                f"training diverged: the loss must stay finite; got NaN or Inf at epoch {state.epoch}, "
                f"batch {batch} (step {step}). Nothing was saved after it. Try a lower lr or grad_clip_norm."
            )
        bad = [name for (name, _), ok in zip(parameters, finite[1:].tolist(), strict=True) if not ok]
        raise DivergenceError(
            f"training diverged: the weights must stay finite; got NaN or Inf in {bad} after step {state.step} "
            f"(epoch {state.epoch}, batch {state.batch_in_epoch - 1}). Nothing was saved after it."
        )

    def _epoch_metrics(self) -> dict[str, float]:
        state = self.run_state()  # the sums over all processes
        seen = max(state.epoch_seen, 1)
        return {"train_loss": float(state.epoch_loss_sum) / seen, "train_accuracy": float(state.epoch_correct) / seen}

    def _sum_over_ranks(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes, in one all-reduce (``values`` itself when alone)."""
        if self.world_size == 1:
            return values
        summed = distributed.all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device))
        return [float(value) for value in summed.tolist()]

    # ------------------------------------------------------- evaluation
    def evaluate(self, data: Any) -> dict[str, float]:
        """Mean loss and accuracy on labelled ``data``: ``{"loss", "accuracy", "samples"}`` (samples: an int).

        With several processes, every rank must call it: each evaluates a disjoint part
        of ``data`` and the sums are all-reduced, so all ranks return the figures of the
        whole of ``data``. A ``DataLoader`` is split only by its own ``DistributedSampler``;
        any other ``DataLoader`` is evaluated whole on every rank.
        """
        source = self.as_source(data, name="data")
        shard = self.world_size > 1 and (
            not isinstance(source, LoaderSource) or distributed.has_distributed_sampler(source.loader)
        )
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for batch, logits in self._infer(source, shard=shard):
            if batch.y is None:
                raise ValueError("data must be labelled to be evaluated; got sequences without labels")
            loss_sum += nn.functional.cross_entropy(logits, batch.y, reduction="sum")
            correct += (logits.argmax(dim=1) == batch.y).sum()
            seen += len(batch.y)
        sums = [float(loss_sum), float(correct), float(seen)]
        loss, right, total = self._sum_over_ranks(sums) if shard else sums
        return {"loss": loss / max(total, 1), "accuracy": right / max(total, 1), "samples": round(total)}

    def predict(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        """Class indices ``(N,)`` (int64, on the CPU) for the sequences in ``data``.

        ``data`` is a tensor or array ``X`` ``(N, T, F)`` (with optional ``lengths`` ``(N,)``), a
        list of ``(T_i, F)`` sequences, or anything ``fit`` accepts (its labels are then
        ignored). Each process predicts all of ``data`` by itself (no communication between
        processes).
        """
        return torch.cat([logits.argmax(dim=1).cpu() for _, logits in self._infer_any(data, lengths)])

    def predict_proba(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities ``(N, num_classes)`` (float, on the CPU); see :meth:`predict`."""
        return torch.cat([logits.softmax(dim=1).cpu() for _, logits in self._infer_any(data, lengths)])

    def _infer_any(self, data: Any, lengths: Tensor | None) -> Iterator[tuple[Batch, Tensor]]:
        if _is_x(data):  # a tensor or array X, or a list of sequences
            source = self.as_source((data,) if lengths is None else (data, lengths), labelled=False)
        elif lengths is not None:
            raise TypeError(f"lengths may be given only with a tensor X; got data of type {type(data).__name__}")
        else:
            source = self.as_source(data)
        return self._infer(source)

    def _infer(self, source: Source, shard: bool = False) -> Iterator[tuple[Batch, Tensor]]:
        """Logits of every batch of ``source`` in order (with ``shard``: of this rank's part only)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                plan = None
                if not isinstance(source, LoaderSource):
                    rank, world_size = (self.rank, self.world_size) if shard else (0, 1)
                    plan = epoch_plan(len(source), self.eval_batch_size, seed=None, rank=rank, world_size=world_size)
                for batch in source.batches(plan):
                    batch = batch.to(self.device)
                    yield batch, self.model(batch.x, batch.lengths)
        finally:
            self.model.train(was_training)

    # ---------------------------------------------------------- helpers
    def as_source(self, data: Any, *, name: str = "data", labelled: bool = True) -> Source:
        """Check ``data`` and wrap it as a batch source on this trainer's device."""
        if _is_source(data):
            return data  # type: ignore[no-any-return]
        config = getattr(self.model, "config", None)
        return as_source(
            data,
            self.device,
            input_size=getattr(config, "input_size", None),
            num_classes=getattr(config, "num_classes", None),
            labelled=labelled,
            name=name,
            dtype=next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None),
        )

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def __repr__(self) -> str:
        return (
            f"Trainer(model={type(self.model).__name__}, epochs={self.epochs}, "
            f"batch_size={self.batch_size}, lr={self.lr}, optimizer={type(self.optimizer).__name__}, "
            f"seed={self.seed}, device={str(self.device)!r}, grad_clip_norm={self.grad_clip_norm}, "
            f"callbacks={self.callbacks!r})"
        )


def _is_source(data: Any) -> bool:
    return isinstance(data, (TensorSource, DatasetSource, LoaderSource))


def _format_record(record: Record) -> str:
    return ", ".join(
        f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in record.items()
        if key != "epoch"
    )



@dataclass
class _LoadPlan:
    """What :meth:`Trainer.load_state_dict` loads, once all of it has been checked."""

    weights: dict[str, Any]
    optimizer: dict[str, Any]
    values: dict[str, Any]
    callbacks: list[tuple[Callback, dict[str, Any]]]
    history: list[dict[str, Any]]
    generators: dict[str, Any]
    same_world: bool


def _check_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    if saved.get("class") != type(optimizer).__name__:
        raise CheckpointError(
            f"optimizer must be a {saved.get('class')} like the checkpoint's; got {type(optimizer).__name__}"
        )
    state_dict = saved.get("state_dict")
    groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
    if not (isinstance(state_dict, dict) and isinstance(groups, list) and isinstance(state_dict.get("state"), dict)):
        raise CheckpointError("checkpoint optimizer state must be a dict with 'state' and 'param_groups'")
    ours = [len(group["params"]) for group in optimizer.param_groups]
    theirs = [len(group.get("params", [])) if isinstance(group, dict) else -1 for group in groups]
    if ours != theirs:
        raise CheckpointError(
            "checkpoint optimizer state must fit this trainer's optimizer: parameter groups of "
            f"{theirs} parameters; got groups of {ours}"
        )
    known = {index for group in groups for index in group["params"]}
    unknown = sorted(str(index) for index in state_dict["state"] if index not in known)
    if unknown:
        raise CheckpointError(f"checkpoint optimizer state holds parameters {unknown} that are in none of its groups")
    return state_dict


def _check_train_state(values: object) -> dict[str, Any]:
    defaults = TrainState(seed=0)
    known = {f.name for f in fields(defaults)}
    if not isinstance(values, dict):
        raise CheckpointError(f"checkpoint trainer 'state' must be a dict; got {type(values).__name__}")
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"checkpoint trainer state must have fields among {sorted(known)}; got unknown fields {unknown}"
        )
    missing = sorted({"seed", "epoch", "step"} - set(values))
    if missing:
        raise CheckpointError(f"checkpoint trainer state must have the fields {missing}; got none")
    for name, value in values.items():
        expected = type(getattr(defaults, name))
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CheckpointError(
                f"checkpoint trainer state {name} must be a {expected.__name__}; got {type(value).__name__}"
            )
    # fields a format-1 checkpoint lacks keep their defaults
    return {**{f.name: getattr(defaults, f.name) for f in fields(defaults) if f.name in ("finished", "epoch_done")},
            **values}


def _match_callbacks(callbacks: Sequence[Callback], saved: list[Any]) -> list[tuple[Callback, dict[str, Any]]]:
    """Each callback with the saved state of the same class and rank among callbacks of that class."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for index, entry in enumerate(saved):
        if not isinstance(entry, dict) or not isinstance(entry.get("state", {}), dict):
            raise CheckpointError(f"checkpoint callbacks[{index}] must be a dict with 'class' and a 'state' dict")
        by_class.setdefault(str(entry.get("class")), []).append(entry.get("state") or {})
    pairs = []
    for callback in callbacks:
        states = by_class.get(type(callback).__name__, [])
        if states:
            pairs.append((callback, states.pop(0)))
        elif callback.state_dict():
            logger.warning("%r has no state in the checkpoint; it starts afresh", callback)
    for name, states in by_class.items():
        if any(states):
            logger.warning("the checkpoint holds the state of a %s callback this trainer does not have", name)
    return pairs


def _check_loader_resumable(order: LoaderOrder, checkpoint: dict[str, Any] | None, rank: int) -> None:
    """Refuse a mid-epoch resume on a DataLoader whose order cannot be replayed; say why."""
    if checkpoint is None:
        mid_epoch = True
        users = None
    else:
        values = checkpoint.get("trainer", {}).get("state", {}) if isinstance(checkpoint.get("trainer"), dict) else {}
        mid_epoch = isinstance(values, dict) and bool(values.get("batch_in_epoch")) and not values.get("epoch_done")
        entries = checkpoint.get("rng")
        entry = entries[rank] if isinstance(entries, list) and rank < len(entries) else entries
        users = entry.get("loader_epoch_start") if isinstance(entry, dict) else None
    if not mid_epoch:
        return
    if order.unknown is not None:
        raise CheckpointError(
            f"train_data's DataLoader must have a sampler whose order the trainer can replay to resume mid-epoch; "
            f"got a {order.unknown}, which may draw its order from a generator it does not expose. Resume from a "
            "checkpoint saved at an epoch's end (Checkpoint(every_n_epochs=1)), or use a RandomSampler, "
            "SequentialSampler or DistributedSampler, or pass the Dataset itself."
        )
    if users is not None and len(users) != len(order.users):
        raise CheckpointError(
            f"train_data's DataLoader must have the same generators as the checkpoint's to resume mid-epoch: "
            f"the checkpoint holds {len(users)}; this loader and its sampler were given {len(order.users)}"
        )
