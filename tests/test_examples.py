from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_lstm.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300)


def test_help_needs_no_data() -> None:
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--lr", "--data-dir", "--dataset", "--device", "--seed",
                 "--eval-every", "--no-download", "--recipe {fast,tutorial}"):
        assert flag in result.stdout


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path), "--no-download")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "MNIST files are missing" in result.stderr


def test_prints_the_tutorial_log_line_and_final_accuracy(data_dir: Path) -> None:
    result = run("--data-dir", str(data_dir), "--dataset", "fashion-mnist", "--epochs", "1",
                 "--train-limit", "640", "--eval-every", "10", "--no-download", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    log_lines = [line for line in lines if line.startswith("Epoch:")]
    assert len(log_lines) == 2  # 20 batches of 32: after steps 0 and 10
    for line in log_lines:
        assert re.fullmatch(r"Epoch: 0 train loss: \d+\.\d{4} test accuracy: \d\.\d{2}", line), line
    assert re.fullmatch(r"Test accuracy on all 10000 test images: 0\.\d{4}", lines[-1])


def test_fast_recipe_runs_with_a_schedule(data_dir: Path) -> None:
    result = run("--data-dir", str(data_dir), "--dataset", "fashion-mnist", "--recipe", "fast", "--epochs", "1",
                 "--train-limit", "512", "--eval-every", "1", "--no-download", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    log_lines = [line for line in result.stdout.splitlines() if line.startswith("Epoch:")]
    assert len(log_lines) == 2  # 2 batches of 256
