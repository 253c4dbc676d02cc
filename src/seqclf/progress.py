"""A live progress bar per epoch: samples seen, samples/s, running loss and accuracy.

The trainer adds a :class:`ProgressBar` by itself (``Trainer(progress=None)``, the
default, shows it when stderr is a terminal and the process is the main one); pass
``progress=False`` to turn it off, or put your own ``ProgressBar(...)`` in
``callbacks`` to change how it looks.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from .callbacks import Callback, StepOutput
from .history import Record

__all__ = ["FALLBACK_COLUMNS", "FALLBACK_ROWS", "ProgressBar"]

if TYPE_CHECKING:
    from .trainer import Trainer


class ProgressBar(Callback):
    """Show a tqdm bar per epoch with the running loss, accuracy and samples/s.

    The bar counts training samples. The running loss and accuracy are the epoch's means
    so far, read from the trainer's on-device sums at most once per ``refresh_s`` seconds
    and after the epoch's last batch: there is no host-device synchronisation per step.
    When the epoch ends, the bar shows the epoch's record (train and ``val_`` metrics) and
    stays on screen as one line; its time and samples/s count the training only.

    Args:
        enabled: ``None`` (the default): show the bar only when ``file`` is a terminal
            and ``trainer.is_main_process`` (true without distributed training), so CI
            logs and pipes stay clean. ``True``: show it on the main process even when
            ``file`` is not a terminal (e.g. in a notebook). ``False``: never show it.
        refresh_s: seconds between updates of the bar (and reads of the loss).
        file: where to draw the bar; ``sys.stderr`` at fit time by default.

    Examples:
        >>> from seqclf import SequenceClassifier, Trainer
        >>> model = SequenceClassifier(input_size=3, hidden_size=8, num_classes=2)
        >>> trainer = Trainer(model, callbacks=[ProgressBar(refresh_s=1.0)])
    """

    def __init__(self, enabled: bool | None = None, refresh_s: float = 0.5, file: TextIO | None = None) -> None:
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True, False or None; got {enabled!r}")
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, (int, float)) or not refresh_s > 0:
            raise ValueError(f"refresh_s must be a positive number of seconds; got {refresh_s!r}")
        self.enabled, self.refresh_s, self.file = enabled, float(refresh_s), file
        self.bar: tqdm[Any] | None = None
        self._active = False
        self._pending = 0
        self._next_refresh = 0.0

    def is_active(self, trainer: Trainer) -> bool:
        """Whether the bar is shown for this run (decided at fit start)."""
        if self.enabled is False or not trainer.is_main_process:
            return False
        if self.enabled:
            return True
        file = self.file if self.file is not None else sys.stderr
        isatty = getattr(file, "isatty", None)
        return bool(isatty is not None and isatty())

    def on_fit_start(self, trainer: Trainer) -> None:
        self._active = self.is_active(trainer)

    def on_epoch_start(self, trainer: Trainer) -> None:
        if not self._active:
            return
        total = _epoch_samples(trainer)
        done = min(trainer.state.batch_in_epoch * trainer.batch_size, total or 0)  # a resumed epoch
        file = self.file if self.file is not None else sys.stderr
        # a terminal that reports 0 columns or 0 rows (a fresh pty, `script`, some CI and editor
        # shells) makes tqdm draw nothing at all (it reads 0 rows as "no room for any bar"):
        # give it a fixed size instead
        size = _terminal_size(file)
        fixed = size is not None and (size.columns == 0 or size.lines == 0)
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=f"epoch {trainer.state.epoch + 1}/{trainer.epochs}",
            unit="samples",
            unit_scale=total is None or total >= 10_000,  # "60.0k/60.0k", but "64/100"
            dynamic_ncols=not fixed,
            # the width tqdm's dynamic sizing would use (the terminal's less 1), else the fallback
            ncols=(size.columns - 1 if size.columns > 0 else FALLBACK_COLUMNS) if fixed and size else None,
            nrows=(size.lines if size.lines > 0 else FALLBACK_ROWS) if fixed and size else None,
            leave=True,
            file=file,
            mininterval=0,  # on_batch_end throttles the updates itself
            miniters=1,
        )
        self._pending = 0
        self._next_refresh = time.monotonic() + self.refresh_s

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        if self.bar is None:
            return
        self._pending += int(output.batch.x.shape[0])  # a shape: no device read
        now = time.monotonic()
        last = self.bar.total is not None and self.bar.n + self._pending >= self.bar.total
        if now < self._next_refresh and not last:
            return
        self._next_refresh = now + self.refresh_s
        self.bar.set_postfix(_running_metrics(trainer), refresh=False)  # the only device read
        self.bar.update(self._pending)
        self._pending = 0

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        if self.bar is None:
            return
        postfix = {
            _SHORT.get(key, key): f"{value:.4f}"
            for key, value in record.items()
            if isinstance(value, float) and key in _SHORT
        }
        self.bar.update(self._pending)
        self.bar.unpause()  # the bar's time and samples/s exclude the evaluation after the last batch
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.close()
        self.bar, self._pending = None, 0

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.bar is not None:  # training stopped mid-epoch
            self.bar.update(self._pending)
            self.bar.close()
            self.bar, self._pending = None, 0

    def __repr__(self) -> str:
        return f"ProgressBar(enabled={self.enabled}, refresh_s={self.refresh_s})"


FALLBACK_COLUMNS = 80
"""The bar's width on a terminal that reports a width of 0 columns."""

FALLBACK_ROWS = 24
"""The height the bar assumes on a terminal that reports 0 rows."""


def _terminal_size(file: TextIO) -> os.terminal_size | None:
    """The size ``file``'s terminal reports, or None when it is not a terminal."""
    try:
        return os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):  # no fileno (StringIO), not a terminal, closed
        return None


def _default_callbacks(callbacks: Sequence[Callback], progress: bool | None) -> list[Callback]:
    """``callbacks`` plus a ``ProgressBar(enabled=progress)`` unless they hold one or ``progress`` is False."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (auto); got {progress!r}")
    result = list(callbacks)
    if progress is not False and not any(isinstance(callback, ProgressBar) for callback in result):
        result.append(ProgressBar(enabled=progress))
    return result


_SHORT = {
    "train_loss": "loss",
    "train_accuracy": "acc",
    "val_loss": "val_loss",
    "val_accuracy": "val_acc",
}


def _running_metrics(trainer: Trainer) -> dict[str, str]:
    state = trainer.state
    seen = max(state.epoch_seen, 1)
    return {
        "loss": f"{float(state.epoch_loss_sum) / seen:.4f}",
        "acc": f"{float(state.epoch_correct) / seen:.4f}",
    }


def _epoch_samples(trainer: Trainer) -> int | None:
    """Training samples this process sees in one epoch, when the data says (else None)."""
    source: Any = trainer.train_source
    if source is None:
        return None
    try:
        size = len(source)
    except TypeError:  # a DataLoader over an iterable dataset
        return None
    return math.ceil(size / trainer.world_size)
