"""How the trainer reads data: batches of ``(x, lengths, y)`` from tensors, arrays, datasets or loaders.

Data that fits in memory is held as tensors and batched by indexing a permutation
(no per-item Python); any other ``Dataset`` goes through a ``DataLoader`` fed with the
same batches of indices; a user's own ``DataLoader`` is used as it is. numpy arrays are
taken as tensors (without a copy where their dtype is already the model's), and
floating-point sequences are converted to the model's dtype once per dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ._deprecation import moved_attribute

__all__ = [
    "Batch",
    "BatchSource",
    "BatchTransform",
    "DatasetSource",
    "LoaderSource",
    "TensorSequenceDataset",
    "TensorSource",
    "as_source",
    "channels_last",
    "collate_sequences",
    "pad_sequences",
]

logger = logging.getLogger(__name__)

BatchTransform = Callable[[Tensor], Tensor]
"""A ``transform`` of :class:`TensorSequenceDataset`: a batch ``(B, ...)`` in, sequences ``(B, T, F)`` out."""

_CHANNELS_FIRST_HINT = (
    "if your data is channels-first (n_cases, n_channels, n_timepoints) as in aeon/sktime, "
    "use seqclf.data.channels_last(X)"
)
_UNIVARIATE_HINT = "for univariate series add a feature axis: X[..., None] (numpy) or X.unsqueeze(-1) (torch)"


@overload
def channels_last(x: np.ndarray) -> np.ndarray: ...
@overload
def channels_last(x: Tensor) -> Tensor: ...
@overload
def channels_last(x: Sequence[np.ndarray | Tensor]) -> list[Any]: ...
def channels_last(x: Any) -> Any:
    """Channels-first sequences as seqclf reads them: ``(N, C, T) -> (N, T, C)``.

    aeon, sktime and most time-series tools hold a dataset as ``(n_cases, n_channels,
    n_timepoints)``, or, when lengths differ, as a list of ``(n_channels, n_timepoints_i)``
    arrays. seqclf reads ``(batch, time, features)`` and lists of ``(T_i, features)``.
    Arrays and tensors come back as views (no copy); a list comes back as a list of views.

    Args:
        x: a 3-D numpy array or tensor ``(N, C, T)``, or a list of 2-D ``(C, T_i)`` ones.

    Returns:
        ``(N, T, C)`` of the same type, or a list of ``(T_i, C)``.

    Examples:
        >>> from aeon.datasets import load_classification  # doctest: +SKIP
        >>> X, y = load_classification("GunPoint", split="train")  # (50, 1, 150)  # doctest: +SKIP
        >>> channels_last(X).shape  # doctest: +SKIP
        (50, 150, 1)
    """
    if isinstance(x, (np.ndarray, Tensor)) and x.ndim == 3:
        return x.transpose(0, 2, 1) if isinstance(x, np.ndarray) else x.transpose(1, 2)
    if isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.dtype == object and x.ndim == 1):
        out = []
        for i, seq in enumerate(x):
            if not isinstance(seq, (np.ndarray, Tensor)) or seq.ndim != 2:
                got = tuple(seq.shape) if isinstance(seq, (np.ndarray, Tensor)) else type(seq).__name__
                raise ValueError(f"x[{i}] must be a 2-D (n_channels, n_timepoints) array or tensor; got {got}")
            out.append(seq.T)
        return out
    got = f"shape {tuple(x.shape)}" if isinstance(x, (np.ndarray, Tensor)) else type(x).__name__
    raise ValueError(
        "x must be a 3-D (n_cases, n_channels, n_timepoints) array or tensor, or a list of 2-D "
        f"(n_channels, n_timepoints) ones; got {got}"
    )


def _from_numpy(array: np.ndarray, what: str) -> Tensor:
    """``array`` as a tensor sharing its memory where torch can (numeric dtypes, native byte order)."""
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be a numeric array; got dtype {array.dtype}")
    try:
        return torch.from_numpy(array)
    except (TypeError, ValueError):  # negative strides or a foreign byte order: one copy
        return torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))


def _as_tensor(value: Any, what: str) -> Any:
    """A numpy array as a tensor; anything else is returned as it is (and checked by the caller)."""
    if isinstance(value, np.ndarray):
        return _from_numpy(value, what)
    return value


def _to_dtype(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    """Floating-point ``x`` in ``dtype`` and contiguous, in at most one copy (none when it already is)."""
    if dtype is None or not x.is_floating_point():
        return x
    return x.to(dtype=dtype, memory_format=torch.contiguous_format)


def _as_labels(y: Any, what: str) -> Any:
    """Integer labels given as a tensor, numpy array or list, as a tensor (strings are refused with a hint)."""
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if isinstance(y, np.ndarray):
        if y.dtype.kind in "USO":
            sample = ", ".join(repr(v) for v in y.ravel()[:3].tolist())
            raise TypeError(
                f"{what} must be integer class indices in [0, num_classes); got labels of dtype {y.dtype} "
                f"({sample}, ...). Map them with `classes, y = numpy.unique(y, return_inverse=True)`, "
                "or use seqclf.sklearn.SequenceClassifierEstimator, which takes any labels"
            )
        return _from_numpy(y, what)
    return y


def _is_x(data: Any) -> bool:
    """Whether ``data`` is sequences alone: a tensor or array ``X``, or a list of sequences."""
    if isinstance(data, (Tensor, np.ndarray)):
        return True
    return isinstance(data, list) and len(data) > 0 and all(isinstance(s, (Tensor, np.ndarray)) for s in data)


@dataclass
class Batch:
    """One batch: ``x`` ``(B, T, F)`` float, ``lengths`` ``(B,)`` or None, ``y`` ``(B,)`` or None."""

    x: Tensor
    lengths: Tensor | None
    y: Tensor | None

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device`` (no copy when it is already there)."""
        return Batch(
            self.x.to(device, non_blocking=True),
            None if self.lengths is None else self.lengths.to(device, non_blocking=True),
            None if self.y is None else self.y.to(device, non_blocking=True),
        )


