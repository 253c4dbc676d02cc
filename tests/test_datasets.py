from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import seqclf
from seqclf.datasets import DatasetNotFoundError, read_idx


@pytest.mark.needs_data("mnist/test")
def test_mnist_test_set_from_the_shared_layout(data_dir: Path) -> None:
    digits = seqclf.datasets.mnist(data_dir, train=False)
    assert len(digits) == 10_000
    x, y = digits[0]
    assert x.shape == (28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert int(y) == 7  # the first MNIST test digit is a 7
    assert digits.x.dtype == torch.uint8  # held compactly, transformed per batch
    assert torch.equal(seqclf.datasets.mnist(data_dir / "mnist", train=False).y, digits.y)


@pytest.mark.needs_data("fashion-mnist/train", "fashion-mnist/test")
def test_fashion_mnist_both_splits(data_dir: Path) -> None:
    train = seqclf.datasets.fashion_mnist(data_dir, train=True)
    test = seqclf.datasets.fashion_mnist(data_dir, train=False)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert sorted(train.y.unique().tolist()) == list(range(10))


def test_missing_files_say_which_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as raised:
        seqclf.datasets.mnist(tmp_path, train=True)
    message = str(raised.value)
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte" in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "download=True" in message
    error = raised.value
    assert (error.dataset, error.folder, error.download_error) == ("MNIST", tmp_path / "MNIST" / "raw", None)
    assert error.missing == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert str(pickle.loads(pickle.dumps(error))) == message  # crosses process boundaries intact


def test_failed_download_is_a_clear_error_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DatasetNotFoundError, match=r"missing from .*Downloading them failed \(URLError: .*name "
                                                   r"resolution>\)\. Copy them there from https://") as raised:
        seqclf.datasets.fashion_mnist(tmp_path, train=False, download=True)
    assert raised.value.download_error is not None and raised.value.download_error.startswith("URLError")


@pytest.mark.needs_data("fashion-mnist/test")
@pytest.mark.parametrize("inside", ["FashionMNIST", "FashionMNIST/raw", "fashion-mnist/FashionMNIST/raw", "fashion-mnist"])
def test_root_may_be_the_folder_the_files_are_in_or_any_parent_in_the_layout(data_dir: Path, inside: str) -> None:
    expected = seqclf.datasets.fashion_mnist(data_dir, train=False).y
    root = data_dir / "fashion-mnist" / inside if inside.startswith("F") else data_dir / inside
    assert torch.equal(seqclf.datasets.fashion_mnist(root, train=False).y, expected)


def test_root_must_be_a_path() -> None:
    with pytest.raises(TypeError, match="root must be a path"):
        seqclf.datasets.mnist(3)  # type: ignore[arg-type]


@pytest.mark.needs_data("fashion-mnist/test")
def test_idx_reader_equals_torchvisions(data_dir: Path) -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = data_dir / "fashion-mnist" / "FashionMNIST" / "raw"
    images, labels = read_idx(raw / "t10k-images-idx3-ubyte"), read_idx(raw / "t10k-labels-idx1-ubyte")
    assert torch.equal(images, read_image_file(str(raw / "t10k-images-idx3-ubyte")))
    assert torch.equal(labels.long(), read_label_file(str(raw / "t10k-labels-idx1-ubyte")))


def test_idx_reader_reads_a_small_file_and_refuses_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "x-idx2-ubyte"
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, *range(6)]))
    assert read_idx(path).tolist() == [[0, 1, 2], [3, 4, 5]]
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, *range(5)]))
    with pytest.raises(ValueError, match=r"must hold 6 bytes of data for shape \(2, 3\); got 5"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))  # float32 data
    with pytest.raises(ValueError, match=r"must be an IDX file of unsigned bytes \(magic 0x0008\); got '00000d01'"):
        read_idx(path)


@pytest.mark.needs_data("fashion-mnist/test")
def test_loading_does_not_import_torchvision(data_dir: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, seqclf; seqclf.datasets.fashion_mnist(sys.argv[1], train=False); "
        "print('torchvision' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
