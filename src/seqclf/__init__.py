"""seqclf: typed PyTorch sequence classification with recurrent networks.

The model layer is imported eagerly; the data layer and what builds on it (the trainer,
callbacks, recipes, datasets) on first use, so that ``import seqclf.model`` does not
load the data layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import checkpoint as checkpoint
from . import distributed as distributed
from . import encoders as encoders
from . import export as export
from . import normalization as normalization
from . import registry as registry
from . import ridge as ridge
from . import serialization as serialization
from ._version import __version__ as __version__
from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import latest_checkpoint as latest_checkpoint
from .history import History as History
from .inception_time import InceptionTime as InceptionTime
from .inception_time import InceptionTimeConfig as InceptionTimeConfig
from .lstm_fcn import LSTMFCN as LSTMFCN
from .lstm_fcn import LSTMFCNConfig as LSTMFCNConfig
from .model import ModelConfig as ModelConfig
from .model import SequenceClassifier as SequenceClassifier
from .model import StreamState as StreamState
from .registry import create_model as create_model
from .registry import list_models as list_models
from .registry import register_model as register_model
from .rocket import Rocket as Rocket
from .rocket import RocketConfig as RocketConfig
from .seeding import seed_everything as seed_everything
from .transforms import image_rows_as_sequence as image_rows_as_sequence

if TYPE_CHECKING:
    from . import callbacks as callbacks
    from . import datasets as datasets
    from . import recipes as recipes
    from .callbacks import Callback as Callback
    from .callbacks import Checkpoint as Checkpoint
    from .data import TensorSequenceDataset as TensorSequenceDataset
    from .data import pad_sequences as pad_sequences
    from .trainer import DivergenceError as DivergenceError
    from .trainer import Trainer as Trainer
    from .trainer import TrainState as TrainState

_LAZY_MODULES = ("callbacks", "datasets", "recipes")
_LAZY_NAMES = {
    "Callback": "callbacks",
    "Checkpoint": "callbacks",
    "TensorSequenceDataset": "data",
    "pad_sequences": "data",
    "DivergenceError": "trainer",
    "Trainer": "trainer",
    "TrainState": "trainer",
}


def __getattr__(name: str) -> Any:
    """The data-layer names, imported on first use."""
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "LSTMFCN",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "DivergenceError",
    "History",
    "InceptionTime",
    "InceptionTimeConfig",
    "LSTMFCNConfig",
    "ModelConfig",
    "Rocket",
    "RocketConfig",
    "SequenceClassifier",
    "StreamState",
    "TensorSequenceDataset",
    "TrainState",
    "Trainer",
    "__version__",
    "callbacks",
    "checkpoint",
    "create_model",
    "datasets",
    "distributed",
    "encoders",
    "export",
    "image_rows_as_sequence",
    "latest_checkpoint",
    "list_models",
    "normalization",
    "pad_sequences",
    "recipes",
    "register_model",
    "registry",
    "ridge",
    "seed_everything",
    "serialization",
]