class TensorSequenceDataset(Dataset[tuple[Tensor, ...]]):
    """Sequences held as tensors, optionally stored compactly and transformed per batch.

    The trainer batches it by indexing ``x`` with a whole batch of indices and applies
    ``transform`` to the batch at once (on the training device), so a dataset of uint8
    images costs a quarter of the memory and no per-item Python.

    Args:
        x: ``(N, T, F)`` float sequences, or anything ``transform`` turns into
            ``(B, T, F)`` float when given a batch ``x[indices]``; a tensor, a numpy
            array (shared, not copied), or a list of ``(T_i, F)`` sequences (padded, and
            their lengths recorded).
        y: ``(N,)`` integer class labels (a tensor, numpy array or list).
        lengths: optional ``(N,)`` valid steps of each (padded) sequence.
        transform: a batch transform, e.g. :func:`seqclf.image_rows_as_sequence`.
    """

    def __init__(
        self,
        x: Tensor | np.ndarray | Sequence[Tensor | np.ndarray],
        y: Tensor | np.ndarray | Sequence[int],
        lengths: Tensor | np.ndarray | None = None,
        transform: BatchTransform | None = None,
    ) -> None:
        if isinstance(x, (list, tuple)):
            if lengths is not None:
                raise ValueError("lengths must be None when x is a list of sequences (their lengths are used)")
            x, lengths = pad_sequences(x)
        x, y = _as_tensor(x, "x"), _as_labels(y, "y")
        lengths = _as_tensor(lengths, "lengths")
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"x and y must be torch.Tensors or numpy arrays; got {type(x).__name__} and {type(y).__name__}"
            )
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
        if lengths is not None and (not isinstance(lengths, Tensor) or lengths.shape != (len(x),)):
            got = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
            raise ValueError(f"lengths must have shape ({len(x)},); got {got}")
        self.x, self.y, self.lengths, self.transform = x, y, lengths, transform

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: slice | Tensor | Sequence[int] | Sequence[bool]) -> TensorSequenceDataset:
        """The items at ``index`` (a slice, integer indices, or a boolean mask) as a new dataset, stored the same way.

        A boolean mask (e.g. ``dataset.y == 3``) must have one entry per item and selects the items where it is True.
        """
        if not isinstance(index, slice):
            index = torch.as_tensor(index)
            if index.dtype == torch.bool:
                if index.shape != (len(self),):
                    raise ValueError(
                        f"index as a boolean mask must have shape ({len(self)},) (one entry per item); "
                        f"got {tuple(index.shape)}"
                    )
                index = index.nonzero().flatten()
            elif index.is_floating_point() or index.is_complex():
                raise TypeError(f"index must be a slice, integer indices or a boolean mask; got dtype {index.dtype}")
            else:
                index = index.to(torch.int64)
        lengths = None if self.lengths is None else self.lengths[index]
        return TensorSequenceDataset(self.x[index], self.y[index], lengths, self.transform)

    def __repr__(self) -> str:
        shape = f"{tuple(self.x.shape)} {self.x.dtype}"
        return f"TensorSequenceDataset(size={len(self)}, x={shape}, transform={self.transform})"

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        x = self.x[index]
        if self.transform is not None:
            x = self.transform(x[None])[0]
        if self.lengths is None:
            return x, self.y[index]
        return x, self.lengths[index], self.y[index]


