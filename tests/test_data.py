from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from seqclf import TensorSequenceDataset, image_rows_as_sequence, pad_sequences
from seqclf.batching import epoch_plan
from seqclf.data import (
    DatasetSource,
    LoaderSource,
    TensorSource,
    as_source,
    channels_last,
    collate_sequences,
)

CPU = torch.device("cpu")


def test_pad_sequences() -> None:
    x, lengths = pad_sequences([torch.ones(2, 3), torch.ones(4, 3)])
    assert x.shape == (2, 4, 3) and lengths.tolist() == [2, 4]
    assert x[0, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="sequences must not be empty"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"sequences\[1\] must be a \(time, features\) tensor or array; got \(3,\)"):
        pad_sequences([torch.ones(2, 3), torch.ones(3)])


def test_collate_pads_ragged_items_and_keeps_given_lengths() -> None:
    batch = collate_sequences([(torch.ones(2, 3), 1), (torch.ones(4, 3), 0)])
    assert batch.x.shape == (2, 4, 3) and batch.lengths is not None and batch.lengths.tolist() == [2, 4]
    assert batch.y is not None and batch.y.tolist() == [1, 0]
    same = collate_sequences([(torch.ones(4, 3), 3, 1), (torch.ones(4, 3), 4, 0)])
    assert same.lengths is not None and same.lengths.tolist() == [3, 4]
    assert collate_sequences([(torch.ones(4, 3), 1), (torch.ones(4, 3), 0)]).lengths is None
    with pytest.raises(ValueError, match=r"dataset items must be \(sequence, label\) or \(sequence, length, label\)"):
        collate_sequences([torch.ones(3)])  # type: ignore[list-item]


def test_tensor_dataset_transforms_whole_batches() -> None:
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    dataset = TensorSequenceDataset(images, torch.arange(10), transform=image_rows_as_sequence)
    x, _ = dataset[3]
    torch.testing.assert_close(x, images[3, 0].float() / 255)
    source = as_source(dataset, CPU, input_size=28, num_classes=10)
    assert isinstance(source, TensorSource)
    (batch,) = list(source.batches([torch.tensor([3, 5])]))
    torch.testing.assert_close(batch.x[0], x)
    assert batch.y is not None and batch.y.tolist() == [3, 5]
    assert len(dataset.subset(slice(4))) == 4 and dataset.subset([1, 2]).y.tolist() == [1, 2]


def test_tensor_source_batches_equal_plain_indexing_in_plan_order() -> None:
    x, y, lengths = torch.randn(50, 6, 3), torch.randint(0, 4, (50,)), torch.randint(1, 7, (50,))
    source = as_source((x, lengths, y), CPU)
    plan = epoch_plan(50, 16, seed=3)  # 16, 16, 16, 2
    batches = list(source.batches(plan))
    assert [len(b.x) for b in batches] == [16, 16, 16, 2]
    for batch, indices in zip(batches, plan, strict=True):
        assert torch.equal(batch.x, x[indices, : int(lengths[indices].max())])  # trimmed to its longest sequence
        assert batch.lengths is not None and torch.equal(batch.lengths, lengths[indices])
        assert batch.y is not None and torch.equal(batch.y, y[indices])
    assert list(source.batches([])) == [] and list(source.batches(None)) == []


