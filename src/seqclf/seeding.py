"""One call to seed every random number generator a run touches."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

__all__ = ["seed_everything"]

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device).

    Call it before building the model: PyTorch seeds each process randomly, so the
    initial weights are reproducible only if the global generator is seeded first.

    Returns:
        The seed, for logging.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32); got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    logger.debug("seeded python, numpy and torch with %d", seed)
    return seed
