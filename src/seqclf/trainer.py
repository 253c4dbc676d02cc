"""The training loop: fit, evaluate, predict; one readable loop with callbacks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from ._interrupt import DeferredInterrupt
from .callbacks import Callback, Checkpoint, StepOutput
from .checkpoint import load_checkpoint, restore_checkpoint
from .data import Batch, DatasetSource, LengthBucketing, LoaderSource, TensorSource, _is_x, as_source, epoch_plan
from .history import History, Record
from .normalization import fit_standardizers
from .progress import default_callbacks

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
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
        should_stop: set by a callback to end training after the current batch.
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
    epoch_loss_sum: Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_correct: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    epoch_seen: int = 0
    epoch_finite_batches: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))

    def reset_epoch(self, device: torch.device) -> None:
        """Start the running sums of a new epoch."""
        self.batch_in_epoch = 0
        self.epoch_loss_sum = torch.zeros((), device=device)
        self.epoch_correct = torch.zeros((), dtype=torch.int64, device=device)
        self.epoch_seen = 0
        self.epoch_finite_batches = torch.zeros((), dtype=torch.int64, device=device)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a str or torch.device; got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}") from error


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


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
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        batching: LengthBucketing | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.epochs = _positive_int("epochs", epochs)
        self.batch_size = _positive_int("batch_size", batch_size)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a positive float; got {lr!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
        if grad_clip_norm is not None and not grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be a positive float or None; got {grad_clip_norm!r}")
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
        self.callbacks = sorted(default_callbacks(callbacks, progress), key=lambda c: isinstance(c, Checkpoint))
        self.train_source: Source | None = None
        """The training data of the current ``fit``, as a batch source (for callbacks)."""
        self.state = TrainState(seed=0 if seed is None else seed)
        self.history = History()
        self.loss_fn: nn.Module = nn.CrossEntropyLoss()
        self._interrupt = DeferredInterrupt()

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
                if it had never stopped (same data, batch size and seed).

        Raises:
            DivergenceError: a loss became NaN or Inf (checked at each epoch end and
                before each checkpoint save, without a host sync per step).
            KeyboardInterrupt: after Ctrl-C. The first press ends the run after the
                current step: ``on_fit_end`` runs (a ``Checkpoint`` callback saves the run
                there) and the interrupt is raised again so the caller stops too. A second
                press stops at once, saving nothing.
        """
        train = self.train_source = self.as_source(train_data, name="train_data")
        evaluation = None if eval_data is None else self.as_source(eval_data, name="eval_data")
        if isinstance(train, LoaderSource):
            distributed.require_distributed_sampler(train.loader, name="train_data")
        if self.batching is not None and not isinstance(train, TensorSource) and self.is_main_process:
            logger.warning("batching=%r applies to in-memory tensor data only; %s batches are shuffled as usual",
                           self.batching, type(train).__name__)
        if resume_from is not None:
            restore_checkpoint(self, load_checkpoint(resume_from))
        else:  # a fresh run: fit the model's input standardisation (if it has an unfitted one) on train_data
            fit_standardizers(self.model, train)
        self._start_run()
        self._emit("on_fit_start")
        with self._interrupt:
            try:
                while self.state.epoch < self.epochs and not self.state.should_stop:
                    record = self.run_epoch(train, evaluation)
                    self.history.append(record)
                    if self.is_main_process:
                        logger.info("epoch %d: %s", record["epoch"], _format_record(record))
                    self._emit("on_epoch_end", record)
                    self._agree_to_stop()
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
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

    def run_epoch(self, train: Source, evaluation: Source | None) -> Record:
        """Train one epoch (or its remainder, when resumed) and evaluate; return its record."""
        started = time.perf_counter()
        if self.state.batch_in_epoch == 0:
            self.state.reset_epoch(self.device)
        self._emit("on_epoch_start")
        self._train_model.train()
        for batch in self.epoch_batches(train):
            output = self.train_step(batch.to(self.device))
            self.state.step += 1
            self.state.batch_in_epoch += 1
            self._emit("on_batch_end", output)
            if self._agree_to_stop():  # a Ctrl-C during the step stops the run here, between steps
                break
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
        if isinstance(train, LoaderSource):
            distributed.set_sampler_epoch(train.loader, self.state.epoch)
            for i, batch in enumerate(train.batches(None)):
                if i >= done:
                    yield batch
            return
        lengths = train.lengths_cpu if isinstance(train, TensorSource) else None
        if self.batching is not None and lengths is not None:
            plan = self.batching.plan(
                lengths, self.batch_size, seed=self.state.seed, epoch=self.state.epoch,
                rank=self.rank, world_size=self.world_size,
            )
        else:
            plan = epoch_plan(
                len(train), self.batch_size, seed=self.state.seed, epoch=self.state.epoch,
                rank=self.rank, world_size=self.world_size,
            )
        if self.world_size > 1:
            plan = plan[: distributed.steps_per_epoch(len(train), self.batch_size, self.world_size)]
        yield from train.batches(plan[done:])

    def train_step(self, batch: Batch) -> StepOutput:
        """One optimizer step on ``batch``; adds to the epoch's running sums without a sync."""
        assert batch.y is not None
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._train_model(batch.x, batch.lengths)  # (B, C)
        loss = self.loss_fn(logits, batch.y)
        loss.backward()  # under DDP this also averages the gradients over the ranks
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
        if self.world_size > 1:
            self.state.should_stop, self._interrupt.requested = distributed.any_rank(
                self.state.should_stop, self._interrupt.requested
            )
        self._interrupt.check()
        return self.state.should_stop

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
        """Mean loss and accuracy on labelled ``data``: ``{"loss", "accuracy", "samples"}``.

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
        return {"loss": loss / max(total, 1), "accuracy": right / max(total, 1), "samples": total}

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

