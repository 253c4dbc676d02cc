"""The training loop: fit, evaluate, predict; one readable loop with callbacks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .callbacks import Callback, StepOutput
from .data import Batch, DatasetSource, LoaderSource, TensorSource, as_source, epoch_plan
from .history import History, Record
from .progress import default_callbacks

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
Source = TensorSource | DatasetSource | LoaderSource


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
    """

    seed: int
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    should_stop: bool = False
    epoch_loss_sum: Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_correct: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    epoch_seen: int = 0

    def reset_epoch(self, device: torch.device) -> None:
        """Start the running sums of a new epoch."""
        self.batch_in_epoch = 0
        self.epoch_loss_sum = torch.zeros((), device=device)
        self.epoch_correct = torch.zeros((), dtype=torch.int64, device=device)
        self.epoch_seen = 0


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
        callbacks: :class:`~seqclf.callbacks.Callback` objects called at each event.
        progress: the live progress bar (:class:`~seqclf.progress.ProgressBar`):
            ``None`` shows it when stderr is a terminal and this is the main process,
            ``True`` shows it on the main process even when not a terminal, ``False``
            never. A ``ProgressBar`` given in ``callbacks`` is used instead of the default.

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
        self.lr, self.seed, self.grad_clip_norm = float(lr), seed, grad_clip_norm
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.optimizer = (optimizer or self._default_optimizer)(self.model.parameters())
        self.callbacks = default_callbacks(callbacks, progress)
        self.train_source: Source | None = None
        """The training data of the current ``fit``, as a batch source (for callbacks)."""
        self.state = TrainState(seed=0 if seed is None else seed)
        self.history = History()
        self.loss_fn: nn.Module = nn.CrossEntropyLoss()

    def _default_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr)

    # ----------------------------------------------------------------- fit
    def fit(self, train_data: Any, eval_data: Any = None) -> History:
        """Train for ``epochs`` epochs (those not done yet) and return the history.

        ``train_data`` and ``eval_data`` may be a ``(X, y)`` or ``(X, lengths, y)``
        tuple of tensors, a ``Dataset`` of ``(sequence, label)`` or
        ``(sequence, length, label)`` items, or a ``DataLoader``; see
        :func:`seqclf.data.as_source`. Everything is checked before the first step.
        """
        train = self.train_source = self.as_source(train_data, name="train_data")
        evaluation = None if eval_data is None else self.as_source(eval_data, name="eval_data")
        self._start_run()
        self._emit("on_fit_start")
        while self.state.epoch < self.epochs and not self.state.should_stop:
            record = self.run_epoch(train, evaluation)
            self.history.append(record)
            logger.info("epoch %d: %s", record["epoch"], _format_record(record))
            self._emit("on_epoch_end", record)
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
        self._emit("on_fit_end")
        return self.history

    def _start_run(self) -> None:
        """Seed a fresh run (a resumed run keeps the state it was given)."""
        if self.state.step > 0 or self.state.epoch > 0 or self.state.batch_in_epoch > 0:
            return
        self.state.should_stop = False
        if self.seed is None:
            # derived from torch's global generator, so seed_everything() makes it reproducible
            self.state.seed = int(torch.randint(0, 2**31 - 1, ()).item())
        else:
            self.state.seed = self.seed
            torch.manual_seed(self.seed)  # dropout and any other random op in the model

    def run_epoch(self, train: Source, evaluation: Source | None) -> Record:
        """Train one epoch (or its remainder, when resumed) and evaluate; return its record."""
        started = time.perf_counter()
        if self.state.batch_in_epoch == 0:
            self.state.reset_epoch(self.device)
        self._emit("on_epoch_start")
        self.model.train()
        for batch in self.epoch_batches(train):
            output = self.train_step(batch.to(self.device))
            self.state.step += 1
            self.state.batch_in_epoch += 1
            self._emit("on_batch_end", output)
            if self.state.should_stop:
                break
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
            for i, batch in enumerate(train.batches(None)):
                if i >= done:
                    yield batch
            return
        plan = epoch_plan(len(train), self.batch_size, seed=self.state.seed, epoch=self.state.epoch)
        yield from train.batches(plan[done:])

    def train_step(self, batch: Batch) -> StepOutput:
        """One optimizer step on ``batch``; adds to the epoch's running sums without a sync."""
        assert batch.y is not None
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(batch.x, batch.lengths)  # (B, C)
        loss = self.loss_fn(logits, batch.y)
        loss.backward()
        if self.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        loss, logits = loss.detach(), logits.detach()
        state = self.state
        state.epoch_loss_sum = state.epoch_loss_sum + loss * len(batch.y)
        state.epoch_correct = state.epoch_correct + (logits.argmax(dim=1) == batch.y).sum()
        state.epoch_seen += len(batch.y)
        return StepOutput(loss=loss, logits=logits, batch=batch, batch_index=state.batch_in_epoch)

    def _epoch_metrics(self) -> dict[str, float]:
        seen = max(self.state.epoch_seen, 1)
        return {
            "train_loss": float(self.state.epoch_loss_sum) / seen,
            "train_accuracy": float(self.state.epoch_correct) / seen,
        }

    # ------------------------------------------------------- evaluation
    def evaluate(self, data: Any) -> dict[str, float]:
        """Mean loss and accuracy on labelled ``data``: ``{"loss", "accuracy", "samples"}``."""
        source = self.as_source(data, name="data")
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for batch, logits in self._infer(source):
            if batch.y is None:
                raise ValueError("data must be labelled to be evaluated; got sequences without labels")
            loss_sum += nn.functional.cross_entropy(logits, batch.y, reduction="sum")
            correct += (logits.argmax(dim=1) == batch.y).sum()
            seen += len(batch.y)
        return {
            "loss": float(loss_sum) / max(seen, 1),
            "accuracy": float(correct) / max(seen, 1),
            "samples": float(seen),
        }

    def predict(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        """Class indices ``(N,)`` (int64, on the CPU) for the sequences in ``data``.

        ``data`` is a tensor ``X`` ``(N, T, F)`` (with optional ``lengths`` ``(N,)``), or
        anything ``fit`` accepts (its labels are then ignored).
        """
        return torch.cat([logits.argmax(dim=1).cpu() for _, logits in self._infer_any(data, lengths)])

    def predict_proba(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities ``(N, num_classes)`` (float, on the CPU); see :meth:`predict`."""
        return torch.cat([logits.softmax(dim=1).cpu() for _, logits in self._infer_any(data, lengths)])

    def _infer_any(self, data: Any, lengths: Tensor | None) -> Iterator[tuple[Batch, Tensor]]:
        if isinstance(data, Tensor):
            source = self.as_source((data,) if lengths is None else (data, lengths), labelled=False)
        elif lengths is not None:
            raise TypeError(f"lengths may be given only with a tensor X; got data of type {type(data).__name__}")
        else:
            source = self.as_source(data)
        return self._infer(source)

    def _infer(self, source: Source) -> Iterator[tuple[Batch, Tensor]]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                plan = None
                if not isinstance(source, LoaderSource):
                    plan = epoch_plan(len(source), self.eval_batch_size, seed=None)
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

