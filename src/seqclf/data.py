"""How the trainer reads data: batches of ``(x, lengths, y)`` from tensors, datasets or loaders.

Data that fits in memory is held as tensors and batched by indexing a permutation
(no per-item Python); any other ``Dataset`` goes through a ``DataLoader`` fed with the
same batches of indices; a user's own ``DataLoader`` is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

BatchTransform = Callable[[Tensor], Tensor]


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
            ``(B, T, F)`` float when given a batch ``x[indices]``.
        y: ``(N,)`` integer class labels.
        lengths: optional ``(N,)`` valid steps of each (padded) sequence.
        transform: a batch transform, e.g. :func:`seqclf.image_rows_as_sequence`.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        lengths: Tensor | None = None,
        transform: BatchTransform | None = None,
    ) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"x and y must be torch.Tensors; got {type(x).__name__} and {type(y).__name__}"
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


def pad_sequences(sequences: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Pad ``(T_i, F)`` sequences with zeros to ``(N, max T_i, F)``; also return lengths ``(N,)``."""
    if len(sequences) == 0:
        raise ValueError("sequences must not be empty; got 0 sequences")
    for i, seq in enumerate(sequences):
        if not isinstance(seq, Tensor) or seq.dim() != 2:
            got = tuple(seq.shape) if isinstance(seq, Tensor) else type(seq).__name__
            raise ValueError(f"sequences[{i}] must be a (time, features) tensor; got {got}")
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.int64)
    padded = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=True)  # (N, T, F)
    return padded, lengths


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
        lengths: Tensor | None = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
        x = pad_sequences(sequences)[0] if _ragged(sequences) else torch.stack(sequences)
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
    """Batches by indexing tensors that live on the training device."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor | None,
        lengths: Tensor | None,
        transform: BatchTransform | None,
        device: torch.device,
    ) -> None:
        self.x = x.to(device)
        self.y = None if y is None else y.to(device, torch.int64)
        self.lengths = None if lengths is None else lengths.to(device, torch.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, plan: Sequence[Tensor] | None) -> Iterator[Batch]:
        if not plan:
            return
        # the whole plan moves to the device at once, not one small copy per batch
        flat = torch.cat(list(plan)).to(self.x.device, non_blocking=True)
        for indices in torch.split(flat, [len(indices) for indices in plan]):
            # index_select on dim 0 is several times faster than x[indices] for small batches
            x = self.x.index_select(0, indices)
            if self.transform is not None:
                x = self.transform(x)  # (B, T, F)
            yield Batch(
                x,
                None if self.lengths is None else self.lengths.index_select(0, indices),
                None if self.y is None else self.y.index_select(0, indices),
            )


class DatasetSource:
    """Batches of a map-style ``Dataset`` loaded by a ``DataLoader`` following the plan."""

    def __init__(self, dataset: Dataset[Any], num_workers: int = 0) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
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
        yield from loader


class LoaderSource:
    """A user's ``DataLoader``, used as it is (its own batch size and shuffling)."""

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader.dataset)  # type: ignore[arg-type]

    def batches(self, plan: Sequence[Tensor] | None) -> Iterator[Batch]:
        if plan is not None:
            raise ValueError("a DataLoader keeps its own order; its batches cannot follow a plan")
        for item in self.loader:
            yield _as_batch(item)


