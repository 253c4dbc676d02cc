from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
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


@pytest.mark.parametrize(
    ("rows", "columns", "width"),
    [(24, 0, seqclf.progress.FALLBACK_COLUMNS), (24, 120, 119), (0, 0, seqclf.progress.FALLBACK_COLUMNS), (0, 120, 119)],
)
def test_a_terminal_reporting_0_columns_or_rows_gets_a_fixed_size_bar(rows: int, columns: int, width: int) -> None:
    # a fresh pseudo-terminal reports 0 rows and 0 columns, as `script`, some CI runners and editor shells do
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    with open(follower, "w", closefd=True) as terminal:
        fit(None, ProgressBar(file=terminal), epochs=1)  # on by default: it is a terminal
    output = b""
    while chunk := _read_ready(leader):
        output += chunk
    os.close(leader)
    line = output.decode().replace("\r\n", "\n").strip("\n").split("\n")[-1].split("\r")[-1]
    assert line.startswith("epoch 1/1: 100%") and "48/48" in line and "acc=" in line
    assert len(line) == width  # tqdm fills the width it is given (dynamic width: the terminal's less 1)


def _read_ready(fd: int) -> bytes:
    import select

    if not select.select([fd], [], [], 0.5)[0]:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # the other end is closed and drained
        return b""


_UNDER_SCRIPT = """
import torch
from seqclf import SequenceClassifier, Trainer
torch.manual_seed(0)
x, y = torch.randn(48, 5, 3), torch.randint(0, 2, (48,))
Trainer(SequenceClassifier(3, 8, 2), epochs=1, batch_size=16, device="cpu").fit((x, y))
"""


@pytest.mark.skipif(shutil.which("script") is None, reason="needs the `script` command (util-linux / bsdutils)")
def test_the_default_bar_draws_under_the_real_script_command(tmp_path: Path) -> None:
    # `script` runs the command on a new pseudo-terminal that reports 0 rows and 0 columns
    program = tmp_path / "fit.py"
    program.write_text(_UNDER_SCRIPT)
    src = str(Path(seqclf.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "COLUMNS": "", "LINES": ""}
    result = subprocess.run(
        ["script", "-qec", f"{sys.executable} {program}", os.devnull],
        stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout.decode(errors="replace")
    lines = [line.split("\r")[-1] for line in result.stdout.decode().replace("\r\n", "\n").split("\n")]
    drawn = [line for line in lines if line.strip()]
    assert drawn, f"the bar drew only blank lines: {result.stdout!r}"
    assert drawn[-1].startswith("epoch 1/1: 100%") and "48/48" in drawn[-1] and "acc=" in drawn[-1]
    assert len(drawn[-1]) == seqclf.progress.FALLBACK_COLUMNS
