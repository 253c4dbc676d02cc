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


DATA_FILES = {
    "mnist": "mnist/MNIST/raw",
    "fashion-mnist": "fashion-mnist/FashionMNIST/raw",
}
"""Where each data set's uncompressed IDX files lie under SEQCLF_DATA_DIR (see 'Run the tests' in the README)."""
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_data(*parts): the real data a test reads, as 'dataset/split' ('mnist/test', 'fashion-mnist/train')",
    )


def _needed_files(request: pytest.FixtureRequest) -> list[str]:
    marker = request.node.get_closest_marker("needs_data")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{request.node.nodeid} uses data_dir: mark it @pytest.mark.needs_data('dataset/split', ...)")
    files = []
    for part in marker.args:
        dataset, split = part.split("/")
        files += [f"{DATA_FILES[dataset]}/{name}" for name in SPLIT_FILES[split]]
    return files


@pytest.fixture
def data_dir(request: pytest.FixtureRequest) -> Path:
    """The real-data folder named by SEQCLF_DATA_DIR; skips, naming the files, when they are not there."""
    files = _needed_files(request)
    value = os.environ.get("SEQCLF_DATA_DIR")
    if not value:
        pytest.skip(f"SEQCLF_DATA_DIR is not set: this test reads real data, {', '.join(files)} under it")
    path = Path(value).resolve()  # absolute: tests may link to it from elsewhere
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        pytest.skip(f"SEQCLF_DATA_DIR={value} lacks {', '.join(missing)}, which this test reads")
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
