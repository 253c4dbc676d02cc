from __future__ import annotations

import pytest
import torch

from seqclf.metrics import confusion_matrix


def test_rows_are_true_classes_and_columns_predictions() -> None:
    predicted = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 0, 1, 2, 2, 1])
    counts = confusion_matrix(predicted, target)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert counts.dtype == torch.int64 and int(counts.sum()) == len(target)
    assert confusion_matrix(predicted, target, num_classes=5).shape == (5, 5)


@pytest.mark.parametrize(
    ("predicted", "target", "num_classes", "message"),
    [
        ([0, 1], [0], None, r"predicted and target must have the same shape \(N,\); got \(2,\) and \(1,\)"),
        ([0.5], [0], None, r"predicted must be a 1-d integer tensor \(N,\); got shape \(1,\), torch.float32"),
        ([0], [-1], None, "target must hold class indices >= 0; got -1"),
        ([0, 3], [0, 1], 2, r"num_classes must be an int >= 4 \(the largest label \+ 1\); got 2"),
    ],
)
def test_bad_input_is_named(predicted: list[float], target: list[int], num_classes: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        confusion_matrix(predicted, target, num_classes)
