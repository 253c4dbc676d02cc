"""scikit-learn estimators: numpy or aeon data (or raw texts) and any labels in, the original labels out.

Needs scikit-learn: ``pip install scikit-learn`` (or, in a clone of seqclf,
``pip install -e ".[sklearn]"``)::

    from aeon.datasets import load_classification
    from seqclf.sklearn import SequenceClassifierEstimator

    X, y = load_classification("GunPoint", split="train")  # (50, 1, 150), string labels
    clf = SequenceClassifierEstimator().fit(X, y)  # reads aeon's (n_cases, n_channels, n_timepoints)
    clf.predict(load_classification("GunPoint", split="test")[0])
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as error:  # pragma: no cover - the test environment has scikit-learn
    raise ImportError(
        "seqclf.sklearn needs scikit-learn, which is not installed: pip install scikit-learn "
        '(or, in a clone of seqclf, pip install -e ".[sklearn]")'
    ) from error

from ._checks import positive_int
from ._ensemble import ProbabilityMean
from ._files import CheckpointError, read_file
from ._formats import ESTIMATOR_FORMAT, container_of
from ._inference import batch_logits, model_source
from .batching import LengthBucketing
from .callbacks import Callback, EarlyStopping
from .data import TensorSource, _from_numpy, _nan_padding_lengths, channels_last, pad_sequences
from .history import History, Record
from .ngram_bag import NgramBag, fit_ngram_bag
from .progress import ProgressBar
from .recipes import SMALL_DATA, SmallDataRecipe
from .registry import create_model, model_entry
from .serialization import (
    SerializableModel,
    SerializationError,
    _check_fit,
    _load_file,
    _model_class,
    _model_from_config,
    _save_file,
    load_safetensors,
    save_safetensors,
)
from .trainer import Trainer, resolve_device
from .vocabulary import UNKNOWN_ID, Vocabulary

__all__ = ["SequenceClassifierEstimator", "TextClassifierEstimator"]

logger = logging.getLogger(__name__)

Layout = Literal["ntc", "nct"]
Model = str
"""A registered model name (:func:`seqclf.list_models`)."""
KIND = "seqclf.sklearn"
"""The ``kind`` field of an estimator file in the older torch format, which :meth:`load` still reads."""
KIND_VERSION = 1
"""The version of that 0.1 file that this seqclf reads (and older ones)."""
_ESTIMATOR_VERSION = "1"  # of the safetensors estimator file save writes
_PLAIN = (str, int, float, bool, type(None))
_TEXT_FORMAT = "seqclf-text-estimator"
"""The ``format`` entry of a file written by :meth:`TextClassifierEstimator.save`."""
_TEXT_FORMAT_VERSION = "1"
_NGRAM_PREFIX = "ngram_model."  # the n-gram bag's weights in a text estimator's file


class SequenceClassifierEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A scikit-learn classifier of sequences (fixed or variable length), with any labels.

    The constructor takes hyperparameters only, so ``get_params``, ``set_params``,
    ``sklearn.base.clone``, ``cross_val_score`` and ``GridSearchCV`` work as with any
    scikit-learn classifier.

    ``X`` is laid out as in aeon and sktime by default: a 3-D array ``(n_cases,
    n_channels, n_timepoints)``, a 2-D array ``(n_cases, n_timepoints)`` of univariate
    series, or a list of ``(n_channels, n_timepoints_i)`` arrays (1-D for univariate ones)
    when the lengths differ. Data laid out ``(n_cases, n_timepoints, n_features)`` needs
    ``layout="ntc"``. The default never guesses: a 3-D array with more channels than time
    points, which is more often ``(n_cases, n_timepoints, n_features)`` data, is refused
    with a message naming both layouts; pass ``layout="nct"`` to read it channels-first.

    The default model is :class:`~seqclf.Rocket` with Hydra's kernels
    (``"rocket_hydra"``): thousands of random convolutional kernels (ROCKET's, pooled as
    MultiRocket pools them, and Hydra's competing groups) and a ridge-regression head
    fitted in closed form (no optimizer, no epochs; the penalty chosen by leave-one-out
    error), chosen by measurement over UCR archive data sets (see the Benchmarks page of
    the documentation). It standardises each input feature inside itself, with statistics
    fitted on the training data and saved with the weights. Every other registered model
    (``"inception_time_small"``, ``"lstm_fcn"``, ``"lstm"``...) is trained by gradient
    with :data:`seqclf.recipes.SMALL_DATA` (at least ``min_steps`` optimizer steps, more
    with many classes, a one-cycle schedule, a validation split with early stopping on
    data sets large enough for one); see the Time-series classification page. The training knobs
    (``min_steps``, ``batch_size``, ``lr``, ``val_fraction``) apply to those models only:
    set with ``"rocket_hydra"`` or ``"rocket"``, they are refused.

    Args:
        layout: how ``X`` is laid out. None (the default): channels-first as in aeon and
            sktime, refusing a 3-D array with more channels than time points (see above).
            ``"nct"``: channels-first, ``(n_cases, n_channels, n_timepoints)`` or a list
            of ``(n_channels, n_timepoints_i)``, whatever the sizes. ``"ntc"``: channels-last,
            ``(n_cases, n_timepoints, n_features)`` or a list of ``(n_timepoints_i,
            n_features)``. In every layout a 2-D array is ``(n_cases, n_timepoints)``
            univariate series and a list of 1-D arrays holds univariate series. In an
            array, sequences of unequal length may be padded at the end with NaN (the UCR
            archive's convention): each ends at its last step that is not all NaN.
        model: a registered model name (:func:`seqclf.list_models`): ``"rocket_hydra"``
            and ``"rocket"`` (:class:`~seqclf.Rocket` with and without Hydra's kernels,
            fitted in closed form), ``"inception_time_small"``
            (:class:`~seqclf.InceptionTime` with 16 filters and 3 modules),
            ``"inception_time"`` (the published network),
            ``"lstm_fcn"`` (:class:`~seqclf.LSTMFCN`),
            ``"lstm"`` (a plain :class:`~seqclf.SequenceClassifier`), ...
        hidden_size: hidden units of the recurrent layer (per direction); None: the
            model's default (32 for ``"lstm_fcn"``, 64 for ``"lstm"``).
        num_layers: stacked recurrent layers (``"lstm"`` only).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (``"lstm"`` only).
        bidirectional: also read each sequence backwards (``"lstm"`` only).
        dropout: dropout before the head (and between stacked layers); None: the
            model's default (0.2 for ``"lstm_fcn"``, 0 for ``"lstm"``).
        readout: ``"last"``, ``"mean"`` or ``"max"`` (see :class:`seqclf.SequenceClassifier`).
        normalize: standardise each feature inside the model.
        min_steps: the training budget in optimizer steps (not epochs, so that a tiny
            training set still gets enough updates) for up to 20 classes, growing in
            proportion with more; at least 30 epochs are run.
        batch_size: sequences per optimizer step (at most the training set's size).
        lr: Adam's peak learning rate (one-cycle schedule).
        val_fraction: the fraction held out for early stopping when the data set is
            large enough (see :class:`~seqclf.recipes.SmallDataRecipe`); 0: never.
        random_state: seeds the initial weights, the shuffling and dropout; an int for
            reproducible fits, None for a fresh draw from numpy's global generator.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
        verbose: 0: silent. 1: a line per epoch (train and validation loss and accuracy)
            and a line at the start and the end of ``fit`` (which epoch's weights were
            kept). 2: the start and end lines, and a live progress bar per epoch
            (:class:`~seqclf.progress.ProgressBar`) that stays on screen as the epoch's
            line. The lines are logged by the ``seqclf.sklearn`` logger at INFO; when
            logging is not configured they go to stderr for the duration of ``fit``.

    Attributes:
        classes_: the sorted class labels seen by ``fit``; ``predict_proba``'s columns
            follow this order.
        n_features_in_: features (channels) per time step seen by ``fit``.
        model_: the fitted :class:`torch.nn.Module` (on ``device``, in eval mode).
        history_: the fit's :class:`~seqclf.History`, one record per epoch
            (``epoch`` from 0, ``train_loss``, ``train_accuracy``, and ``val_loss``,
            ``val_accuracy`` when a validation set was held out). A model fitted in closed
            form has one record: ``epoch`` 0, ``loo_accuracy`` (its leave-one-out accuracy
            on the training data) and ``alpha`` (the ridge penalty chosen).
        best_epoch_: the ``epoch`` of ``history_`` whose weights ``model_`` holds: the
            lowest validation loss when a validation set was held out, else the last epoch
            (0 for a model fitted in closed form).

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(40, 2, 12))  # (n_cases, n_channels, n_timepoints)
        >>> y = np.where(X[:, 0, :].mean(axis=1) > 0, "up", "down")
        >>> clf = SequenceClassifierEstimator(random_state=0, device="cpu").fit(X, y)
        >>> clf.classes_.tolist(), clf.predict(X[:3]).shape, clf.predict_proba(X[:3]).shape
        (['down', 'up'], (3,), (3, 2))
        >>> len(clf.history_) > 0 and clf.best_epoch_ == clf.history_[-1]["epoch"]
        True
    """

    def __init__(
        self,
        *,
        layout: Layout | None = None,
        model: Model = "rocket_hydra",
        hidden_size: int | None = None,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float | None = None,
        readout: str = "last",
        normalize: bool = True,
        min_steps: int = SMALL_DATA.min_steps,
        batch_size: int = SMALL_DATA.batch_size,
        lr: float = SMALL_DATA.lr,
        val_fraction: float = SMALL_DATA.val_fraction,
        random_state: int | None = None,
        device: str = "auto",
        verbose: int = 0,
    ) -> None:
        self.layout = layout
        self.model = model
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.readout = readout
        self.normalize = normalize
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        """Each constructor argument's default."""
        return {name: p.default for name, p in inspect.signature(cls).parameters.items()}

    # ------------------------------------------------------ the two steps to swap
    def _build_model(self, n_features: int, n_classes: int) -> nn.Module:
        """A fresh model mapping ``(x (B, T, n_features), lengths)`` to logits ``(B, n_classes)``.

        ``model`` is any registered name (:func:`seqclf.list_models`). Each hyperparameter
        the model takes is passed on, except one left at this estimator's default where the
        name gives its own (``cell`` for ``"gru"``) and None (the model's default); one the
        model does not take must stay at this estimator's default.
        """
        entry = model_entry(self.model)
        defaults = self._defaults()
        options: dict[str, Any] = {}
        refused: dict[str, Any] = {}
        for name in ("hidden_size", "num_layers", "cell", "bidirectional", "dropout", "readout", "normalize"):
            value = getattr(self, name)
            if value is None or (value == defaults[name] and name in entry.defaults):
                continue
            if name in entry.options:
                options[name] = value
            elif value != defaults[name]:
                refused[name] = value
        if refused:
            raise ValueError(
                f"{sorted(refused)} do not apply to model={self.model!r} (it takes {sorted(entry.options)}); "
                f"got {refused}: leave them at their defaults"
            )
        return create_model(self.model, input_size=n_features, num_classes=n_classes, **options)

    def _train(self, model: nn.Module, x: Tensor, lengths: Tensor | None, y: Tensor, seed: int) -> Trainer:
        """Train ``model`` in place on ``x`` ``(N, T, F)``, ``lengths`` ``(N,)`` or None, ``y`` ``(N,)`` int64.

        The recipe: :class:`~seqclf.recipes.SmallDataRecipe` with this estimator's
        ``min_steps``, ``batch_size``, ``lr`` and ``val_fraction``. Returns the trainer,
        whose history and callbacks give ``history_`` and ``best_epoch_``.
        """
        recipe = SmallDataRecipe(
            batch_size=min(positive_int("batch_size", self.batch_size), len(x)),
            min_steps=positive_int("min_steps", self.min_steps),
            lr=self.lr,
            val_fraction=self.val_fraction,
        )
        verbose = _verbosity(self.verbose)
        callbacks: list[Callback] = []
        if verbose == 1:
            callbacks.append(_EpochLines())
        elif verbose == 2:
            callbacks.append(ProgressBar(enabled=True))
        if verbose:
            train_index, val_index = recipe.split(y, seed)  # the split recipe.fit draws
            no_validation = "val_fraction=0" if self.val_fraction == 0 else (
                f"fewer than {recipe.min_val_size} sequences would be held out")
            logger.info(
                "fitting %s on %d sequences (%d features, up to %d time points), %d classes: %d epochs of "
                "%d steps, %s",
                type(model).__name__, len(train_index), x.shape[-1], x.shape[1], int(y.max()) + 1,
                recipe.epochs(len(train_index)), math.ceil(len(train_index) / recipe.batch_size),
                f"keeping the weights of the epoch with the lowest loss on {len(val_index)} held-out sequences"
                if len(val_index) else f"keeping the last epoch's weights (no validation set: {no_validation})",
            )
        return recipe.fit(model, x, y, lengths, seed=seed, device=self.device, progress=False, callbacks=callbacks)

    def _fit_closed_form(
        self, model: nn.Module, x: Tensor, lengths: Tensor | None, y: Tensor
    ) -> tuple[History, int | None]:
        """Fit a model that fits in closed form (its ``fit_closed_form``, e.g. :class:`~seqclf.Rocket`'s ridge).

        No optimizer runs, so the training knobs must stay at their defaults. The history
        is one record: the leave-one-out accuracy and the ridge penalty chosen.
        """
        defaults = self._defaults()
        knobs = {name: getattr(self, name) for name in ("min_steps", "batch_size", "lr", "val_fraction")
                 if getattr(self, name) != defaults[name]}
        if knobs:
            raise ValueError(
                f"{sorted(knobs)} do not apply to model={self.model!r}, which is fitted in closed form (ridge "
                f"regression, no optimizer); got {knobs}: leave them at their defaults"
            )
        device = resolve_device(self.device)
        model.to(device)
        source = model_source(model, (x,) if lengths is None else (x, lengths), device, name="X", labelled=False)
        assert isinstance(source, TensorSource)  # an X and its lengths make a tensor source
        if _verbosity(self.verbose):
            logger.info("fitting %s on %d sequences (%d features, up to %d time points), %d classes: in closed form",
                        type(model).__name__, len(x), x.shape[-1], x.shape[1], int(y.max()) + 1)
        fit_closed_form: Callable[..., Any] = getattr(model, "fit_closed_form")  # noqa: B009 (an nn.Module's method)
        fit = fit_closed_form(source.x, y.to(device), source.lengths)
        record: Record = {"epoch": 0, "loo_accuracy": float(fit.loo_accuracy), "alpha": float(fit.alpha)}
        if _verbosity(self.verbose):
            logger.info("fit done: ridge penalty %.3g chosen by leave-one-out error (leave-one-out accuracy %.4f)",
                        fit.alpha, fit.loo_accuracy)
        return History([record]), 0

    # ------------------------------------------------------------- sklearn API
    def fit(self, X: Any, y: Any) -> SequenceClassifierEstimator:
        """Fit on sequences ``X`` (laid out as ``layout`` says) and labels ``y`` of any kind.

        Raises:
            ValueError: ``X`` holds no sequences, is laid out ambiguously (see ``layout``),
                or ``y`` does not give one label of at least two classes per sequence.
        """
        verbose = _verbosity(self.verbose)
        x, lengths = self._sequences(X, "X", fitting=True)
        y = column_or_1d(np.asarray(y), warn=True)
        if len(y) != len(x):
            raise ValueError(f"y must have one label per sequence of X ({len(x)}); got {len(y)} labels")
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"y must hold at least two classes to fit a classifier; got only {classes.tolist()!r} "
                f"in all {len(y)} labels"
            )
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with _lines_shown(verbose), torch.random.fork_rng(devices=[]):  # the fit's seed, not the caller's state
            torch.manual_seed(seed)
            model = self._build_model(int(x.shape[-1]), len(classes))
            labels = torch.from_numpy(y_index.astype(np.int64))
            if callable(getattr(model, "fit_closed_form", None)):
                history, best_epoch = self._fit_closed_form(model, x, lengths, labels)
            else:
                trainer = self._train(model, x, lengths, labels, seed)
                if not isinstance(trainer, Trainer):
                    raise TypeError(
                        f"_train must return the Trainer that trained the model; got {type(trainer).__name__}")
                history, best_epoch = _outcome(trainer)
                if verbose:
                    logger.info("%s", _kept_line(history, best_epoch, trainer.epochs))
        self.model_ = model.eval()
        self.classes_ = classes
        self.n_features_in_ = int(x.shape[-1])
        self.history_ = history
        self.best_epoch_ = best_epoch
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_cases, n_classes)``; columns in ``classes_`` order."""
        check_is_fitted(self)
        x, lengths = self._sequences(X, "X")
        if x.shape[-1] != self.n_features_in_:
            raise ValueError(
                f"X must have {self.n_features_in_} features per time step, as in fit; got {x.shape[-1]} "
                f"(shape {tuple(x.shape)} after layout={self.layout!r})"
            )
        device = next((p.device for p in self.model_.parameters()), torch.device("cpu"))
        # the trainer's inference path: X is converted to the model's dtype there, once
        source = model_source(self.model_, (x,) if lengths is None else (x, lengths), device, name="X", labelled=False)
        proba = [logits.softmax(dim=1).cpu() for _, logits in batch_logits(self.model_, source, device, 1024)]
        return torch.cat(proba).double().numpy()  # (N, C)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each sequence, as in ``classes_`` (e.g. strings)."""
        check_is_fitted(self)
        result: np.ndarray = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return result

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True  # (n_cases, n_timepoints) univariate series
        tags.input_tags.three_d_array = True
        return tags

    # ------------------------------------------------------------ save and load
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the fitted estimator to ``path`` as one safetensors file: weights and plain metadata, no code.

        The file holds the model's weights as tensors and, as JSON in its metadata, the
        hyperparameters, ``classes_``, ``n_features_in_``, the fit's history (when the
        estimator keeps one) and the model's class and config, with a SHA-256 checksum, as
        a model file does (see ``docs/saving.md``). It is written to a temporary file and
        then moved into place, so a failed save leaves any file already at ``path`` as it
        was; an existing file is replaced only with ``overwrite=True``.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
            TypeError: a hyperparameter or a class label is not plain data (nothing is written).
            OSError: the write failed (e.g. a full disk); ``path`` is then left as it was.
        """
        check_is_fitted(self)
        plain = _plain_metadata(self)
        metadata = {
            "format": ESTIMATOR_FORMAT,
            "format_version": _ESTIMATOR_VERSION,
            "estimator_class": type(self).__name__,
            **plain,
            "n_features_in": str(self.n_features_in_),
        }
        history = getattr(self, "history_", None)  # the fit's record, when the estimator keeps one
        if isinstance(history, History):
            metadata["history"] = history.to_json()
            metadata["best_epoch"] = json.dumps(getattr(self, "best_epoch_", None))
        config = getattr(self.model_, "config", None)
        if isinstance(self.model_, SerializableModel) and callable(getattr(config, "to_dict", None)):
            # the model rebuilds from its own config, whatever the hyperparameters' defaults become
            metadata["model_class"] = type(self.model_).__name__
            metadata["config"] = json.dumps(config.to_dict(), sort_keys=True)  # type: ignore[union-attr]
        _save_file(self.model_.state_dict(), path, metadata, overwrite=overwrite)
        return Path(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> SequenceClassifierEstimator:
        """An estimator written by :meth:`save`, ready to predict; nothing in the file can run code.

        Reads the files :meth:`save` writes and those of the older torch format (read with
        ``torch.load(weights_only=True)``).

        Args:
            path: the file :meth:`save` wrote.
            device: where to put the model (``"cpu"``, ``"cuda"``, ``"auto"``...), which
                becomes the estimator's ``device``. None: the device it was saved with if
                this machine has it, else the CPU (with a logged warning).

        Raises:
            ValueError: ``device`` names a device this machine does not have.
            UnsafeCheckpointError: the file would run code when unpickled (nothing ran).
            CheckpointError: the file is truncated, corrupted (checksum), of another kind
                (the message names it and the call that reads it), or its weights do not fit
                the model it describes.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
        file = Path(path)
        if file.is_file():
            with open(file, "rb") as handle:
                container = container_of(handle.read(16), file.stat().st_size)
        else:
            container = "unknown"  # read_file says what is wrong with the path
        if container == "safetensors":
            estimator, model = cls._from_safetensors(file)
        else:
            estimator, model = cls._from_torch_file(file)
        target, estimator.device = _device_to_load_on(estimator.device, device, file)
        estimator.model_ = model.to(target).eval()
        return estimator

    @classmethod
    def _from_safetensors(cls, path: Path) -> tuple[SequenceClassifierEstimator, nn.Module]:
        """The estimator (without ``model_``) and its model from a file :meth:`save` wrote."""
        where = repr(str(path))
        tensors, metadata = _load_file(path, ESTIMATOR_FORMAT, (_ESTIMATOR_VERSION,))
        try:
            params = json.loads(metadata["params"])
            classes = json.loads(metadata["classes"])
            if not isinstance(params, dict) or not isinstance(classes, list):
                raise TypeError(f"params must be a JSON object and classes a list; got {type(params).__name__} "
                                f"and {type(classes).__name__}")
            estimator = cls(**params)
            estimator.classes_ = np.asarray(classes, dtype=np.dtype(metadata["classes_dtype"]))
            estimator.n_features_in_ = int(metadata["n_features_in"])
            if estimator.classes_.ndim != 1:
                raise ValueError(f"classes must be a list of labels; got shape {estimator.classes_.shape}")
            if "history" in metadata:
                estimator.history_ = History.from_json(metadata["history"])
                best_epoch = json.loads(metadata.get("best_epoch", "null"))
                if best_epoch is not None and (isinstance(best_epoch, bool) or not isinstance(best_epoch, int)):
                    raise TypeError(f"best_epoch must be an int or null; got {type(best_epoch).__name__}")
                estimator.best_epoch_ = best_epoch
        except (KeyError, TypeError, ValueError, RecursionError) as error:
            raise CheckpointError(
                f"{where} must hold the hyperparameters and classes of a fitted {cls.__name__} that fit this "
                f"seqclf; got {type(error).__name__}: {str(error)[:300]}"
            ) from error
        if "model_class" not in metadata:  # a model without a config: the hyperparameters build it
            return estimator, _model_from_params(estimator, tensors, where)
        model = _model_from_config(_model_class(metadata["model_class"], where), metadata.get("config"), tensors, where)
        config = getattr(model, "config", None)
        for field, value in (("num_classes", len(estimator.classes_)), ("input_size", estimator.n_features_in_)):
            if getattr(config, field, value) != value:
                raise CheckpointError(
                    f"{where} must hold a model that fits its classes and features; got a model with "
                    f"{field}={getattr(config, field)!r} for {value}"
                )
        return estimator, model

    @classmethod
    def _from_torch_file(cls, path: Path) -> tuple[SequenceClassifierEstimator, nn.Module]:
        """The estimator (without ``model_``) and its model from an estimator file in the older torch format."""
        where = repr(str(path))
        data = read_file(path, kind="estimator")
        if not isinstance(data.get("kind_version"), int) or data["kind_version"] > KIND_VERSION:
            raise CheckpointError(
                f"{where} has kind_version {data.get('kind_version')!r}; this seqclf reads "
                f"<= {KIND_VERSION}: upgrade seqclf to read it"
            )
        try:
            estimator = cls(**data["params"])
            estimator.classes_ = np.asarray(data["classes"], dtype=np.dtype(data["classes_dtype"]))
            estimator.n_features_in_ = int(data["n_features_in"])
            weights = data["state_dict"]
            if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
                raise TypeError(f"state_dict must be a dict of tensors; got {type(weights).__name__}")
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{where} must hold the hyperparameters, classes and weights of a fitted "
                f"{cls.__name__} that fit this seqclf; got {type(error).__name__}: {error}"
            ) from error
        return estimator, _model_from_params(estimator, weights, where)

    # ---------------------------------------------------------------- helpers
    def _sequences(self, X: Any, name: str, *, fitting: bool = False) -> tuple[Tensor, Tensor | None]:
        """``X`` as a floating ``(N, T, F)`` tensor (and lengths when they differ), laid out as ``layout`` says.

        A floating-point array keeps its dtype and is used in place where it can be (the
        trainer's source converts it to the model's dtype, once); integers become float32.
        """
        if self.layout not in (None, "ntc", "nct"):
            raise ValueError(f"layout must be None, 'nct' or 'ntc'; got {self.layout!r}")
        channels_first = self.layout != "ntc"
        if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1:
            X = list(X)
        if _is_empty(X):
            what = f"an empty {type(X).__name__}" + (f" of shape {tuple(X.shape)}" if hasattr(X, "shape") else "")
            if fitting:
                raise ValueError(f"{name} must hold the training sequences; got no training data ({what})")
            raise ValueError(f"{name} must hold at least one sequence to predict; got {what}")
        if isinstance(X, (list, tuple)) and all(isinstance(s, (np.ndarray, Tensor)) for s in X):
            sequences = [_float_sequence(s, f"{name}[{i}]", channels_first) for i, s in enumerate(X)]
            sizes = sorted({int(s.shape[1]) for s in sequences})
            if len(sizes) > 1:
                axes = "n_channels, n_timepoints_i" if channels_first else "n_timepoints_i, n_features"
                other = "'ntc'" if channels_first else "None (channels-first)"
                raise ValueError(
                    f"{name}'s sequences must be ({axes}) arrays (layout={self.layout!r}) with the same number of "
                    f"{'channels' if channels_first else 'features'}; got {sizes} (for the other layout pass "
                    f"layout={other})"
                )
            if self.layout is None and fitting:
                _refuse_ambiguous(name, len(sequences), sizes[0], max(len(s) for s in sequences), "list")
            if all(s.shape == sequences[0].shape for s in sequences):
                return torch.stack(sequences), None
            x, lengths = pad_sequences(sequences)
            return x, lengths
        if not isinstance(X, Tensor):
            X = np.asarray(X)
            if X.dtype.kind not in "fiub":
                raise TypeError(f"{name} must hold numbers; got dtype {X.dtype}")
            X = _from_numpy(X, name)
        if X.dim() == 2:  # (n_cases, n_timepoints): univariate in every layout
            X = X[:, :, None]  # (N, T, 1)
        elif X.dim() == 3:
            if self.layout is None and fitting:
                _refuse_ambiguous(name, X.shape[0], X.shape[1], X.shape[2], "array")
            if channels_first:
                X = channels_last(X)  # (N, C, T) -> (N, T, C)
        else:
            axes = "(n_cases, n_channels, n_timepoints)" if channels_first else "(n_cases, n_timepoints, n_features)"
            raise ValueError(
                f"{name} must be a 3-D array {axes} (layout={self.layout!r}), a 2-D array (n_cases, n_timepoints) "
                f"of univariate series, or a list of sequences; got shape {tuple(X.shape)}"
            )
        X = X if X.is_floating_point() else X.float()
        return X, _nan_padding_lengths(X)  # sequences that end in all-NaN steps are padded (UCR's convention)