def _as_batch(item: Any) -> Batch:
    if isinstance(item, Batch):
        return item
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return Batch(item[0], None, item[1])
    if isinstance(item, (tuple, list)) and len(item) == 3:
        return Batch(item[0], item[1], item[2])
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
) -> TensorSource | DatasetSource | LoaderSource:
    """Check ``data`` once, up front, and wrap it as a batch source.

    Accepted: a ``(X, y)`` or ``(X, lengths, y)`` tuple of tensors (X may also be a list
    of ``(T_i, F)`` tensors, which are padded), a ``TensorDataset``, a
    :class:`TensorSequenceDataset`, any map-style ``Dataset`` of ``(sequence, label)`` or
    ``(sequence, length, label)`` items, or a ``DataLoader``. With ``labelled=False``
    a bare tensor ``X`` (or ``(X, lengths)``) is accepted too.

    Raises:
        TypeError, ValueError: naming ``name``, what was expected and what was received.
    """
    checker = _Checker(name, input_size, num_classes)
    if isinstance(data, DataLoader):
        return LoaderSource(data)
    if isinstance(data, Tensor) and not labelled:
        data = (data,)
    if isinstance(data, (tuple, list)) and not isinstance(data, Dataset):
        return _tuple_source(data, device, checker, labelled)
    if isinstance(data, TensorSequenceDataset):
        checker.nonempty(len(data))
        if data.transform is None:
            checker.sequences(data.x)
        else:
            checker.sequences(data.transform(data.x[:2]), transformed=True)
        checker.labels(data.y, len(data.x))
        checker.lengths(data.lengths, len(data.x), _time_steps(data))
        return TensorSource(data.x, data.y, data.lengths, data.transform, device)
    if isinstance(data, TensorDataset):
        tensors = data.tensors
        if len(tensors) not in (2, 3):
            raise ValueError(
                f"{name} as a TensorDataset must hold (X, y) or (X, lengths, y); "
                f"got {len(tensors)} tensors"
            )
        return _tuple_source(tensors, device, checker, labelled=True)
    if isinstance(data, Dataset):
        if not hasattr(data, "__len__"):
            raise TypeError(f"{name} must be a map-style Dataset with __len__; got {type(data).__name__}")
        checker.nonempty(len(data))
        first = collate_sequences([data[0]])
        checker.sequences(first.x)
        assert first.y is not None
        checker.labels(first.y, 1)
        return DatasetSource(data)
    raise TypeError(
        f"{name} must be a (X, y) tuple of tensors, a Dataset or a DataLoader; got {type(data).__name__}"
    )


def _time_steps(data: TensorSequenceDataset) -> int:
    x = data.x[:1] if data.transform is None else data.transform(data.x[:1])
    return int(x.shape[1])


def _tuple_source(
    data: Sequence[Any], device: torch.device, checker: _Checker, labelled: bool
) -> TensorSource:
    sizes = (2, 3) if labelled else (1, 2)
    if len(data) not in sizes:
        shapes = "(X, y) or (X, lengths, y)" if labelled else "X or (X, lengths)"
        raise ValueError(f"{checker.name} must be {shapes}; got a tuple of {len(data)} items")
    x, lengths = data[0], (data[1] if len(data) == sizes[1] else None)
    y = data[-1] if labelled else None
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError(f"{checker.name}: give lengths only with a padded X tensor, not a list")
        x, lengths = pad_sequences(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{checker.name}: X must be a torch.Tensor or a list of tensors; got {type(x).__name__}")
    checker.nonempty(len(x))
    checker.sequences(x)
    if y is not None:
        checker.labels(y, len(x))
    checker.lengths(lengths, len(x), int(x.shape[1]))
    return TensorSource(x, y, lengths, None, device)


@dataclass
class _Checker:
    name: str
    input_size: int | None
    num_classes: int | None

    def nonempty(self, size: int) -> None:
        if size == 0:
            raise ValueError(f"{self.name} must hold at least one sequence; got an empty dataset")

    def sequences(self, x: Tensor, transformed: bool = False) -> None:
        what = f"{self.name} sequences" + (" (after the transform)" if transformed else "")
        features = "features" if self.input_size is None else str(self.input_size)
        if x.dim() != 3 or (self.input_size is not None and x.shape[-1] != self.input_size):
            raise ValueError(f"{what} must have shape (batch, time, {features}); got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{what} must be floating point; got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{what} must be finite; got {bad} NaN or Inf values")

    def labels(self, y: Any, size: int) -> None:
        if not isinstance(y, Tensor):
            raise TypeError(f"{self.name} labels y must be a torch.Tensor; got {type(y).__name__}")
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
            raise TypeError(f"{self.name} lengths must be a torch.Tensor; got {type(lengths).__name__}")
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


def epoch_plan(
    size: int,
    batch_size: int,
    *,
    seed: int | None,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[Tensor]:
    """The index batches of one epoch: shuffled by ``(seed, epoch)``, or in order when seed is None.

    The permutation depends only on ``seed`` and ``epoch`` (as with
    ``DistributedSampler``), so a resumed run or another rank rebuilds the same order
    without carrying generator state. With ``world_size > 1`` each global batch of
    ``batch_size * world_size`` indices is split into disjoint per-rank parts.
    """
    if seed is None:
        order = torch.arange(size)
    else:
        generator = torch.Generator().manual_seed(seed + epoch * 1_000_003)
        order = torch.randperm(size, generator=generator)
    step = batch_size * world_size
    plan = []
    for start in range(0, size, step):
        chunk = order[start : start + step]
        part = chunk.tensor_split(world_size)[rank] if world_size > 1 else chunk
        if len(part) > 0:
            plan.append(part)
    return plan
