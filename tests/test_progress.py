from __future__ import annotations

import io
from typing import Any

import pytest

import seqclf.progress
from seqclf import SequenceClassifier, Trainer
from seqclf.progress import ProgressBar

from .conftest import make_sequences


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fit(progress: bool | None = None, *callbacks: Any, epochs: int = 2) -> Trainer:
    x, y = make_sequences(48)
    model = SequenceClassifier(input_size=3, hidden_size=8, num_classes=2)
    trainer = Trainer(model, epochs=epochs, batch_size=16, seed=0, device="cpu", callbacks=callbacks, progress=progress)
    trainer.fit((x, y), eval_data=(x[:16], y[:16]))
    return trainer


def test_shows_one_line_per_epoch_with_the_epoch_record_on_a_terminal() -> None:
    out = Terminal()
    trainer = fit(None, ProgressBar(file=out, refresh_s=1e-6))
    lines = [line.split("\r")[-1] for line in out.getvalue().strip("\n").split("\n")]
    assert len(lines) == 2
    for line, record in zip(lines, trainer.history, strict=True):
        epoch = int(record["epoch"]) + 1  # type: ignore[arg-type]
        assert line.startswith(f"epoch {epoch}/2: 100%") and "48/48" in line and "samples/s" in line
        for key, short in [("train_loss", "loss"), ("train_accuracy", "acc"), ("val_loss", "val_loss"),
                           ("val_accuracy", "val_acc")]:
            assert f"{short}={record[key]:.4f}" in line
    # in between, the bar showed the running loss while the epoch went on
    assert "| 16/48 [" in out.getvalue() and "loss=" in out.getvalue().split("\r")[2]


def test_quiet_when_not_a_terminal_unless_enabled() -> None:
    pipe = io.StringIO()
    fit(None, ProgressBar(file=pipe))
    assert pipe.getvalue() == ""
    fit(None, ProgressBar(enabled=True, file=pipe), epochs=1)
    assert "epoch 1/1: 100%" in pipe.getvalue()


def test_quiet_when_disabled() -> None:  # and on ranks > 0: a real 2-process run in test_distributed.py
    out = Terminal()
    fit(None, ProgressBar(enabled=False, file=out), epochs=1)
    assert out.getvalue() == ""


def test_reads_the_loss_only_at_the_refresh_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = seqclf.progress._running_metrics
    monkeypatch.setattr(seqclf.progress, "_running_metrics", lambda trainer: reads.append(1) or real(trainer))
    fit(None, ProgressBar(enabled=True, file=io.StringIO(), refresh_s=3600.0))
    assert len(reads) == 2  # 6 steps in 2 epochs: one read after each epoch's last batch
    reads.clear()
    fit(None, ProgressBar(enabled=True, file=io.StringIO(), refresh_s=1e-9), epochs=1)
    assert 0 < len(reads) <= 3


def test_the_trainer_adds_one_default_bar_unless_told_otherwise() -> None:
    model = SequenceClassifier(3, 8, 2)
    default = Trainer(model).callbacks
    assert len(default) == 1 and isinstance(default[0], ProgressBar) and default[0].enabled is None
    assert Trainer(model, progress=False).callbacks == []
    mine = ProgressBar(refresh_s=2.0)
    assert Trainer(model, callbacks=[mine]).callbacks == [mine]
    assert "ProgressBar(enabled=True, refresh_s=0.5)" in repr(Trainer(model, progress=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"enabled": "yes"}, TypeError, "enabled must be True, False or None; got 'yes'"),
        ({"refresh_s": 0}, ValueError, "refresh_s must be a positive number of seconds; got 0"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ProgressBar(**kwargs)


def test_bad_progress_setting_is_named() -> None:
    with pytest.raises(TypeError, match="progress must be True, False or None \\(auto\\); got 'auto'"):
        Trainer(SequenceClassifier(3, 8, 2), progress="auto")  # type: ignore[arg-type]
