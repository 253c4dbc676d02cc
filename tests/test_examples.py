from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_lstm.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300)


def example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mnist_lstm_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_needs_no_data() -> None:
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--lr", "--data-dir", "--dataset", "--device", "--seed",
                 "--eval-every", "--no-download", "--recipe {fast,tutorial}"):
        assert flag in result.stdout
    help_text = " ".join(result.stdout.split())  # argparse wraps the option help
    assert "default is the tutorial's 50 epochs: about" in help_text  # says what the default costs
    assert "--recipe fast --epochs 1 --train-limit 12800 --plot-dir plots" in help_text  # and how to take a quick look
    options = re.split(r"\n  (?=-)", result.stdout.split("\noptions:\n", 1)[1])  # one entry per option
    for flag in ("--dataset", "--seed"):
        entry = next(" ".join(option.split()) for option in options if option.startswith(flag))
        assert re.search(r"\(default: [\w-]+", entry), f"{flag} has no help text: {entry!r}"


def test_help_and_argument_errors_do_not_import_torch() -> None:
    # importing torch takes seconds: --help and a mistyped option must answer at once
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(EXAMPLE)!r}, '--help']\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().splitlines()[-1] == "no torch"


def test_the_examples_recipe_names_are_the_librarys() -> None:
    from seqclf.recipes import RECIPES

    assert tuple(sorted(RECIPES)) == example_module().RECIPES


@pytest.mark.needs_data("fashion-mnist/train", "fashion-mnist/test")
def test_data_dir_may_be_the_raw_folder_and_a_forgotten_dataset_gets_a_hint(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = data_dir / "fashion-mnist" / "FashionMNIST" / "raw"
    example = example_module()
    assert example.main(["--data-dir", str(raw), "--no-download"]) == 1  # --dataset forgotten
    error = capsys.readouterr().err
    assert f"error: MNIST files are missing from {raw / 'MNIST' / 'raw'}/" in error
    assert f"hint: {raw} holds FashionMNIST files: add --dataset fashion-mnist" in error
    assert example.main(["--data-dir", str(raw), "--dataset", "fashion-mnist", "--no-download", "--epochs", "1",
                         "--train-limit", "64", "--eval-every", "100", "--device", "cpu", "--no-progress"]) == 0
    assert "Test accuracy on all 10000 test images" in capsys.readouterr().out


def test_a_failed_download_tells_the_user_about_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import urllib.error

    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    assert example_module().main(["--data-dir", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"error: MNIST files are missing from {tmp_path / 'MNIST' / 'raw'}/: train-images")
    assert lines[0].endswith("(the download failed: URLError: <urlopen error [Errno -3] Temporary failure in "
                             "name resolution>).")
    assert lines[1].startswith("Point --data-dir at the folder holding MNIST/raw/, or at that raw folder itself")
    assert "download=True" not in "\n".join(lines)  # a library argument, not a command-line option


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path), "--no-download")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "MNIST files are missing" in result.stderr


@pytest.mark.needs_data("fashion-mnist/train", "fashion-mnist/test")
def test_prints_the_tutorial_log_line_and_final_accuracy_and_writes_the_plots(data_dir: Path, tmp_path: Path) -> None:
    plots = importlib.util.find_spec("matplotlib") is not None  # the test extra installs it
    result = run("--data-dir", str(data_dir), "--dataset", "fashion-mnist", "--epochs", "1",
                 "--train-limit", "640", "--eval-every", "10", "--no-download", "--device", "cpu",
                 *(["--plot-dir", str(tmp_path / "plots")] if plots else []))
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" not in result.stderr  # no progress bar when stderr is not a terminal
    lines = result.stdout.splitlines()
    if plots:
        assert lines.pop() == f"Wrote curves.png, predictions.png and confusion.png to {tmp_path / 'plots'}"
        for name in ("curves.png", "predictions.png", "confusion.png"):
            assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    log_lines = [line for line in lines if line.startswith("Epoch:")]
    assert len(log_lines) == 2  # 20 batches of 32: after steps 0 and 10
    for line in log_lines:
        assert re.fullmatch(r"Epoch: 0 train loss: \d+\.\d{4} test accuracy: \d\.\d{2}", line), line
    assert re.fullmatch(r"Test accuracy on all 10000 test images: 0\.\d{4}", lines[-1])