def _is_empty(X: Any) -> bool:
    """Whether ``X`` holds no sequences (an empty list, tuple or array)."""
    if isinstance(X, (list, tuple)):
        return len(X) == 0
    shape = getattr(X, "shape", None)
    return shape is not None and len(shape) > 0 and shape[0] == 0


def _refuse_ambiguous(name: str, n: int, channels: int, timepoints: int, kind: str) -> None:
    """Refuse, under the default layout, data with more channels than time points: likely channels-last."""
    if channels <= timepoints:
        return
    if kind == "array":
        got = f"shape {(n, channels, timepoints)}"
    else:
        got = f"{n} sequences of {channels} rows and at most {timepoints} columns"
    raise ValueError(
        f"{name} is read channels-first by default (n_cases, n_channels, n_timepoints), as aeon and sktime "
        f"hold data, but {got} would mean {channels} channels of at most {timepoints} time points, which "
        f"looks like (n_cases, n_timepoints, n_features) data: pass layout='ntc' if it is laid out "
        f"(n_cases, n_timepoints, n_features), or layout='nct' to read it channels-first"
    )


def _float_sequence(seq: np.ndarray | Tensor, what: str, channels_first: bool) -> Tensor:
    """One sequence as a float32 ``(T_i, F)`` tensor; 1-D ``(T_i,)`` is univariate."""
    if seq.ndim not in (1, 2):
        axes = "(n_channels, n_timepoints)" if channels_first else "(n_timepoints, n_features)"
        raise ValueError(f"{what} must be a 2-D sequence {axes} or a 1-D univariate one; got shape {tuple(seq.shape)}")
    if isinstance(seq, np.ndarray):
        if seq.dtype.kind not in "fiub":
            raise TypeError(f"{what} must hold numbers; got dtype {seq.dtype}")
        seq = _from_numpy(seq, what)
    if seq.dim() == 1:
        seq = seq[:, None]  # (T_i, 1)
    elif channels_first:
        seq = seq.T  # (C, T_i) -> (T_i, C)
    return seq if seq.is_floating_point() else seq.float()


