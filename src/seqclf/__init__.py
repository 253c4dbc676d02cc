"""seqclf: typed PyTorch sequence classification with recurrent networks."""

from . import callbacks as callbacks
from . import checkpoint as checkpoint
from . import datasets as datasets
from . import distributed as distributed
from . import encoders as encoders
from . import export as export
from . import normalization as normalization
from . import recipes as recipes
from . import registry as registry
from . import serialization as serialization
from ._version import __version__ as __version__
from .callbacks import Callback as Callback
from .callbacks import Checkpoint as Checkpoint
from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import latest_checkpoint as latest_checkpoint
from .data import TensorSequenceDataset as TensorSequenceDataset
from .data import pad_sequences as pad_sequences
from .history import History as History
from .lstm_fcn import LSTMFCN as LSTMFCN
from .lstm_fcn import LSTMFCNConfig as LSTMFCNConfig
from .model import ModelConfig as ModelConfig
from .model import SequenceClassifier as SequenceClassifier
from .model import StreamState as StreamState
from .registry import create_model as create_model
from .registry import list_models as list_models
from .registry import register_model as register_model
from .seeding import seed_everything as seed_everything
from .trainer import DivergenceError as DivergenceError
from .trainer import Trainer as Trainer
from .trainer import TrainState as TrainState
from .transforms import image_rows_as_sequence as image_rows_as_sequence

__all__ = [
    "LSTMFCN",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "DivergenceError",
    "History",
    "LSTMFCNConfig",
    "ModelConfig",
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
    "seed_everything",
    "serialization",
]
