"""Shared fixtures: every test starts from the same seeds; real data comes from SEQCLF_DATA_DIR."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import seqclf


@pytest.fixture(autouse=True)
def _seeded() -> None:
    seqclf.seed_everything(0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models train fastest so, and same ops give the same bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data_dir() -> Path:
    """The MNIST-format data folder (laid out like ../shared/data); skips when unset."""
    value = os.environ.get("SEQCLF_DATA_DIR")
    if not value:
        pytest.skip("SEQCLF_DATA_DIR is not set: real MNIST-format data is needed (CI sets it)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"SEQCLF_DATA_DIR={value} is not a folder")
    return path


def make_sequences(n: int = 64, time: int = 6, features: int = 3, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable synthetic task: the class is which feature has the largest mean."""
    x = torch.randn(n, time, features)
    y = torch.randint(0, classes, (n,))
    x[torch.arange(n), :, y] += 1.5
    return x, y