def _verbosity(verbose: Any) -> int:
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0 (silent), 1 (a line per epoch) or 2 (a progress bar); got {verbose!r}")
    return int(verbose)


class _EpochLines(Callback):
    """Log one line per epoch: its train and validation metrics."""

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        metrics = ", ".join(f"{key} {value:.4f}" for key, value in record.items()
                            if isinstance(value, float) and key.startswith(("train_", "val_")))
        logger.info("epoch %d/%d: %s", int(record["epoch"] or 0) + 1, trainer.epochs, metrics)


def _outcome(trainer: Trainer) -> tuple[History, int | None]:
    """The fit's history and the epoch whose weights the model holds."""
    history = History(dict(record) for record in trainer.history)
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.restore_best_weights and callback.best_epoch is not None:
            return history, callback.best_epoch
    last = history[-1]["epoch"] if history else None
    return history, last if isinstance(last, int) else None


def _kept_line(history: History, best_epoch: int | None, epochs: int) -> str:
    """Which epoch's weights the fit kept, and why, as one line."""
    if best_epoch is None:
        return "fit done: no epoch ran"
    ran = len(history)
    stopped = f"stopped early after {ran} of {epochs} epochs" if ran < epochs else f"ran all {epochs} epochs"
    record = next((r for r in history if r.get("epoch") == best_epoch), {})
    val_loss = record.get("val_loss")
    if isinstance(val_loss, float):
        return f"fit done ({stopped}): kept the weights of epoch {best_epoch + 1}, the lowest val_loss {val_loss:.4f}"
    return f"fit done ({stopped}): kept the weights of the last epoch, {best_epoch + 1}"