@pytest.mark.needs_data("fashion-mnist/train", "fashion-mnist/test")
def test_runs_unchanged_under_torchrun_and_only_rank_0_prints(data_dir: Path) -> None:
    with socket.socket() as sock:  # a free port on 127.0.0.1 for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(port)]
    result = subprocess.run(
        [*torchrun, str(EXAMPLE), "--data-dir", str(data_dir), "--dataset", "fashion-mnist", "--epochs", "1",
         "--train-limit", "640", "--batch-size", "16", "--eval-every", "10", "--no-download"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    log_lines = [line for line in lines if line.startswith("Epoch:")]
    assert len(log_lines) == 2  # 20 global batches of 2 x 16, as 1 process at 32: after steps 0 and 10
    for line in log_lines:
        assert re.fullmatch(r"Epoch: 0 train loss: \d+\.\d{4} test accuracy: \d\.\d{2}", line), line
    assert re.fullmatch(r"Test accuracy on all 10000 test images: 0\.\d{4}", lines[-1])
    assert len(lines) == 3


def test_plot_dir_holding_pictures_is_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "curves.png").write_bytes(b"an earlier run's curves")
    result = run("--data-dir", str(tmp_path), "--no-download", "--plot-dir", str(tmp_path))
    assert result.returncode == 1
    assert "already holds curves.png" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "curves.png").read_bytes() == b"an earlier run's curves"


@pytest.mark.needs_data("fashion-mnist/train", "fashion-mnist/test")
def test_fast_recipe_runs_with_a_schedule(data_dir: Path) -> None:
    result = run("--data-dir", str(data_dir), "--dataset", "fashion-mnist", "--recipe", "fast", "--epochs", "1",
                 "--train-limit", "512", "--eval-every", "1", "--no-download", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    log_lines = [line for line in result.stdout.splitlines() if line.startswith("Epoch:")]
    assert len(log_lines) == 2  # 2 batches of 256


@pytest.mark.needs_data("fashion-mnist/train", "fashion-mnist/test")
def test_checkpoint_dir_and_resume_continue_the_run(data_dir: Path, tmp_path: Path) -> None:
    common = ("--data-dir", str(data_dir), "--dataset", "fashion-mnist", "--train-limit", "320", "--eval-every", "5",
              "--no-download", "--device", "cpu", "--checkpoint-dir", str(tmp_path / "run"))
    first = run(*common, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "run" / "step-00000010.pt").is_file()
    resumed = run(*common, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    epochs = {line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("Epoch:")}
    assert epochs == {"1"}  # epoch 0 is not trained again
    assert (tmp_path / "run" / "step-00000020.pt").is_file()
    again = run(*common, "--epochs", "1")  # a new run must not mix with the saved one
    assert again.returncode == 1 and "must not hold checkpoints of another run" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.needs_data("mnist/test", "fashion-mnist/test")
def test_missing_mnist_training_files_point_to_fashion_mnist_beside_them(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the MNIST test files alone, with Fashion-MNIST beside them (as the CI data folder may be)
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).symlink_to(data_dir / "mnist" / "MNIST" / "raw" / name)
    (tmp_path / "fashion-mnist").symlink_to(data_dir / "fashion-mnist")
    assert example_module().main(["--data-dir", str(tmp_path / "mnist"), "--no-download"]) == 1
    error = capsys.readouterr().err
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte (--no-download was given)" in error
    assert f"hint: {tmp_path} holds FashionMNIST files: add --dataset fashion-mnist --data-dir {tmp_path}" in error


def test_missing_files_name_the_other_dataset_even_when_it_is_not_at_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert example_module().main(["--data-dir", str(tmp_path), "--no-download"]) == 1
    assert "hint: to train on FashionMNIST instead, add --dataset fashion-mnist" in capsys.readouterr().err
    assert example_module().main(["--data-dir", str(tmp_path), "--dataset", "fashion-mnist", "--no-download"]) == 1
    assert "hint: to train on MNIST instead, add --dataset mnist" in capsys.readouterr().err
