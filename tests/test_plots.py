from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from seqclf import plots
from seqclf.metrics import confusion_matrix

pytest.importorskip("matplotlib", reason='needs matplotlib: pip install matplotlib (or pip install -e ".[plot]")')

HISTORY = [
    {"epoch": 0, "step": 10, "train_loss": 0.9, "train_accuracy": 0.5, "val_loss": 0.8, "val_accuracy": 0.6},
    {"epoch": 1, "step": 20, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7},
]
STEPS = [{"epoch": 0, "batch": b, "step": b + 1, "train_loss": 1.0 - b / 20, "loss": 0.9, "accuracy": 0.5} for b in (0, 5)]


def labels_of(axes: object) -> list[str]:
    return [text.get_text() for text in axes.get_legend().get_texts()]  # type: ignore[attr-defined]


def test_training_curves_by_epoch_and_by_step(tmp_path: Path) -> None:
    figure = plots.plot_training_curves(HISTORY, save_to=tmp_path / "curves.png")
    loss, accuracy = figure.axes
    assert labels_of(loss) == ["train (epoch mean)", "eval_data (end of epoch)"]
    assert loss.lines[0].get_xdata().tolist() == [1, 2] and loss.lines[1].get_ydata().tolist() == [0.8, 0.6]
    assert accuracy.get_ylabel() == "accuracy" and loss.get_xlabel() == "epoch"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    by_step = plots.plot_training_curves(HISTORY, STEPS)
    assert by_step.axes[0].get_xlabel() == "optimizer step"
    assert labels_of(by_step.axes[0]) == ["train (one batch)", "periodic evaluation", "train (epoch mean)",
                                          "eval_data (end of epoch)"]
    assert by_step.axes[0].lines[2].get_xdata().tolist() == [10, 20]  # epoch records sit at their step


def test_training_curves_refuse_what_they_cannot_draw() -> None:
    with pytest.raises(ValueError, match="x must be 'step' when steps are given"):
        plots.plot_training_curves(HISTORY, STEPS, x="epoch")
    with pytest.raises(ValueError, match=r"history must hold train_loss.*got keys \['epoch', 'note'\]"):
        plots.plot_training_curves([{"epoch": 0, "note": "x"}])
    with pytest.raises(ValueError, match=r"steps records must have the key 'step'; got records without it at \[0\]"):
        plots.plot_training_curves(HISTORY, [{"loss": 1.0}])
    with pytest.raises(TypeError, match="history must be a sequence of dict records"):
        plots.plot_training_curves("history")  # type: ignore[arg-type]


def test_prediction_grid_marks_mistakes(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    predicted = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])
    target = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    names = [f"class {i}" for i in range(10)]
    figure = plots.plot_predictions(images, predicted, target, class_names=names, ncols=4, save_to=tmp_path / "p.png")
    assert len(figure.axes) == 12  # 3 rows of 4; the last two are blank
    titles = [axes.title for axes in figure.axes[:10]]
    assert titles[9].get_text() == "pred class 0\ntrue class 9" and titles[9].get_color() == "red"
    assert titles[0].get_text() == "pred class 0\ntrue class 0" and titles[0].get_color() == "black"
    assert figure.get_suptitle() == "1 of 10 predictions wrong (in red)"
    assert len(plots.plot_predictions(images, predicted, target, max_images=3).axes) == 3
    sequences = torch.rand(2, 28, 28)  # (N, T, F) sequences draw as T x F images
    assert len(plots.plot_predictions(sequences, predicted[:2], target[:2]).axes) == 2


@pytest.mark.parametrize(
    ("images", "class_names", "message"),
    [
        (torch.zeros(3, 2, 4, 4), None, r"images must have shape \(N, H, W\), \(N, 1, H, W\) or \(N, 3, H, W\); got \(3, 2, 4, 4\)"),
        (torch.zeros(2, 4, 4), None, "images, predicted and target must have the same length N; got 2, 3 and 3"),
        (torch.zeros(3, 4, 4), ["a"], "class_names must name at least 3 classes; got 1 names"),
    ],
)
def test_prediction_grid_names_bad_input(images: torch.Tensor, class_names: list[str] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plots.plot_predictions(images, [0, 1, 2], [0, 1, 2], class_names=class_names)


def test_confusion_matrix_cells_show_the_counts(tmp_path: Path) -> None:
    predicted = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 0, 1, 2, 2, 1])
    figure = plots.plot_confusion_matrix(predicted, target, class_names=["a", "b", "c"], save_to=tmp_path / "c.png")
    axes = figure.axes[0]
    cells = [int(text.get_text()) for text in axes.texts]
    assert cells == confusion_matrix(predicted, target).flatten().tolist()
    assert axes.get_title() == "Confusion matrix: 4 of 6 correct (66.7%)"
    assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b", "c"]
    normalized = plots.plot_confusion_matrix(predicted, target, normalize=True).axes[0]
    assert [t.get_text() for t in normalized.texts[:3]] == ["0.50", "0.50", "0.00"]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'seqclf.plots needs matplotlib, which is not installed: pip install matplotlib \(or, in a clone of seqclf, pip install -e "\.\[plot\]"\)$'):
        plots.plot_training_curves(HISTORY)


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "curves.png"
    target.write_bytes(b"the user's own picture")
    with pytest.raises(FileExistsError, match="save_to must name a file that does not exist yet"):
        plots.plot_training_curves(HISTORY, save_to=target)
    assert target.read_bytes() == b"the user's own picture"
