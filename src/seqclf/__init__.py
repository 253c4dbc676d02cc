"""seqclf: typed PyTorch sequence classification with recurrent networks."""

from . import callbacks as callbacks
from . import datasets as datasets
from . import recipes as recipes
from ._version import __version__ as __version__
from .callbacks import Callback as Callback
from .data import TensorSequenceDataset as TensorSequenceDataset
from .data import pad_sequences as pad_sequences
from .history import History as History
from .model import ModelConfig as ModelConfig
from .model import SequenceClassifier as SequenceClassifier
from .seeding import seed_everything as seed_everything
from .trainer import Trainer as Trainer
from .trainer import TrainState as TrainState
from .transforms import image_rows_as_sequence as image_rows_as_sequence

__all__ = [
    "Callback",
    "History",
    "ModelConfig",
    "SequenceClassifier",
    "TensorSequenceDataset",
    "TrainState",
    "Trainer",
    "__version__",
    "callbacks",
    "datasets",
    "image_rows_as_sequence",
    "pad_sequences",
    "recipes",
    "seed_everything",
]