@contextlib.contextmanager
def _lines_shown(verbose: int) -> Iterator[None]:
    """Make this module's INFO lines visible during a verbose fit; logging as the user set it up otherwise.

    When no handler would receive them (logging not configured), they go to stderr
    through a handler added for the duration; a level above INFO is lowered for it.
    """
    if not verbose:
        yield
        return
    level = logger.level
    handler: logging.Handler | None = None
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()  # sys.stderr at this moment
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def _model_from_params(estimator: SequenceClassifierEstimator, weights: dict[str, Tensor], where: str) -> nn.Module:
    """The model ``estimator``'s hyperparameters build, with ``weights`` loaded (checked first on a meta model)."""
    name = type(estimator).__name__
    size = (estimator.n_features_in_, len(estimator.classes_))
    try:
        with torch.device("meta"):  # allocates nothing: a file cannot make this build a huge model
            skeleton = estimator._build_model(*size)
        _check_fit(skeleton, weights, where, type(skeleton).__name__)
        model = estimator._build_model(*size)
        model.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            f"{where} must hold the hyperparameters, classes and weights of a fitted {name} that fit this "
            f"seqclf; got {type(error).__name__}: {error}"
        ) from error
    return model


def _device_to_load_on(saved: Any, device: str | torch.device | None, path: Path) -> tuple[torch.device, str]:
    """Where to load, and the estimator's ``device`` parameter after loading.

    ``device`` if given (it must exist); else the ``saved`` device if this machine has it;
    else the CPU, with a warning.
    """
    if device is not None:
        return resolve_device(device), str(device)
    try:
        return resolve_device(saved), saved
    except (TypeError, ValueError) as error:
        logger.warning(
            "%s was saved with device=%r, which this machine lacks (%s); loading it on the CPU. "
            "Pass load(path, device=...) to choose.", path, saved, error,
        )
        return torch.device("cpu"), "cpu"


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
    bucketing. Beside it (``ngrams=2``) it fits a fastText-style bag of words and
    bigrams (:class:`~seqclf.ngram_bag.NgramBag`) on the same ids, and predicts with the
    mean of the two models' probabilities (:meth:`inference_model`). The defaults (a
    bidirectional GRU with a max readout over the first 800 words, at least 6 epochs,
    trained on every text, the last weights kept; the bag of words and bigrams beside it)
    were chosen on three development corpora that the text benchmark does not use, built
    from Debian packages: short fortunes by category, package descriptions by archive
    section and long manual pages by section (``benchmarks/text_dev.py``; the settings
    with the best accuracy gap to TF-IDF + logistic regression averaged over them, the
    cheaper of two within 0.005). BBC News is only measured with them (see the
    Benchmarks page). The constructor takes hyperparameters only, so ``clone`` and
    ``GridSearchCV`` work.

    Args:
        embedding_dim: size of each token's learned vector.
        hidden_size: hidden units of the recurrent layer (per direction).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        bidirectional: also read each text backwards.
        readout: ``"last"``, ``"mean"`` or ``"max"`` over the recurrent outputs.
        bag: also read each text as a bag of words: the mean of its token vectors, joined
            to the recurrent readout (``SequenceClassifier(..., bag=True)``).
        ngrams: beside the token model, also fit a fastText-style bag of words and
            n-grams of up to ``ngrams`` words (:class:`~seqclf.ngram_bag.NgramBag`, vectors
            of ``embedding_dim``) on the same tokens, and average the two models'
            probabilities; 0: the token model alone.
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
        ngram_model_: the fitted :class:`~seqclf.ngram_bag.NgramBag` (in eval mode), or None
            with ``ngrams=0``. :meth:`inference_model` joins the two.
        history_: the fit's :class:`~seqclf.History`, one record per epoch.
        best_epoch_: the ``epoch`` of ``history_`` whose weights ``model_`` holds.

    Examples:
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
        bag: bool = False,
        ngrams: int = 2,
        dropout: float = 0.0,
        max_length: int = 800,
        min_count: int = 2,
        max_vocab: int = 30_000,
        lowercase: bool = True,
        min_steps: int = 300,
        min_epochs: int = 6,
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
        self.bag = bag
        self.ngrams = ngrams
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
                logger.info(
                    "fitting on %d texts (up to %d tokens each), %d classes: a vocabulary of %d ids",
                    len(tokens), x.shape[1], len(classes), len(vocabulary),
                )
            torch.manual_seed(seed)
            model = self._build_model(len(vocabulary), len(classes))
            bag = self._build_ngram_model(len(vocabulary), len(classes))
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
                logger.info("%s", _kept_line(history, best_epoch, trainer.epochs))
            if bag is not None:
                bag = fit_ngram_bag(
                    bag.to(resolve_device(self.device)),
                    x,
                    lengths,
                    torch.from_numpy(y_index.astype(np.int64)),
                    batch_size=recipe.batch_size,
                    seed=seed,
                )
                if verbose:
                    logger.info("fitted a bag of words and %d-grams beside the token model", self.ngrams)
        self.model_ = model.eval()
        self.ngram_model_ = bag
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
        source = model_source(self.model_, (x, lengths), device, name="X", labelled=False)  # the trainer's path
        model = self.inference_model()
        proba = [logits.softmax(dim=1).cpu() for _, logits in batch_logits(model, source, device, 1024)]
        return torch.cat(proba).double().numpy()  # (N, C)

    def inference_model(self) -> nn.Module:
        """The fitted model that predicts: ids and lengths in (as :meth:`encode` gives them), logits out.

        ``model_`` alone, or with ``ngrams`` a model that averages the probabilities of
        ``model_`` and ``ngram_model_`` (its logits are the log of that mean). This is
        what :func:`seqclf.export.to_onnx` exports.
        """
        check_is_fitted(self)
        if self.ngram_model_ is None:
            return self.model_
        return ProbabilityMean(self.model_, self.ngram_model_).eval()

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
        plain = _plain_metadata(self)
        metadata = {
            "format": _TEXT_FORMAT,
            "format_version": _TEXT_FORMAT_VERSION,
            **plain,
            "vocabulary": json.dumps(self.vocabulary_.to_dict()),
        }
        weights = dict(self.model_.state_dict())
        if self.ngram_model_ is not None:
            weights.update({_NGRAM_PREFIX + k: v for k, v in self.ngram_model_.state_dict().items()})
        save_safetensors(weights, path, metadata=metadata, overwrite=overwrite)
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
        if metadata.get("format") != _TEXT_FORMAT or metadata.get("format_version") != _TEXT_FORMAT_VERSION:
            raise SerializationError(
                f"{where} must be a file written by {cls.__name__}.save (format={_TEXT_FORMAT!r} version "
                f"{_TEXT_FORMAT_VERSION}); got format={metadata.get('format')!r} "
                f"version {metadata.get('format_version')!r}"
            )
        try:
            # files written before the n-gram bag existed hold the token model alone
            estimator = cls(**{"ngrams": 0, **json.loads(metadata["params"])})
            classes = np.asarray(json.loads(metadata["classes"]), dtype=np.dtype(metadata["classes_dtype"]))
            vocabulary = Vocabulary.from_dict(json.loads(metadata["vocabulary"]))
            model = estimator._build_model(len(vocabulary), len(classes))
            model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(_NGRAM_PREFIX)})
            bag = estimator._build_ngram_model(len(vocabulary), len(classes))
            if bag is not None:
                prefix = _NGRAM_PREFIX
                bag.load_state_dict({k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)})
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise SerializationError(
                f"{where} must hold the hyperparameters, classes, vocabulary and weights of a fitted "
                f"{cls.__name__}; got {type(error).__name__}: {error}"
            ) from error
        device = resolve_device(estimator.device)
        estimator.model_ = model.to(device).eval()
        estimator.ngram_model_ = None if bag is None else bag.to(device).eval()
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
            bag=self.bag,
            dropout=self.dropout,
        )

    def _build_ngram_model(self, vocab_size: int, n_classes: int) -> NgramBag | None:
        ngrams = self.ngrams
        if isinstance(ngrams, bool) or not isinstance(ngrams, (int, np.integer)) or ngrams < 0:
            raise ValueError(f"ngrams must be an int >= 0 (0: no n-gram bag); got {ngrams!r}")
        if ngrams == 0:
            return None
        return NgramBag(vocab_size, n_classes, embedding_dim=self.embedding_dim, ngrams=int(ngrams))

    def _vectorizer(self) -> Any:
        """The scikit-learn vectorizer whose analyzer tokenises (its settings go into an ONNX file too)."""
        return CountVectorizer(lowercase=self.lowercase)

    def _analyzer(self) -> Callable[[str], list[str]]:
        analyzer: Callable[[str], list[str]] = self._vectorizer().build_analyzer()
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


def _plain_metadata(estimator: Any) -> dict[str, str]:
    """A fitted estimator's hyperparameters and classes as JSON strings, checked to be plain data first."""
    params = estimator.get_params(deep=False)
    bad = {k: type(v).__name__ for k, v in params.items() if not isinstance(v, _PLAIN)}
    if bad:
        raise TypeError(f"hyperparameters must be plain str, int, float, bool or None to be saved; got {bad}")
    classes = estimator.classes_.tolist()
    if not all(isinstance(c, _PLAIN) for c in classes):
        kinds = sorted({type(c).__name__ for c in classes})
        raise TypeError(f"classes_ must be str, int, float or bool labels to be saved; got {kinds}")
    return {
        "params": json.dumps(params, sort_keys=True),
        "classes": json.dumps(classes),
        "classes_dtype": estimator.classes_.dtype.str,
    }
