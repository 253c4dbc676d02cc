"""Shared fixtures: every test starts from the same seeds; real data comes from SEQCLF_DATA_DIR."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


DATA_LAYOUT = (
    "a folder holding mnist/MNIST/raw/ and fashion-mnist/FashionMNIST/raw/, each with the four uncompressed "
    "IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte); see 'Run the tests' in the README"
)


@pytest.fixture
def data_dir() -> Path:
    """The real-data folder named by SEQCLF_DATA_DIR (layout: DATA_LAYOUT); skips when unset."""
    value = os.environ.get("SEQCLF_DATA_DIR")
    if not value:
        pytest.skip(f"SEQCLF_DATA_DIR is not set: this test needs real data, {DATA_LAYOUT}")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"SEQCLF_DATA_DIR={value} is not a folder; it must be {DATA_LAYOUT}")
    return path


def make_sequences(n: int = 64, time: int = 6, features: int = 3, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable synthetic task: the class is which feature has the largest mean."""
    x = torch.randn(n, time, features)
    y = torch.randint(0, classes, (n,))
    x[torch.arange(n), :, y] += 1.5
    return x, y


FIXTURES = Path(__file__).parent / "fixtures"
"""Files written by an earlier seqclf (see fixtures/make_fixtures.py), kept to prove they still load."""


def fixture_expected() -> dict[str, Any]:
    """What the fixture files' models gave on the fixed input when they were written (fixtures/expected.json)."""
    expected: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
    return expected


def fixture_input() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed input of fixtures/expected.json: x (5, 7, 3) with junk in the padding, lengths (5,)."""
    recorded = fixture_expected()["input"]
    return torch.tensor(recorded["x"]), torch.tensor(recorded["lengths"])