def pad_sequences(
    sequences: Sequence[Tensor | np.ndarray], *, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """Pad ``(T_i, F)`` sequences with zeros to ``(N, max T_i, F)``; also return lengths ``(N,)``.

    The sequences may be tensors or numpy arrays. 1-D integer sequences ``(T_i,)`` are
    token ids, padded to ``(N, max T_i)`` with id 0. With ``dtype`` the padded tensor has that
    dtype (the sequences are converted as they are copied in, not copied twice).
    """
    if len(sequences) == 0:
        raise ValueError("sequences must not be empty; got 0 sequences")
    tensors: list[Tensor] = []
    ids = _is_ids(_as_tensor(sequences[0], "sequences[0]"))
    for i, seq in enumerate(sequences):
        seq = _as_tensor(seq, f"sequences[{i}]")
        if ids and not (isinstance(seq, Tensor) and _is_ids(seq)):
            found = f"{tuple(seq.shape)} {seq.dtype}" if isinstance(seq, Tensor) else type(seq).__name__
            raise ValueError(f"sequences[{i}] must be 1-D integer token ids, as sequences[0] is; got {found}")
        if not ids and (not isinstance(seq, Tensor) or seq.dim() != 2):
            got = tuple(seq.shape) if isinstance(seq, Tensor) else type(seq).__name__
            raise ValueError(f"sequences[{i}] must be a (time, features) tensor or array; got {got}")
        tensors.append(seq)
    if ids:
        lengths = torch.tensor([len(seq) for seq in tensors], dtype=torch.int64)
        padded = torch.nn.utils.rnn.pad_sequence([s.to(dtype or torch.int64) for s in tensors], batch_first=True)
        return padded, lengths  # (N, T)
    _check_same_features(tensors)
    lengths = torch.tensor([len(seq) for seq in tensors], dtype=torch.int64)
    if dtype is None:
        dtype = tensors[0].dtype
        for seq in tensors[1:]:
            dtype = torch.promote_types(dtype, seq.dtype)
    if all(seq.dtype == dtype for seq in tensors):
        return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths  # (N, T, F)
    padded = tensors[0].new_zeros((len(tensors), int(lengths.max()), tensors[0].shape[1]), dtype=dtype)
    for i, seq in enumerate(tensors):
        padded[i, : len(seq)] = seq  # converted while copied
    return padded, lengths


def _is_ids(seq: Any) -> bool:
    """Whether ``seq`` is one sequence of token ids: a 1-D integer tensor."""
    return isinstance(seq, Tensor) and seq.dim() == 1 and not (seq.is_floating_point() or seq.is_complex())


def _check_same_features(sequences: Sequence[Tensor]) -> None:
    features = sequences[0].shape[1]
    for i, seq in enumerate(sequences):
        if seq.shape[1] == features:
            continue
        message = (
            f"sequences must all have the same number of features (their last dimension); got {features} in "
            f"sequences[0] {tuple(sequences[0].shape)} and {seq.shape[1]} in sequences[{i}] {tuple(seq.shape)}"
        )
        if all(s.shape[0] == sequences[0].shape[0] for s in sequences):
            message += (
                f". They all have the same first dimension ({sequences[0].shape[0]}): if they are channels-first "
                "(n_channels, n_timepoints) as in aeon/sktime, use seqclf.data.channels_last(X)"
            )
        raise ValueError(message)


def collate_sequences(items: Sequence[Sequence[Any]]) -> Batch:
    """Collate ``(sequence, label)`` or ``(sequence, length, label)`` items into a :class:`Batch`.

    Sequences of different lengths are zero-padded and their lengths recorded.
    """
    first = items[0]
    if not isinstance(first, (tuple, list)) or len(first) not in (2, 3):
        raise ValueError(
            "dataset items must be (sequence, label) or (sequence, length, label); "
            f"got {type(first).__name__} of length {len(first) if hasattr(first, '__len__') else '?'}"
        )
    sequences = [torch.as_tensor(item[0]) for item in items]
    labels = torch.as_tensor([int(item[-1]) for item in items], dtype=torch.int64)
    if len(first) == 3:
        given = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
        x = pad_sequences(sequences)[0] if _ragged(sequences) else torch.stack(sequences)
        x, lengths = x[:, : int(given.max())], given  # trimmed to the longest sequence (host tensors: no sync)
    elif _ragged(sequences):
        x, lengths = pad_sequences(sequences)
    else:
        x, lengths = torch.stack(sequences), None
    return Batch(x, lengths, labels)


def _ragged(sequences: Sequence[Tensor]) -> bool:
    return any(seq.shape != sequences[0].shape for seq in sequences[1:])


class BatchSource(Protocol):
    """Something the trainer can draw batches from."""

    def __len__(self) -> int: ...

    def batches(self, plan: Sequence[Tensor] | None) -> Iterator[Batch]:
        """Yield one batch per index tensor in ``plan`` (None: the source's own order)."""
        ...


class TensorSource:
    """Batches by indexing tensors that live on the training device.

    With ``dtype``, a ``transform``'s floating-point output is converted to it per batch
    (``x`` itself is converted once by :func:`as_source`).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor | None,
        lengths: Tensor | None,
        transform: BatchTransform | None,
        device: torch.device,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.x = x.to(device)
        self.y = None if y is None else y.to(device, torch.int64)
        self.lengths = None if lengths is None else lengths.to(device, torch.int64)
        self.lengths_cpu = None if lengths is None else lengths.to("cpu", torch.int64)
        """The lengths on the host: batches are planned and trimmed without a device sync."""
        self.transform = transform
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, plan: Sequence[Tensor] | None) -> Iterator[Batch]:
        if not plan:
            return
        # the whole plan moves to the device at once, not one small copy per batch
        flat = torch.cat(list(plan)).to(self.x.device, non_blocking=True)
        for host_indices, indices in zip(plan, torch.split(flat, [len(indices) for indices in plan]), strict=True):
            # each batch is trimmed to its longest sequence: the padding after it cannot change a result
            longest = None if self.lengths_cpu is None else int(self.lengths_cpu[host_indices].max())
            whole = self.x if longest is None or self.transform is not None else self.x[:, :longest]
            # index_select on dim 0 is several times faster than x[indices] for small batches
            x = whole.index_select(0, indices)
            if self.transform is not None:
                x = _to_dtype(self.transform(x), self.dtype)  # (B, T, F)
                x = x if longest is None else x[:, :longest]
            yield Batch(
                x,
                None if self.lengths is None else self.lengths.index_select(0, indices),
                None if self.y is None else self.y.index_select(0, indices),
            )


class DatasetSource:
    """Batches of a map-style ``Dataset`` loaded by a ``DataLoader`` following the plan.

    With ``dtype``, floating-point batches are converted to it (per batch: the data is not held).
    """

    def __init__(self, dataset: Dataset[Any], num_workers: int = 0, dtype: torch.dtype | None = None) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
        self.dtype = dtype
        self.generator: torch.Generator | None = None
        """Draws the loader's worker seeds (None: torch's global generator); the trainer seeds one per epoch."""

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(self, plan: Sequence[Tensor] | None) -> Iterator[Batch]:
        batch_sampler = [indices.tolist() for indices in plan or []]
        loader: DataLoader[Any] = DataLoader(
            self.dataset,
            batch_sampler=batch_sampler,
            collate_fn=collate_sequences,
            num_workers=self.num_workers,
            generator=self.generator,
        )
        for batch in loader:
            yield Batch(_to_dtype(batch.x, self.dtype), batch.lengths, batch.y)


class LoaderSource:
    """A user's ``DataLoader``, used as it is (its own batch size and shuffling).

    Each batch is made fit for the model: numpy arrays become tensors, floating-point
    ``x`` is converted to ``dtype`` and integer labels of any width to int64 (no-ops
    when they already are).
    """

    def __init__(self, loader: DataLoader[Any], dtype: torch.dtype | None = None) -> None:
        self.loader = loader
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.loader.dataset)  # type: ignore[arg-type]

    def batches(self, plan: Sequence[Tensor] | None) -> Iterator[Batch]:
        if plan is not None:
            raise ValueError("a DataLoader keeps its own order; its batches cannot follow a plan")
        for item in self.loader:
            batch = _as_batch(item)
            y = batch.y
            if isinstance(y, Tensor) and y.dtype != torch.int64 and not (y.is_floating_point() or y.is_complex()):
                y = y.to(torch.int64)  # cross-entropy takes int64 class indices only
            yield Batch(_to_dtype(batch.x, self.dtype), batch.lengths, y)


def _as_batch(item: Any) -> Batch:
    if isinstance(item, Batch):
        return item
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        parts = [_as_tensor(part, "a DataLoader batch") for part in item]
        return Batch(parts[0], None if len(parts) == 2 else parts[1], parts[-1])
    raise ValueError(
        "a DataLoader must yield (x, y) or (x, lengths, y) batches; "
        f"got {type(item).__name__}{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}"
    )


def as_source(
    data: Any,
    device: torch.device,
    *,
    input_size: int | None = None,
    num_classes: int | None = None,
    labelled: bool = True,
    name: str = "data",
    dtype: torch.dtype | None = None,
    vocab_size: int | None = None,
) -> TensorSource | DatasetSource | LoaderSource:
    """Check ``data`` once, up front, and wrap it as a batch source.

    Accepted: a ``(X, y)`` or ``(X, lengths, y)`` tuple of tensors or numpy arrays (X may
    also be a list of ``(T_i, F)`` tensors or arrays, which are padded), a ``TensorDataset``,
    a :class:`TensorSequenceDataset`, any map-style ``Dataset`` of ``(sequence, label)`` or
    ``(sequence, length, label)`` items, or a ``DataLoader``. With ``labelled=False``
    a bare ``X`` (or ``(X, lengths)``) is accepted too. Labels may be any integer dtype.

    With ``vocab_size`` (a model that embeds token ids), ``X`` is token ids instead: a
    ``(N, T)`` integer tensor or array (with ``lengths``), or a list of 1-D integer
    sequences of any lengths; ids before each length must lie in ``[0, vocab_size)``.

    With ``dtype`` (the trainer passes its model's), floating-point sequences held in
    memory are converted to it once, here (no copy when they already have it, so a
    float32 numpy array is used in place); those of a ``Dataset`` or ``DataLoader`` (or
    made by a ``transform``) are converted per batch.

    Raises:
        TypeError, ValueError: naming ``name``, what was expected and what was received.
    """
    checker = _Checker(name, input_size, num_classes, vocab_size)
    if isinstance(data, DataLoader):
        return LoaderSource(data, dtype)
    if isinstance(data, (Tensor, np.ndarray)) and not labelled:
        data = (data,)
    if isinstance(data, (tuple, list)) and not isinstance(data, Dataset):
        return _tuple_source(data, device, checker, labelled, dtype)
    if isinstance(data, TensorSequenceDataset):
        checker.nonempty(len(data))
        x = data.x
        if data.transform is None:
            x = _to_dtype(x, dtype)  # once per dataset
            checker.sequences(x)
        else:
            checker.sequences(data.transform(data.x[:2]), transformed=True)
        checker.labels(data.y, len(data.x))
        checker.lengths(data.lengths, len(data.x), _time_steps(data))
        if data.transform is None:
            checker.finite(x, data.lengths)
        else:
            head = None if data.lengths is None else data.lengths[:2]
            checker.finite(data.transform(data.x[:2]), head, transformed=True)
        if vocab_size is not None:  # token ids, checked whole (a transform of ids is applied to all of them once)
            checker.ids(x if data.transform is None else data.transform(data.x), data.lengths)
        return TensorSource(x, data.y, data.lengths, data.transform, device, dtype)
    if isinstance(data, TensorDataset):
        tensors = data.tensors
        if len(tensors) not in (2, 3):
            raise ValueError(
                f"{name} as a TensorDataset must hold (X, y) or (X, lengths, y); "
                f"got {len(tensors)} tensors"
            )
        return _tuple_source(tensors, device, checker, True, dtype)
    if isinstance(data, Dataset):
        if not hasattr(data, "__len__"):
            raise TypeError(f"{name} must be a map-style Dataset with __len__; got {type(data).__name__}")
        checker.nonempty(len(data))
        first = collate_sequences([data[0]])
        checker.sequences(first.x)
        checker.finite(first.x, first.lengths)
        checker.ids(first.x, first.lengths)
        assert first.y is not None
        checker.labels(first.y, 1)
        return DatasetSource(data, dtype=dtype)
    raise TypeError(
        f"{name} must be a (X, y) tuple of tensors or arrays, a Dataset or a DataLoader; got {type(data).__name__}"
    )


def _time_steps(data: TensorSequenceDataset) -> int:
    x = data.x[:1] if data.transform is None else data.transform(data.x[:1])
    return int(x.shape[1])


def _tuple_source(
    data: Sequence[Any], device: torch.device, checker: _Checker, labelled: bool, dtype: torch.dtype | None
) -> TensorSource:
    sizes = (2, 3) if labelled else (1, 2)
    if len(data) == 0:
        empty = type(data).__name__
        raise ValueError(f"{checker.name} must hold at least one sequence; got no sequences (an empty {empty})")
    if len(data) not in sizes:
        shapes = "(X, y) or (X, lengths, y)" if labelled else "X or (X, lengths)"
        raise ValueError(f"{checker.name} must be {shapes}; got a tuple of {len(data)} items")
    x, lengths = data[0], (data[1] if len(data) == sizes[1] else None)
    y = data[-1] if labelled else None
    if isinstance(x, np.ndarray) and x.dtype == object and x.ndim == 1:
        x = list(x)  # a ragged array of sequences
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError(f"{checker.name}: give lengths only with a padded X tensor, not a list")
        checker.nonempty(len(x))
        x, lengths = pad_sequences(x, dtype=dtype if _all_floating(x) else None)
    x = _as_tensor(x, f"{checker.name} X")
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{checker.name}: X must be a torch.Tensor, a numpy array or a list of sequences; got {type(x).__name__}"
        )
    checker.nonempty(len(x))
    x = _to_dtype(x, dtype)  # the one conversion of this dataset (none when x already has dtype)
    checker.sequences(x)
    if y is not None:
        y = _as_labels(y, f"{checker.name} labels y")
        checker.labels(y, len(x))
    if isinstance(lengths, (list, tuple)):
        lengths = np.asarray(lengths)
    lengths = _as_tensor(lengths, f"{checker.name} lengths")
    checker.lengths(lengths, len(x), int(x.shape[1]))
    checker.finite(x, lengths)
    checker.ids(x, lengths)
    return TensorSource(x, y, lengths, None, device)


def _all_floating(sequences: Sequence[Any]) -> bool:
    return all(
        (isinstance(s, Tensor) and s.is_floating_point()) or (isinstance(s, np.ndarray) and s.dtype.kind == "f")
        for s in sequences
    )


@dataclass
class _Checker:
    name: str
    input_size: int | None
    num_classes: int | None
    vocab_size: int | None = None

    def nonempty(self, size: int) -> None:
        if size == 0:
            raise ValueError(f"{self.name} must hold at least one sequence; got an empty dataset")

    def sequences(self, x: Tensor, transformed: bool = False) -> None:
        what = f"{self.name} sequences" + (" (after the transform)" if transformed else "")
        if self.vocab_size is not None:
            if x.dim() != 2 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(
                    f"{what} must be integer token ids (batch, time) (or a list of 1-D id sequences) for a model "
                    f"that embeds them (vocab_size={self.vocab_size}); got {x.dtype} of shape {tuple(x.shape)}"
                )
            return
        if x.dim() == 2 and not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise TypeError(
                f"{what} look like token ids (integer, shape {tuple(x.shape)}); this model reads floating-point "
                "features (batch, time, features). Give ids to a model that embeds them: "
                "SequenceClassifier(..., vocab_size=V) (converting ids to float would read them as magnitudes)"
            )
        features = "features" if self.input_size is None else str(self.input_size)
        if x.dim() != 3 or (self.input_size is not None and x.shape[-1] != self.input_size):
            message = f"{what} must have shape (batch, time, {features}); got {tuple(x.shape)}"
            if x.dim() == 2:
                message += f"; {_UNIVARIATE_HINT}, giving {(*x.shape, 1)}"
            elif x.dim() == 3 and self.input_size is not None and x.shape[1] == self.input_size:
                message += f"; {_CHANNELS_FIRST_HINT}"
            raise ValueError(message)
        if not x.is_floating_point():
            raise TypeError(
                f"{what} must be floating point; got dtype {x.dtype} "
                "(convert with x.float() or X.astype(numpy.float32))"
            )
        if x.shape[1] == 1 and x.shape[2] > 1:
            logger.warning(
                "%s have a single time step of %d features: if each is a univariate series of %d "
                "time points, give it as (batch, %d, 1) (seqclf.data.channels_last turns (batch, 1, %d) into that)",
                what, x.shape[2], x.shape[2], x.shape[2], x.shape[2],
            )

    def finite(self, x: Tensor, lengths: Tensor | None, transformed: bool = False) -> None:
        """Refuse NaN or Inf in the valid steps of ``x`` ``(N, T, F)``; the padding may hold anything."""
        if self.vocab_size is not None:
            return  # token ids: integers, checked by ids()
        what = f"{self.name} sequences" + (" (after the transform)" if transformed else "")
        bad = ~torch.isfinite(x)  # (N, T, F)
        if lengths is not None:
            valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (N, T)
            bad &= valid.unsqueeze(-1)  # beyond a sequence's length anything goes
        count = int(bad.sum())
        if count == 0:
            return
        sequence, step, _ = (int(i) for i in bad.nonzero()[0])
        within = "" if lengths is None else " within each sequence's length (lengths)"
        message = (
            f"{what} must be finite{within}; got {count} NaN or Inf values "
            f"(the first in sequence {sequence}, step {step})"
        )
        padded = None if lengths is not None else _nan_padding_lengths(x)
        if padded is not None and _valid_finite(x, padded):
            message += (
                "; the NaN only end sequences, as padding does (the UCR archive's convention): give each "
                "sequence's number of valid steps as lengths, (X, lengths, y), or give X as a list of sequences"
            )
        raise ValueError(message)

    def ids(self, x: Tensor, lengths: Tensor | None) -> None:
        """Token ids before each length in ``[0, vocab_size)`` (for a model that embeds; else nothing to check)."""
        if self.vocab_size is None or x.numel() == 0:
            return
        values = x
        if lengths is not None:
            values = x[torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]]
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(
                f"{self.name} token ids must lie in [0, {self.vocab_size}) (the model's vocab_size); "
                f"got values from {low} to {high}"
            )

    def labels(self, y: Any, size: int) -> None:
        if not isinstance(y, Tensor):
            raise TypeError(
                f"{self.name} labels y must be a tensor, numpy array or list of ints; got {type(y).__name__}"
            )
        if y.shape != (size,):
            raise ValueError(f"{self.name} labels y must have shape ({size},); got {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"{self.name} labels y must be an integer tensor; got dtype {y.dtype}")
        if self.num_classes is not None and size > 0:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"{self.name} labels y must lie in [0, {self.num_classes}) (num_classes); "
                    f"got values from {low} to {high}"
                )

    def lengths(self, lengths: Any, size: int, time_steps: int) -> None:
        if lengths is None:
            return
        if not isinstance(lengths, Tensor):
            raise TypeError(
                f"{self.name} lengths must be a tensor, numpy array or list of ints; got {type(lengths).__name__}"
            )
        if lengths.shape != (size,):
            raise ValueError(f"{self.name} lengths must have shape ({size},); got {tuple(lengths.shape)}")
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{self.name} lengths must be an integer tensor; got dtype {lengths.dtype}")
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > time_steps:
            raise ValueError(
                f"{self.name} lengths must lie in [1, {time_steps}] (the time steps of X); "
                f"got values from {low} to {high}"
            )


_MOVED_TO_BATCHING = ("LengthBucketing", "bucketed_epoch_plan", "epoch_plan")


def _warn_if_one_class(source: TensorSource | DatasetSource | LoaderSource, name: str) -> None:
    """Log a warning when the labels of in-memory ``source`` all name one class.

    A model trained so learns to answer that class whatever the input. The labels of a
    ``Dataset`` or ``DataLoader`` are not read ahead (that would cost a pass over the data).
    """
    if not isinstance(source, TensorSource) or source.y is None or len(source.y) < 2:
        return
    classes = torch.unique(source.y)  # (K,)
    if len(classes) == 1:
        logger.warning(
            "%s labels all name one class (%d) in %d sequences: the model will learn to answer it whatever "
            "the input; a classifier needs examples of at least two classes",
            name, int(classes[0]), len(source.y),
        )


def _nan_padding_lengths(x: Tensor) -> Tensor | None:
    """The lengths ``(N,)`` of ``x`` ``(N, T, F)`` padded with NaN at the end (the UCR archive's convention).

    A sequence's length is its steps before the run of all-NaN steps that ends it. None when
    no sequence ends so, or one is NaN throughout (that is no padding).
    """
    nan_step = torch.isnan(x).all(dim=2)  # (N, T)
    trailing = nan_step.flip(1).to(torch.int64).cumprod(dim=1).sum(dim=1)  # (N,) all-NaN steps at the end
    lengths = x.shape[1] - trailing  # (N,)
    if not bool(trailing.any()) or bool((lengths < 1).any()):
        return None
    return lengths


def _valid_finite(x: Tensor, lengths: Tensor) -> bool:
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (N, T)
    return bool((torch.isfinite(x).all(dim=2) | ~valid).all())


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`seqclf.batching`, still served here with a DeprecationWarning."""
    return moved_attribute(__name__, name, dict.fromkeys(_MOVED_TO_BATCHING, "seqclf.batching"))
