"""The training loop: fit, evaluate, predict; one readable loop with callbacks.

A batch's path, top to bottom: :meth:`Trainer.fit` runs epochs; :meth:`Trainer.run_epoch`
draws the epoch's batches (:meth:`Trainer.epoch_batches`, planned by :mod:`seqclf.batching`)
and calls :meth:`Trainer.train_step` on each: forward, loss, backward, optimizer step.
Saving and restoring a run lives in ``_run_state``; the data-parallel setup in
:mod:`seqclf.distributed`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from ._checks import positive_int
from ._inference import Source, batch_logits, evaluation_sums, inference_source, model_source
from ._interrupt import DeferredInterrupt
from ._loader_order import LoaderOrder, LoaderReplay, epoch_seed
from ._run_state import Run, TrainState, check_loader_resumable, global_state, load_run, save_run, start_run
from .batching import LengthBucketing, rank_plan
from .callbacks import Callback, Checkpoint, StepOutput
from .checkpoint import load_checkpoint
from .data import Batch, DatasetSource, LoaderSource, TensorSource
from .distributed import resolve_device as resolve_device  # importable from here as before
from .history import History, Record
from .input_statistics import fit_standardizers
from .progress import default_callbacks

__all__ = ["DivergenceError", "TrainState", "Trainer"]

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFunction = Callable[[Tensor, Tensor], Tensor]


class DivergenceError(FloatingPointError):
    """Training produced a NaN or Inf loss (or weight); the message names the epoch and step."""


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
        batching: how training batches are formed: None shuffles (:func:`seqclf.batching.epoch_plan`);
            :class:`~seqclf.batching.LengthBucketing` groups sequences of similar lengths
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
        self.lr, self.seed, self.grad_clip_norm, self.batching = float(lr), seed, grad_clip_norm, batching
        self.device, env = distributed.setup_device(device)
        self.rank, self.world_size = (0, 1) if env is None else (env.rank, env.world_size)
        self.model = model.to(self.device)
        # the module that trains: the model itself, or its DDP wrapper (which broadcasts rank 0's weights)
        self._train_model: nn.Module = self.model if env is None else distributed.wrap(self.model, self.device)
        self.optimizer = (optimizer or self._default_optimizer)(self.model.parameters())
        self.callbacks = sorted(default_callbacks(callbacks, progress), key=lambda c: isinstance(c, Checkpoint))
        self.train_source: Source | None = None
        """The training data of the current ``fit``, as a batch source (for callbacks)."""
        self.state = TrainState(seed=0 if seed is None else seed)
        self.history = History()
        self.loss_fn: LossFunction = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.to(self.device)  # e.g. the class weights of nn.CrossEntropyLoss(weight=...)
        self._interrupt = DeferredInterrupt()
        self._loader = LoaderReplay()  # the generators of the last fit's DataLoader, across epochs and resumes
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
        ``DataLoader``; see :func:`seqclf.data.as_source`. Everything, including the checkpoint named by
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
        train, evaluation, order = self._prepare(train_data, eval_data, resume_from)
        if self.state.epoch_done:
            self.state.next_epoch()
        if self.state.finished:
            logger.warning(
                "the run ended at epoch %d (step %d): a callback ended it for good (e.g. EarlyStopping), so fit "
                "trains no more; to train on anyway, set trainer.state.finished = False",
                self.state.epoch, self.state.step,
            )
            return self.history
        start_run(self.state, self.seed, self.rank, self.world_size)
        self.state.should_stop = False  # a stop is a pause: fit continues where the last one stopped
        self._loader.order = order
        self._emit("on_fit_start")
        with self._interrupt, order if order is not None else contextlib.nullcontext():
            try:
                while self.state.epoch < self.epochs:
                    if not self._train_epoch(train, evaluation):
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

    def _prepare(
        self, train_data: Any, eval_data: Any, resume_from: str | os.PathLike[str] | None
    ) -> tuple[Source, Source | None, LoaderOrder | None]:
        """Check the data (and the checkpoint), then resume from it or fit the model's input statistics."""
        train = self.train_source = self.as_source(train_data, name="train_data")
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
                check_loader_resumable(order, checkpoint, self.rank)
            self.load_state_dict(checkpoint)
        else:  # fit the model's input standardisation (if it has an unfitted one) on train_data
            if order is not None and self.state.batch_in_epoch > 0 and not self.state.epoch_done:
                check_loader_resumable(order, None, self.rank)  # the same trainer continues a paused epoch
            fit_standardizers(self.model, train)
        return train, evaluation, order

    def _train_epoch(self, train: Source, evaluation: Source | None) -> bool:
        """Run an epoch, record and announce it; whether to go on with the next one."""
        record = self.run_epoch(train, evaluation)
        if record is None:  # stopped mid-epoch: the epoch stays open, to be continued
            return False
        self.history.append(record)
        if self.is_main_process:
            logger.info("epoch %d: %s", record["epoch"], _format_record(record))
        self.state.epoch_done = True
        self._emit("on_epoch_end", record)
        stop = self._agree_to_stop()
        self.state.next_epoch()
        return not stop

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
        """The current epoch's batches, skipping those a resumed run has already done.

        In-memory data and a ``Dataset`` follow :func:`seqclf.batching.rank_plan` (which also
        sets each batch's loss scale under data-parallel training); a ``DataLoader`` keeps
        its own order, replayed exactly on a resume.
        """
        state, done = self.state, self.state.batch_in_epoch
        self._loss_scales = None
        if isinstance(train, LoaderSource):
            distributed.set_sampler_epoch(train.loader, state.epoch)
            self._loader.begin_epoch(state.seed, state.epoch, self.rank, done)
            return itertools.islice(train.batches(None), done, None)
        if isinstance(train, DatasetSource):  # the loader's worker seeds: drawn from this, not the global generator
            train.generator = torch.Generator().manual_seed(epoch_seed(state.seed, state.epoch, self.rank))
        lengths = train.lengths_cpu if isinstance(train, TensorSource) else None
        plan = rank_plan(len(train), self.batch_size, seed=state.seed, epoch=state.epoch, rank=self.rank,
                         world_size=self.world_size, lengths=lengths, bucketing=self.batching)
        self._loss_scales = plan.loss_scales
        return train.batches(plan.batches[done:])

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

    # ------------------------------------------------------ state
    def run_state(self) -> TrainState:
        """The run's state as one process holding all of it would have it.

        Alone, ``self.state`` itself. With several processes, a copy whose running epoch
        sums are summed over the ranks (a collective: every rank must call it), which is
        what a checkpoint stores so that it resumes on any number of processes.
        """
        return global_state(self.state, self.world_size, self.device)

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
        return save_run(self._run())

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
        load_run(self._run(), state_dict)

    def _run(self) -> Run:
        """This trainer's parts that make up its run's state."""
        return Run(self.model, self.optimizer, self.callbacks, self.history, self.state, self._loader,
                   self.batch_size, self.epochs, self.rank, self.world_size, self.device)

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
        rank, world_size = (self.rank, self.world_size) if shard else (0, 1)
        sums = evaluation_sums(self.model, source, self.device, self.eval_batch_size, rank=rank, world_size=world_size)
        loss, right, total = distributed.sum_over_ranks(sums, self.device) if shard else sums
        return {"loss": loss / max(total, 1), "accuracy": right / max(total, 1), "samples": round(total)}

    def predict(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        """Class indices ``(N,)`` (int64, on the CPU) for the sequences in ``data``.

        ``data`` is a tensor or array ``X`` ``(N, T, F)`` (with optional ``lengths`` ``(N,)``), a
        list of ``(T_i, F)`` sequences, or anything ``fit`` accepts (its labels are then
        ignored). Each process predicts all of ``data`` by itself (no communication between
        processes).
        """
        return torch.cat([logits.argmax(dim=1).cpu() for _, logits in self._logits(data, lengths)])

    def predict_proba(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities ``(N, num_classes)`` (float, on the CPU); see :meth:`predict`."""
        return torch.cat([logits.softmax(dim=1).cpu() for _, logits in self._logits(data, lengths)])

    def _logits(self, data: Any, lengths: Tensor | None) -> Iterator[tuple[Batch, Tensor]]:
        source = inference_source(self.model, data, lengths, self.device)
        return batch_logits(self.model, source, self.device, self.eval_batch_size)

    def as_source(self, data: Any, *, name: str = "data", labelled: bool = True) -> Source:
        """Check ``data`` and wrap it as a batch source on this trainer's device."""
        return model_source(self.model, data, self.device, name=name, labelled=labelled)

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


def _format_record(record: Record) -> str:
    return ", ".join(
        f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in record.items()
        if key != "epoch"
    )
