"""The scikit-learn text classifier (``seqclf.sklearn.TextClassifierEstimator``): raw strings in, labels out."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import Tensor

from ._checks import positive_int
from .callbacks import Callback
from .data import LengthBucketing, pad_sequences
from .progress import ProgressBar
from .recipes import SmallDataRecipe
from .registry import create_model
from .serialization import SerializationError, load_safetensors, save_safetensors
from .trainer import Trainer, resolve_device
from .vocabulary import UNKNOWN_ID, Vocabulary

__all__ = ["TextClassifierEstimator"]

sklearn_logger = logging.getLogger("seqclf.sklearn")
"""The public module's logger: a verbose fit's lines come from ``seqclf.sklearn``, as the other estimator's do."""

FORMAT = "seqclf-text-estimator"
"""The ``format`` entry of a file written by :meth:`TextClassifierEstimator.save`."""
FORMAT_VERSION = "1"
_PLAIN = (str, int, float, bool, type(None))


class TextClassifierEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A scikit-learn classifier of raw texts with any labels: tokeniser, vocabulary and a token model in one.

    ``fit(texts, y)`` tokenises each text with scikit-learn's word analyzer
    (``CountVectorizer(lowercase=lowercase).build_analyzer()``: words of two or more
    letters or digits), keeps its first ``max_length`` tokens, fits a
    :class:`~seqclf.vocabulary.Vocabulary` on the training texts (words seen at least
    ``min_count`` times, at most ``max_vocab`` ids; other words share the unknown id), and
    trains a recurrent token model (``"text_lstm"``: :class:`~seqclf.SequenceClassifier`
    with ``vocab_size``) with :class:`~seqclf.recipes.SmallDataRecipe` (a one-cycle
    schedule to ``lr``, at least ``min_epochs`` epochs and ``min_steps`` steps) and length
    bucketing. The defaults (a bidirectional GRU with a max readout over the first 400
    words, trained on every text, the last weights kept) were chosen on BBC News (see the
    text benchmark in ``docs/benchmarks.md``): holding out a validation set for early
    stopping scored lower there than training on all texts. The constructor takes
    hyperparameters only, so ``clone`` and ``GridSearchCV`` work.

    Args:
        embedding_dim: size of each token's learned vector.
        hidden_size: hidden units of the recurrent layer (per direction).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        bidirectional: also read each text backwards.
        readout: ``"last"``, ``"mean"`` or ``"max"`` over the recurrent outputs.
        dropout: dropout before the head.
        max_length: tokens read from the start of each text (longer texts are cut).
        min_count: a word enters the vocabulary when seen at least this many times.
        max_vocab: the most ids the vocabulary holds (the most frequent words are kept).
        lowercase: lowercase texts before tokenising.
        min_steps: the least number of optimizer steps.
        min_epochs: the least number of epochs.
        batch_size: texts per optimizer step.
        lr: Adam's peak learning rate.
        val_fraction: fraction held out for early stopping and choosing the best epoch's
            weights (when at least 50 texts would be held out); 0: train on every text and
            keep the last weights.
        random_state: seeds the weights, the split and the shuffling; None: a fresh draw.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
        verbose: 0: silent. 1: a line per epoch (train and validation loss and accuracy)
            and which epoch's weights were kept. 2: a live progress bar instead of the lines.

    Attributes:
        classes_: the sorted class labels seen by ``fit``; ``predict_proba``'s columns.
        vocabulary_: the fitted :class:`~seqclf.vocabulary.Vocabulary`.
        model_: the fitted :class:`~seqclf.SequenceClassifier` (in eval mode).
        history_: the fit's :class:`~seqclf.History`, one record per epoch.
        best_epoch_: the ``epoch`` of ``history_`` whose weights ``model_`` holds.

    Example:
        >>> texts = ["good fun film", "dull slow film", "good cast", "slow plot"] * 10
        >>> y = ["pos", "neg", "pos", "neg"] * 10
        >>> clf = TextClassifierEstimator(min_count=1, min_steps=30, random_state=0, device="cpu")
        >>> clf.fit(texts, y).predict(["good plot"]).shape
        (1,)
    """

    def __init__(
        self,
        *,
        embedding_dim: int = 64,
        hidden_size: int = 64,
        cell: str = "gru",
        bidirectional: bool = True,
        readout: str = "max",
        dropout: float = 0.0,
        max_length: int = 400,
        min_count: int = 2,
        max_vocab: int = 30_000,
        lowercase: bool = True,
        min_steps: int = 300,
        min_epochs: int = 12,
        batch_size: int = 32,
        lr: float = 5e-3,
        val_fraction: float = 0.0,
        random_state: int | None = None,
        device: str = "auto",
        verbose: int = 0,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.cell = cell
        self.bidirectional = bidirectional
        self.readout = readout
        self.dropout = dropout
        self.max_length = max_length
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.lowercase = lowercase
        self.min_steps = min_steps
        self.min_epochs = min_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------- sklearn API
    def fit(self, X: Any, y: Any) -> TextClassifierEstimator:
        """Fit on texts ``X`` (a list or 1-D array of str) and labels ``y`` of any kind."""
        # the two estimators report alike; imported here because seqclf.sklearn imports this module
        from .sklearn import _EpochLines, _kept_line, _lines_shown, _outcome, _verbosity

        verbose = _verbosity(self.verbose)
        tokens = self._tokenise(X, "X")
        y = column_or_1d(np.asarray(y), warn=True)
        if len(y) != len(tokens):
            raise ValueError(f"y must have one label per text of X ({len(tokens)}); got {len(y)} labels")
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y must hold at least two classes to fit a classifier; got only {classes.tolist()!r}")
        vocabulary = Vocabulary.fit(
            tokens, min_count=positive_int("min_count", self.min_count), max_size=self.max_vocab
        )
        x, lengths = self._ids(tokens, vocabulary)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        callbacks: list[Callback] = [_EpochLines()] if verbose == 1 else []
        callbacks += [ProgressBar(enabled=True)] if verbose == 2 else []
        with _lines_shown(verbose), torch.random.fork_rng(devices=[]):  # the fit's seed, not the caller's state
            if verbose:
                sklearn_logger.info(
                    "fitting on %d texts (up to %d tokens each), %d classes: a vocabulary of %d ids",
                    len(tokens), x.shape[1], len(classes), len(vocabulary),
                )
            torch.manual_seed(seed)
            model = self._build_model(len(vocabulary), len(classes))
            recipe = SmallDataRecipe(
                batch_size=min(positive_int("batch_size", self.batch_size), len(x)),
                min_steps=positive_int("min_steps", self.min_steps),
                min_epochs=positive_int("min_epochs", self.min_epochs),
                lr=self.lr,
                val_fraction=self.val_fraction,
            )
            trainer = recipe.fit(
                model,
                x,
                torch.from_numpy(y_index.astype(np.int64)),
                lengths,
                seed=seed,
                device=self.device,
                progress=False,
                callbacks=callbacks,
                batching=LengthBucketing(),
            )
            history, best_epoch = _outcome(trainer)
            if verbose:
                sklearn_logger.info("%s", _kept_line(history, best_epoch, trainer.epochs))
        self.model_ = model.eval()
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.classes_ = classes
        self.vocabulary_ = vocabulary
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_texts, n_classes)``; columns in ``classes_`` order."""
        check_is_fitted(self)
        x, lengths = self.encode(X)
        device = next(p.device for p in self.model_.parameters())
        trainer = Trainer(self.model_, device=device, progress=False)
        result: np.ndarray = trainer.predict_proba(x, lengths).double().numpy()
        return result

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each text, as in ``classes_`` (e.g. strings)."""
        check_is_fitted(self)
        result: np.ndarray = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return result

    def encode(self, X: Any) -> tuple[Tensor, Tensor]:
        """The fitted tokenisation of texts ``X``: padded ids ``(n_texts, time)`` int64 and lengths ``(n_texts,)``.

        This is what the model (and a model exported with :func:`seqclf.export.to_onnx`)
        takes; a text with no known word is one unknown id.
        """
        check_is_fitted(self)
        return self._ids(self._tokenise(X, "X"), self.vocabulary_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    # ------------------------------------------------------------ save and load
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the fitted estimator to one safetensors file: weights, and as JSON metadata the
        hyperparameters, classes and vocabulary (no pickle: nothing in it can run code).

        The write is atomic, and an existing file is replaced only with ``overwrite=True``.
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        bad = {k: type(v).__name__ for k, v in params.items() if not isinstance(v, _PLAIN)}
        if bad:
            raise TypeError(f"hyperparameters must be plain str, int, float, bool or None to be saved; got {bad}")
        classes = self.classes_.tolist()
        if not all(isinstance(c, _PLAIN) for c in classes):
            kinds = sorted({type(c).__name__ for c in classes})
            raise TypeError(f"classes_ must be str, int, float or bool labels to be saved; got {kinds}")
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": json.dumps(params, sort_keys=True),
            "classes": json.dumps(classes),
            "classes_dtype": self.classes_.dtype.str,
            "vocabulary": json.dumps(self.vocabulary_.to_dict()),
        }
        save_safetensors(self.model_.state_dict(), path, metadata=metadata, overwrite=overwrite)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TextClassifierEstimator:
        """An estimator written by :meth:`save`, ready to predict.

        Raises:
            SerializationError: the file is corrupt, truncated, not a text estimator file, or
                its weights do not fit the model its hyperparameters build.
        """
        tensors, metadata = load_safetensors(path)
        where = repr(str(path))
        if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
            raise SerializationError(
                f"{where} must be a file written by {cls.__name__}.save (format={FORMAT!r} version "
                f"{FORMAT_VERSION}); got format={metadata.get('format')!r} version {metadata.get('format_version')!r}"
            )
        try:
            estimator = cls(**json.loads(metadata["params"]))
            classes = np.asarray(json.loads(metadata["classes"]), dtype=np.dtype(metadata["classes_dtype"]))
            vocabulary = Vocabulary.from_dict(json.loads(metadata["vocabulary"]))
            model = estimator._build_model(len(vocabulary), len(classes))
            model.load_state_dict(tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise SerializationError(
                f"{where} must hold the hyperparameters, classes, vocabulary and weights of a fitted "
                f"{cls.__name__}; got {type(error).__name__}: {error}"
            ) from error
        estimator.model_ = model.to(resolve_device(estimator.device)).eval()
        estimator.classes_ = classes
        estimator.vocabulary_ = vocabulary
        return estimator

    # ---------------------------------------------------------------- helpers
    def _build_model(self, vocab_size: int, n_classes: int) -> torch.nn.Module:
        return create_model(
            "text_lstm",
            input_size=self.embedding_dim,
            num_classes=n_classes,
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            cell=self.cell,
            bidirectional=self.bidirectional,
            readout=self.readout,
            dropout=self.dropout,
        )

    def _analyzer(self) -> Callable[[str], list[str]]:
        analyzer: Callable[[str], list[str]] = CountVectorizer(lowercase=self.lowercase).build_analyzer()
        return analyzer

    def _tokenise(self, X: Any, name: str) -> list[list[str]]:
        """Each text of ``X`` as its first ``max_length`` tokens."""
        if isinstance(X, str) or not hasattr(X, "__len__") or (isinstance(X, np.ndarray) and X.ndim != 1):
            got = f"array of shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
            raise TypeError(f"{name} must be a list or 1-D array of str (one text each); got {got}")
        if len(X) == 0:
            raise ValueError(f"{name} must hold at least one text; got 0")
        max_length = positive_int("max_length", self.max_length)
        analyzer = self._analyzer()
        tokens = []
        for i, text in enumerate(X):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a str; got {type(text).__name__} {text!r:.40}")
            tokens.append(analyzer(text)[:max_length])
        return tokens

    @staticmethod
    def _ids(tokens: list[list[str]], vocabulary: Vocabulary) -> tuple[Tensor, Tensor]:
        sequences = [vocabulary.encode(t) if t else np.array([UNKNOWN_ID]) for t in tokens]
        padded, lengths = pad_sequences(sequences)
        return padded, lengths  # (N, T) int64, (N,)