def test_sources_for_each_kind_of_data() -> None:
    x, y = torch.randn(6, 5, 3), torch.randint(0, 2, (6,))
    assert isinstance(as_source((x, y), CPU), TensorSource)
    assert isinstance(as_source(TensorDataset(x, y), CPU), TensorSource)
    ragged = as_source(([torch.randn(n, 3) for n in (2, 5, 4)], torch.tensor([0, 1, 0])), CPU)
    assert isinstance(ragged, TensorSource) and ragged.lengths is not None
    assert ragged.lengths.tolist() == [2, 5, 4]

    class Items(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return x[i], int(y[i])

    items = as_source(Items(), CPU)
    assert isinstance(items, DatasetSource)
    batches = list(items.batches(epoch_plan(6, 4, seed=None)))
    torch.testing.assert_close(torch.cat([b.x for b in batches]), x)
    loader = as_source(DataLoader(TensorDataset(x, y), batch_size=4), CPU)
    assert isinstance(loader, LoaderSource)
    assert [len(b.x) for b in loader.batches(None)] == [4, 2]


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ((torch.randn(4, 5), torch.zeros(4, dtype=torch.long)), ValueError, r"train_data sequences must have shape \(batch, time, 3\); got \(4, 5\)"),
        ((torch.randn(4, 5, 2), torch.zeros(4, dtype=torch.long)), ValueError, r"must have shape \(batch, time, 3\); got \(4, 5, 2\)"),
        ((torch.ones(4, 5, 3, dtype=torch.int64), torch.zeros(4, dtype=torch.long)), TypeError, "must be floating point; got dtype torch.int64"),
        ((torch.full((4, 5, 3), float("nan")), torch.zeros(4, dtype=torch.long)), ValueError, "must be finite; got 60 NaN or Inf values"),
        ((torch.tensor([1.0, float("inf"), 0.0]).repeat(4, 5, 1), torch.zeros(4, dtype=torch.long)), ValueError, "must be finite; got 20 NaN or Inf values"),
        ((torch.randn(4, 5, 3), torch.zeros(4)), TypeError, "train_data labels y must be an integer tensor; got dtype torch.float32"),
        ((torch.randn(4, 5, 3), torch.tensor([0, 1, 2, 1])), ValueError, r"labels y must lie in \[0, 2\) \(num_classes\); got values from 0 to 2"),
        ((torch.randn(4, 5, 3), torch.tensor([0, -1, 0, 1])), ValueError, r"labels y must lie in \[0, 2\)"),
        ((torch.randn(4, 5, 3), torch.zeros(3, dtype=torch.long)), ValueError, r"labels y must have shape \(4,\); got \(3,\)"),
        ((torch.randn(0, 5, 3), torch.zeros(0, dtype=torch.long)), ValueError, "train_data must hold at least one sequence; got an empty dataset"),
        ((torch.randn(4, 5, 3), torch.tensor([5, 5]), torch.zeros(4, dtype=torch.long)), ValueError, r"lengths must have shape \(4,\); got \(2,\)"),
        ((torch.randn(4, 5, 3), torch.tensor([5, 0, 1, 1]), torch.zeros(4, dtype=torch.long)), ValueError, r"lengths must lie in \[1, 5\]"),
        ((torch.randn(4, 5, 3), torch.tensor([5, -2, 1, 1]), torch.zeros(4, dtype=torch.long)), ValueError, r"lengths must lie in \[1, 5\] \(the time steps of X\); got values from -2 to 5"),
        ((torch.randn(4, 5, 3), torch.tensor([5, 6, 1, 1]), torch.zeros(4, dtype=torch.long)), ValueError, r"got values from 1 to 6"),
        ((torch.randn(4, 5, 3), torch.ones(4), torch.zeros(4, dtype=torch.long)), TypeError, "lengths must be an integer tensor; got dtype torch.float32"),
        ((torch.randn(4, 5, 3),), ValueError, r"train_data must be \(X, y\) or \(X, lengths, y\); got a tuple of 1 items"),
        ("a string", TypeError, "train_data must be a .* got str"),
        (("x", torch.zeros(4, dtype=torch.long)), TypeError, "X must be a torch.Tensor, a numpy array or a list of sequences; got str"),
    ],
)
def test_bad_data_is_refused_with_a_clear_message(data: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        as_source(data, CPU, input_size=3, num_classes=2, name="train_data")


def test_tensor_dataset_validation() -> None:
    with pytest.raises(ValueError, match="x and y must have the same length; got 3 and 2"):
        TensorSequenceDataset(torch.zeros(3, 2, 2), torch.zeros(2))
    with pytest.raises(TypeError, match=r"x and y must be torch\.Tensors or numpy arrays; got str and Tensor"):
        TensorSequenceDataset("ab", torch.zeros(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\); got \(2,\)"):
        TensorSequenceDataset(torch.zeros(3, 2, 2), torch.zeros(3), lengths=torch.ones(2))


def test_collated_batches_with_lengths_are_trimmed_to_their_longest_sequence() -> None:
    batch = collate_sequences([(torch.randn(6, 2), 3, 0), (torch.randn(6, 2), 4, 1)])
    assert batch.x.shape == (2, 4, 2)


def test_numpy_in_the_model_dtype_is_used_in_place_and_other_floats_are_converted_once() -> None:
    x32 = np.random.default_rng(0).normal(size=(20, 6, 3)).astype(np.float32)
    y = np.arange(20) % 2
    source = as_source((x32, y), CPU, dtype=torch.float32)
    assert isinstance(source, TensorSource) and source.x.data_ptr() == x32.ctypes.data  # no copy
    tensor = torch.from_numpy(x32)
    assert as_source((tensor, y), CPU, dtype=torch.float32).x.data_ptr() == tensor.data_ptr()  # type: ignore[union-attr]
    x64 = x32.astype(np.float64)
    converted = as_source((x64, y), CPU, dtype=torch.float32)
    assert isinstance(converted, TensorSource) and converted.x.dtype == torch.float32
    assert torch.equal(converted.x, tensor)
    (batch,) = converted.batches([torch.tensor([3, 1])])
    assert batch.x.dtype == torch.float32 and batch.y is not None and batch.y.dtype == torch.int64
    doubled = as_source((x32, y), CPU, dtype=torch.float64)
    assert isinstance(doubled, TensorSource) and doubled.x.dtype == torch.float64
    channels_first = as_source((channels_last(x32.transpose(0, 2, 1)), y), CPU, dtype=torch.float32)
    assert isinstance(channels_first, TensorSource) and channels_first.x.is_contiguous()
    assert torch.equal(channels_first.x, tensor)


@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1, 1, 0], dtype=np.int32), np.array([0, 1, 1, 0], dtype=np.uint8), [0, 1, 1, 0],
     torch.tensor([0, 1, 1, 0], dtype=torch.int8), torch.tensor([0, 1, 1, 0], dtype=torch.int32)],
    ids=["numpy int32", "numpy uint8", "list", "tensor int8", "tensor int32"],
)
def test_labels_of_any_integer_kind_become_int64(labels: object) -> None:
    source = as_source((np.zeros((4, 3, 2)), labels), CPU, num_classes=2, dtype=torch.float32)
    assert isinstance(source, TensorSource) and source.y is not None
    assert source.y.dtype == torch.int64 and source.y.tolist() == [0, 1, 1, 0]


