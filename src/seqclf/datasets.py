"""MNIST and Fashion-MNIST as sequence datasets: each image is 28 steps of 28 pixels.

Thin adapters over torchvision's readers. The images stay uint8 tensors (MNIST's
training set is 47 MB) and :func:`~seqclf.image_rows_as_sequence` runs on whole
batches, so the trainer never touches individual items.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import torch

from .data import TensorSequenceDataset
from .transforms import image_rows_as_sequence

__all__ = ["DatasetNotFoundError", "fashion_mnist", "mnist", "read_idx"]

_SOURCES = {
    "MNIST": "https://yann.lecun.com/exdb/mnist/ (or torchvision's mirrors)",
    "FashionMNIST": "https://github.com/zalandoresearch/fashion-mnist",
}


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing and could not be downloaded.

    Attributes:
        dataset: ``"MNIST"`` or ``"FashionMNIST"``.
        folder: where the files must be (``<root>/MNIST/raw``, say).
        missing: the names of the missing files.
        download_error: why the download failed, or ``None`` when none was tried.
        source: where to get the files by hand.
    """

    def __init__(self, dataset: str, folder: Path, missing: list[str], download_error: str | None = None) -> None:
        self.dataset, self.folder, self.missing = dataset, folder, list(missing)
        self.download_error, self.source = download_error, _SOURCES[dataset]
        if download_error is None:
            how = f"Pass download=True to fetch them (needs internet access), or copy them there from {self.source}."
        else:
            how = f"Downloading them failed ({download_error}). Copy them there from {self.source}."
        super().__init__(
            f"{dataset} files are missing from {folder}/: {', '.join(self.missing)} (uncompressed IDX files). {how}"
        )

    def __reduce__(self) -> tuple[type[DatasetNotFoundError], tuple[str, Path, list[str], str | None]]:
        return type(self), (self.dataset, self.folder, self.missing, self.download_error)


def mnist(root: str | os.PathLike[str], *, train: bool = True, download: bool = False) -> TensorSequenceDataset:
    """The MNIST digits as ``(sequence (28, 28) float in [0, 1], label)`` items.

    Args:
        root: the folder holding ``MNIST/raw/`` (torchvision's layout), a parent holding
            ``mnist/MNIST/raw/``, or the ``MNIST/raw/`` (or ``MNIST/``) folder itself.
        train: the 60,000 training images, or else the 10,000 test images.
        download: fetch missing files with torchvision first.

    Raises:
        DatasetNotFoundError: files are missing (or the download failed); the message
            names the missing files, where they must go and how to get them.
    """
    return _load("MNIST", root, train=train, download=download)


def fashion_mnist(
    root: str | os.PathLike[str], *, train: bool = True, download: bool = False
) -> TensorSequenceDataset:
    """Fashion-MNIST as ``(sequence (28, 28) float in [0, 1], label)`` items; see :func:`mnist`.

    ``root`` holds ``FashionMNIST/raw/``, or is a parent holding ``fashion-mnist/FashionMNIST/raw/``,
    or is the ``FashionMNIST/raw/`` (or ``FashionMNIST/``) folder itself.
    """
    return _load("FashionMNIST", root, train=train, download=download)


def _load(name: str, root: str | os.PathLike[str], *, train: bool, download: bool) -> TensorSequenceDataset:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike); got {type(root).__name__}")
    root_path = _resolve_root(Path(root), name)
    split = "train" if train else "t10k"
    files = [f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"]
    raw = root_path / name / "raw"
    missing = [f for f in files if not (raw / f).is_file()]
    if missing and download:
        import torchvision  # only to download: importing it costs seconds of start-up

        try:
            getattr(torchvision.datasets, name)(str(root_path), train=train, download=True)
        except Exception as error:  # urllib, HTTP, checksum: all mean "not available"
            raise DatasetNotFoundError(name, raw, missing, f"{type(error).__name__}: {error}") from None
        missing = [f for f in files if not (raw / f).is_file()]
    if missing:
        raise DatasetNotFoundError(name, raw, missing)
    images = read_idx(raw / files[0])  # (N, 28, 28) uint8
    labels = read_idx(raw / files[1]).to(torch.int64)  # (N,)
    return TensorSequenceDataset(images.unsqueeze(1), labels, transform=image_rows_as_sequence)


def read_idx(path: Path) -> torch.Tensor:
    """An uncompressed IDX file of unsigned bytes (MNIST's format) as a uint8 tensor.

    The same tensor as torchvision's ``read_image_file``/``read_label_file``, without
    importing torchvision.
    """
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} must be an IDX file of unsigned bytes (magic 0x0008); got {data[:4].hex()!r}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(shape):
        raise ValueError(
            f"{path} must hold {math.prod(shape)} bytes of data for shape {shape}; got {len(data) - offset}"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)
    return torch.from_numpy(array.copy())


def _resolve_root(root: Path, name: str) -> Path:
    """The folder holding ``<name>/raw``, from the folder a user points at."""
    if (root / name).is_dir():
        return root
    if root.name == "raw" and root.parent.name == name:  # the folder the files are in
        return root.parent.parent
    if root.name == name:  # the dataset's own folder
        return root.parent
    nested = root / {"MNIST": "mnist", "FashionMNIST": "fashion-mnist"}[name]
    if (nested / name).is_dir():
        return nested
    return root
