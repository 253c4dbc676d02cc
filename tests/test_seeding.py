from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from seqclf import seed_everything


def test_seeds_python_numpy_and_torch() -> None:
    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\)"):
        seed_everything(seed)  # type: ignore[arg-type]