def test_lists_of_arrays_are_padded_in_the_model_dtype() -> None:
    sequences = [np.ones((2, 3)), np.ones((5, 3), dtype=np.float32), torch.ones(4, 3, dtype=torch.float64)]
    source = as_source((sequences, [0, 1, 0]), CPU, dtype=torch.float32)
    assert isinstance(source, TensorSource) and source.lengths is not None
    assert source.x.shape == (3, 5, 3) and source.x.dtype == torch.float32 and source.lengths.tolist() == [2, 5, 4]
    assert source.x[0, 2:].abs().sum() == 0 and source.x[0, :2].sum() == 6
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.ones((2, 3)), np.ones((4, 3))]
    assert as_source((ragged, np.array([0, 1])), CPU).lengths.tolist() == [2, 4]  # type: ignore[union-attr]
    padded, lengths = pad_sequences([np.ones((2, 3)), np.ones((1, 3))], dtype=torch.float16)
    assert padded.dtype == torch.float16 and lengths.tolist() == [2, 1]


def test_loader_and_dataset_batches_get_the_model_dtype_and_int64_labels() -> None:
    x, y = torch.randn(6, 4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.int32)
    loader = as_source(DataLoader(TensorDataset(x, y), batch_size=4), CPU, dtype=torch.float32)
    batches = list(loader.batches(None))
    assert all(b.x.dtype == torch.float32 and b.y is not None and b.y.dtype == torch.int64 for b in batches)
    assert torch.equal(torch.cat([b.x for b in batches]), x.float())

    class Items(torch.utils.data.Dataset[tuple[np.ndarray, int]]):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            return x[i].numpy(), int(y[i])

    items = as_source(Items(), CPU, dtype=torch.float32)
    assert all(b.x.dtype == torch.float32 for b in items.batches(epoch_plan(6, 4, seed=None)))


def test_tensor_sequence_dataset_takes_numpy_and_lists() -> None:
    dataset = TensorSequenceDataset(np.zeros((4, 3, 2)), np.array([0, 1, 0, 1], dtype=np.int32))
    assert isinstance(dataset.x, torch.Tensor) and dataset.x.dtype == torch.float64
    source = as_source(dataset, CPU, dtype=torch.float32)
    assert isinstance(source, TensorSource) and source.x.dtype == torch.float32 and source.y is not None
    assert source.y.dtype == torch.int64
    ragged = TensorSequenceDataset([np.ones((2, 2)), np.ones((3, 2))], [1, 0])
    assert ragged.lengths is not None and ragged.lengths.tolist() == [2, 3] and ragged.x.shape == (2, 3, 2)
    with pytest.raises(ValueError, match="lengths must be None when x is a list of sequences"):
        TensorSequenceDataset([np.ones((2, 2))], [1], lengths=torch.tensor([2]))


