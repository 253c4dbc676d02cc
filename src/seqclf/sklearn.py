"""A scikit-learn estimator: numpy or aeon data and any labels in, the original labels out.

Needs scikit-learn (``pip install "seqclf[sklearn]"``)::

    from aeon.datasets import load_classification
    from seqclf.sklearn import SequenceClassifierEstimator

    X, y = load_classification("GunPoint", split="train")  # (50, 1, 150), string labels
    clf = SequenceClassifierEstimator(layout="nct").fit(X, y)
    clf.predict(load_classification("GunPoint", split="test")[0])
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import Tensor, nn

from ._checks import positive_int
from ._files import CheckpointError, read_file, write_file
from .data import _from_numpy, as_source, channels_last, epoch_plan, pad_sequences
from .recipes import SMALL_DATA, SmallDataRecipe
from .registry import create_model, model_entry
from .trainer import resolve_device

__all__ = ["SequenceClassifierEstimator"]

logger = logging.getLogger(__name__)

Layout = Literal["ntc", "nct"]
Model = Literal["lstm_fcn", "lstm"]
KIND = "seqclf.sklearn"
"""The ``kind`` field of a file written by :meth:`SequenceClassifierEstimator.save`."""
KIND_VERSION = 1
"""The layout version of that file this seqclf writes; it reads this version and older ones."""
_PLAIN = (str, int, float, bool, type(None))


class SequenceClassifierEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A scikit-learn classifier of sequences (fixed or variable length), with any labels.

    The constructor takes hyperparameters only, so ``get_params``, ``set_params``,
    ``sklearn.base.clone``, ``cross_val_score`` and ``GridSearchCV`` work as with any
    scikit-learn classifier. ``X`` is 3-D: 2-D input is refused (it is ambiguous:
    univariate series and tabular rows look the same), with a hint to add an axis.

    The defaults are the library's time-series model and recipe: an
    :class:`~seqclf.LSTMFCN` trained with :data:`seqclf.recipes.SMALL_DATA` (at least
    ``min_steps`` optimizer steps, a one-cycle schedule, a validation split with early
    stopping on data sets large enough for one); see ``docs/time-series.md``. The model
    standardises each feature inside itself (``normalize=True``), with statistics fitted
    on the training data and saved with the weights.

    Args:
        layout: how ``X`` is laid out. ``"ntc"``: a numpy array ``(n_cases,
            n_timepoints, n_features)`` or a list of ``(n_timepoints_i, n_features)``
            arrays. ``"nct"``: channels-first as in aeon and sktime, ``(n_cases,
            n_channels, n_timepoints)`` or a list of ``(n_channels, n_timepoints_i)``.
        model: ``"lstm_fcn"`` (:class:`~seqclf.LSTMFCN`) or ``"lstm"`` (a plain
            :class:`~seqclf.SequenceClassifier`).
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
            training set still gets enough updates); at least 30 epochs are run.
        batch_size: sequences per optimizer step (at most the training set's size).
        lr: Adam's peak learning rate (one-cycle schedule).
        val_fraction: the fraction held out for early stopping when the data set is
            large enough (see :class:`~seqclf.recipes.SmallDataRecipe`); 0: never.
        random_state: seeds the initial weights, the shuffling and dropout; an int for
            reproducible fits, None for a fresh draw from numpy's global generator.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...

    Attributes:
        classes_: the sorted class labels seen by ``fit``; ``predict_proba``'s columns
            follow this order.
        n_features_in_: features per time step seen by ``fit``.
        model_: the fitted :class:`torch.nn.Module` (on ``device``, in eval mode).

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(40, 12, 2))  # (n_cases, n_timepoints, n_features)
        >>> y = np.where(X[:, :, 0].mean(axis=1) > 0, "up", "down")
        >>> clf = SequenceClassifierEstimator(min_steps=20, random_state=0, device="cpu").fit(X, y)
        >>> clf.classes_.tolist(), clf.predict(X[:3]).shape, clf.predict_proba(X[:3]).shape
        (['down', 'up'], (3,), (3, 2))
    """

    def __init__(
        self,
        *,
        layout: Layout = "ntc",
        model: Model = "lstm_fcn",
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

    # ------------------------------------------------------ the two steps to swap
    def _build_model(self, n_features: int, n_classes: int) -> nn.Module:
        """A fresh model mapping ``(x (B, T, n_features), lengths)`` to logits ``(B, n_classes)``.

        ``model`` is any registered name (:func:`seqclf.list_models`). Each hyperparameter
        the model takes is passed on, except one left at this estimator's default where the
        name gives its own (``cell`` for ``"gru"``) and None (the model's default); one the
        model does not take must stay at this estimator's default.
        """
        entry = model_entry(self.model)
        defaults = {name: p.default for name, p in inspect.signature(type(self)).parameters.items()}
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

    def _train(self, model: nn.Module, x: Tensor, lengths: Tensor | None, y: Tensor, seed: int) -> None:
        """Train ``model`` in place on ``x`` ``(N, T, F)``, ``lengths`` ``(N,)`` or None, ``y`` ``(N,)`` int64.

        The recipe: :class:`~seqclf.recipes.SmallDataRecipe` with this estimator's
        ``min_steps``, ``batch_size``, ``lr`` and ``val_fraction``.
        """
        recipe = SmallDataRecipe(
            batch_size=min(positive_int("batch_size", self.batch_size), len(x)),
            min_steps=positive_int("min_steps", self.min_steps),
            lr=self.lr,
            val_fraction=self.val_fraction,
        )
        recipe.fit(model, x, y, lengths, seed=seed, device=self.device, progress=False)

    # ------------------------------------------------------------- sklearn API
    def fit(self, X: Any, y: Any) -> SequenceClassifierEstimator:
        """Fit on sequences ``X`` (laid out as ``layout`` says) and labels ``y`` of any kind."""
        x, lengths = self._sequences(X, "X")
        y = column_or_1d(np.asarray(y), warn=True)
        if len(y) != len(x):
            raise ValueError(f"y must have one label per sequence of X ({len(x)}); got {len(y)} labels")
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y must hold at least two classes to fit a classifier; got only {classes.tolist()!r}")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]):  # the fit's seed, not the caller's generator state
            torch.manual_seed(seed)
            model = self._build_model(int(x.shape[-1]), len(classes))
            self._train(model, x, lengths, torch.from_numpy(y_index.astype(np.int64)), seed)
        self.model_ = model.eval()
        self.classes_ = classes
        self.n_features_in_ = int(x.shape[-1])
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
        source = as_source((x,) if lengths is None else (x, lengths), device, labelled=False, name="X")
        self.model_.eval()
        out = []
        with torch.inference_mode():
            for batch in source.batches(epoch_plan(len(source), 1024, seed=None)):
                out.append(self.model_(batch.x, batch.lengths).softmax(dim=1).double().cpu())  # (B, C)
        return torch.cat(out).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each sequence, as in ``classes_`` (e.g. strings)."""
        check_is_fitted(self)
        result: np.ndarray = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return result

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # 2-D input is refused: see the class docstring
        tags.input_tags.three_d_array = True
        return tags

    # ------------------------------------------------------------ save and load
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the fitted estimator to ``path`` as plain data and tensors (no pickled code).

        The file holds the hyperparameters, ``classes_``, ``n_features_in_`` and the
        model's weights, with a SHA-256 checksum; :meth:`load` reads it with
        ``torch.load(weights_only=True)``. It is written to a temporary file and then
        renamed, so a failed save leaves any file already at ``path`` as it was; an
        existing file is replaced only with ``overwrite=True``.
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
        content = {
            "kind": KIND,
            "kind_version": KIND_VERSION,
            "params": params,
            "classes": classes,
            "classes_dtype": self.classes_.dtype.str,
            "n_features_in": self.n_features_in_,
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
        }
        return write_file(content, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SequenceClassifierEstimator:
        """An estimator written by :meth:`save`, ready to predict; nothing in the file can run code.

        Raises:
            UnsafeCheckpointError: the file would run code when unpickled (nothing ran).
            CheckpointError: the file is truncated, corrupted (checksum), not an estimator
                file, or its weights do not fit the model its hyperparameters build.
        """
        data = read_file(path)
        if data.get("kind") != KIND:
            raise CheckpointError(
                f"{str(path)!r} must be a file written by {cls.__name__}.save (kind={KIND!r}); "
                f"got kind={data.get('kind')!r} (a trainer checkpoint loads with Trainer.load_state_dict)"
            )
        if not isinstance(data.get("kind_version"), int) or data["kind_version"] > KIND_VERSION:
            raise CheckpointError(
                f"{str(path)!r} has kind_version {data.get('kind_version')!r}; this seqclf reads "
                f"<= {KIND_VERSION}: upgrade seqclf to read it"
            )
        try:
            estimator = cls(**data["params"])
            classes = np.asarray(data["classes"], dtype=np.dtype(data["classes_dtype"]))
            model = estimator._build_model(int(data["n_features_in"]), len(classes))
            model.load_state_dict(data["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{str(path)!r} must hold the hyperparameters, classes and weights of a fitted "
                f"{cls.__name__} that fit this seqclf; got {type(error).__name__}: {error}"
            ) from error
        estimator.model_ = model.to(resolve_device(estimator.device)).eval()
        estimator.classes_ = classes
        estimator.n_features_in_ = int(data["n_features_in"])
        return estimator

    # ---------------------------------------------------------------- helpers
    def _sequences(self, X: Any, name: str) -> tuple[Tensor, Tensor | None]:
        """``X`` as a float32 ``(N, T, F)`` tensor (and lengths when they differ), laid out as ``layout`` says."""
        if self.layout not in ("ntc", "nct"):
            raise ValueError(f"layout must be 'ntc' or 'nct'; got {self.layout!r}")
        axes = "(n_cases, n_timepoints, n_features)" if self.layout == "ntc" else "(n_cases, n_channels, n_timepoints)"
        if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1:
            X = list(X)
        if isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(s, (np.ndarray, Tensor)) for s in X):
            sequences = [_float_sequence(s, f"{name}[{i}]") for i, s in enumerate(X)]
            if self.layout == "nct":
                sequences = channels_last(sequences)
            if all(s.shape == sequences[0].shape for s in sequences):
                return torch.stack(sequences), None
            x, lengths = pad_sequences(sequences)
            return x, lengths
        if not isinstance(X, Tensor):
            X = np.asarray(X)
            if X.dtype.kind not in "fiub":
                raise TypeError(f"{name} must hold numbers; got dtype {X.dtype}")
            X = _from_numpy(X, name)
        if X.dim() != 3:
            hint = ""
            if X.dim() == 2:
                fix = "X[:, :, None]" if self.layout == "ntc" else "X[:, None, :]"
                hint = (
                    f"; 2-D input is ambiguous: for univariate series of {X.shape[1]} time points use {fix}, "
                    f"giving {(X.shape[0], X.shape[1], 1) if self.layout == 'ntc' else (X.shape[0], 1, X.shape[1])}"
                )
            raise ValueError(
                f"{name} must be a 3-D array {axes} (layout={self.layout!r}) or a list of 2-D sequences; "
                f"got shape {tuple(X.shape)}{hint}"
            )
        if len(X) == 0:
            raise ValueError(f"{name} must hold at least one sequence; got shape {tuple(X.shape)}")
        if self.layout == "nct":
            X = channels_last(X)
        return X.to(dtype=torch.float32, memory_format=torch.contiguous_format), None


def _float_sequence(seq: np.ndarray | Tensor, what: str) -> Tensor:
    if seq.ndim != 2:
        raise ValueError(f"{what} must be a 2-D sequence; got shape {tuple(seq.shape)}")
    if isinstance(seq, np.ndarray):
        if seq.dtype.kind not in "fiub":
            raise TypeError(f"{what} must hold numbers; got dtype {seq.dtype}")
        seq = _from_numpy(seq, what)
    return seq.to(torch.float32)