def test_channels_last_turns_arrays_tensors_and_lists() -> None:
    array = np.arange(24.0).reshape(2, 3, 4)  # (N, C, T)
    out = channels_last(array)
    assert out.shape == (2, 4, 3) and out[1, 2, 0] == array[1, 0, 2] and np.shares_memory(out, array)
    tensor = torch.from_numpy(array)
    assert torch.equal(channels_last(tensor), tensor.transpose(1, 2))
    listed = channels_last([np.zeros((3, 5)), torch.zeros(3, 7)])
    assert [tuple(s.shape) for s in listed] == [(5, 3), (7, 3)]
    with pytest.raises(ValueError, match=r"x must be a 3-D \(n_cases, n_channels, n_timepoints\) .* got shape \(3, 4\)"):
        channels_last(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"x\[1\] must be a 2-D \(n_channels, n_timepoints\) array or tensor; got \(4,\)"):
        channels_last([np.zeros((3, 4)), np.zeros(4)])


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ((np.zeros((50, 1, 150)), np.zeros(50, dtype=int)), ValueError, r"got \(50, 1, 150\); if your data is channels-first \(n_cases, n_channels, n_timepoints\) as in aeon/sktime, use seqclf.data.channels_last\(X\)"),
        ((np.zeros((50, 150)), np.zeros(50, dtype=int)), ValueError, r"got \(50, 150\); for univariate series add a feature axis: X\[\.\.\., None\] \(numpy\) or X.unsqueeze\(-1\) \(torch\), giving \(50, 150, 1\)"),
        (([np.zeros((1, 20)), np.zeros((1, 26))], [0, 1]), ValueError, r"got 20 in sequences\[0\] \(1, 20\) and 26 in sequences\[1\] \(1, 26\)\. They all have the same first dimension \(1\): if they are channels-first .*channels_last"),
        (([np.zeros((5, 1)), np.zeros((6, 2))], [0, 1]), ValueError, r"the same number of features \(their last dimension\); got 1 in sequences\[0\] \(5, 1\) and 2 in sequences\[1\] \(6, 2\)$"),
        ((np.zeros((4, 5, 1)), np.array(["a", "b", "a", "b"])), TypeError, r"labels y must be integer class indices .* got labels of dtype <U1 \('a', 'b', 'a', \.\.\.\)\. Map them with .*numpy.unique.* or use seqclf.sklearn.SequenceClassifierEstimator"),
        ((np.zeros((4, 5, 1), dtype=np.int64), np.zeros(4, dtype=int)), TypeError, r"must be floating point; got dtype torch.int64 \(convert with"),
        ((np.array([["a"] * 5] * 4), np.zeros(4, dtype=int)), TypeError, "train_data X must be a numeric array; got dtype <U1"),
        ((np.zeros((4, 5, 1)), np.zeros(4)), TypeError, "labels y must be an integer tensor; got dtype torch.float64"),
    ],
    ids=["channels-first", "2-D univariate", "channels-first list", "ragged features", "string labels", "int X", "string X", "float labels"],
)
def test_array_input_mistakes_get_a_hint(data: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        as_source(data, CPU, input_size=1, num_classes=2, name="train_data")


def test_a_single_time_step_of_many_features_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="seqclf.data"):
        as_source((np.zeros((4, 1, 24)), np.zeros(4, dtype=int)), CPU, input_size=24)
    assert "single time step of 24 features" in caplog.text and "(batch, 24, 1)" in caplog.text


def test_subset_takes_a_boolean_mask_as_a_mask() -> None:
    x, y = torch.randn(10, 4, 2), torch.tensor([0, 3, 1, 3, 2, 0, 3, 1, 2, 0])
    dataset = TensorSequenceDataset(x, y, lengths=torch.arange(1, 11).clamp(max=4))
    threes = dataset.subset(y == 3)
    assert len(threes) == 3 and threes.y.tolist() == [3, 3, 3]
    assert torch.equal(threes.x, x[[1, 3, 6]]) and threes.lengths is not None and threes.lengths.tolist() == [2, 4, 4]
    assert dataset.subset([True] * 10).y.tolist() == y.tolist()  # a list of bools is a mask too
    assert dataset.subset([1, 0]).y.tolist() == [3, 0]  # integers stay indices
    with pytest.raises(ValueError, match=r"index as a boolean mask must have shape \(10,\) \(one entry per item\); got \(3,\)"):
        dataset.subset(torch.tensor([True, False, True]))
