"""Pictures of a run: training curves, predictions on images, a confusion matrix.

Needs matplotlib: ``pip install matplotlib`` (or, in a clone of seqclf,
``pip install -e ".[plot]"``). Each function returns a ``matplotlib.figure.Figure``
(shown inline in a notebook) built without ``pyplot``, so no global figure state is
kept, and saves it when given ``save_to``.

Examples:
    >>> from seqclf.plots import plot_training_curves
    >>> figure = plot_training_curves(trainer.history, save_to="curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from .metrics import _as_labels, confusion_matrix

__all__ = ["plot_confusion_matrix", "plot_predictions", "plot_training_curves"]

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = 'pip install matplotlib (or, in a clone of seqclf, pip install -e ".[plot]")'

PathLike = str | os.PathLike[str]

# (record key, legend label, colour) of each curve, per panel: training in blue, evaluation in orange
_TRAIN, _EVAL = "tab:blue", "tab:orange"
_EPOCH_SERIES = {
    "loss": [("train_loss", "train (epoch mean)", _TRAIN), ("val_loss", "eval_data (end of epoch)", _EVAL)],
    "accuracy": [
        ("train_accuracy", "train (epoch mean)", _TRAIN),
        ("val_accuracy", "eval_data (end of epoch)", _EVAL),
    ],
}
_STEP_SERIES = {
    "loss": [("train_loss", "train (one batch)", _TRAIN), ("loss", "periodic evaluation", _EVAL)],
    "accuracy": [("train_accuracy", "train (one batch)", _TRAIN), ("accuracy", "periodic evaluation", _EVAL)],
}


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    steps: Sequence[Mapping[str, Any]] | None = None,
    *,
    x: Literal["epoch", "step"] | None = None,
    save_to: PathLike | None = None,
) -> Figure:
    """Loss and accuracy of a run, train and evaluation, side by side.

    Args:
        history: per-epoch records, e.g. ``trainer.history`` (keys ``train_loss``,
            ``train_accuracy`` and, with ``eval_data``, ``val_loss``, ``val_accuracy``).
        steps: optional per-step records with a ``step`` key and any of
            ``train_loss`` (the batch's loss), ``loss`` and ``accuracy`` (a held-out
            evaluation), e.g. ``PeriodicEvaluation(...).results``.
        x: the horizontal axis: ``"epoch"`` (epochs completed) or ``"step"``
            (optimizer steps); ``"step"`` when ``steps`` is given, else ``"epoch"``.
        save_to: also save the figure to this new file (the format follows the suffix);
            an existing file is never overwritten.

    Returns:
        A Figure with two axes: loss, then accuracy.
    """
    if x is None:
        x = "epoch" if steps is None else "step"
    if x not in ("epoch", "step"):
        raise ValueError(f"x must be 'epoch' or 'step'; got {x!r}")
    if x == "epoch" and steps is not None:
        raise ValueError("x must be 'step' when steps are given (they have no epoch axis); got 'epoch'")
    _check_records("history", history, "epoch" if x == "epoch" else "step")
    if steps is not None:
        _check_records("steps", steps, "step")
    plotted = 0
    figure = _new_figure(figsize=(10, 4))
    axes_loss, axes_accuracy = figure.subplots(1, 2)
    for axes, panel in ((axes_loss, "loss"), (axes_accuracy, "accuracy")):
        if steps is not None:
            for key, label, color in _STEP_SERIES[panel]:
                xs, ys = _series(steps, "step", key)
                if xs:
                    axes.plot(xs, ys, label=label, color=color, linewidth=1, alpha=0.45)
                    plotted += 1
        for key, label, color in _EPOCH_SERIES[panel]:
            xs, ys = _series(history, x, key)
            if xs:
                if x == "epoch":
                    xs = [value + 1 for value in xs]  # record "epoch" e ends after e + 1 epochs
                axes.plot(xs, ys, label=label, color=color, marker="o", markersize=5, linewidth=2)
                plotted += 1
        axes.set_xlabel("epoch" if x == "epoch" else "optimizer step")
        axes.set_ylabel(panel)
        axes.set_title(panel.capitalize())
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    if x == "epoch":
        for axes in (axes_loss, axes_accuracy):
            axes.xaxis.get_major_locator().set_params(integer=True)
    if plotted == 0:
        keys = sorted({key for record in [*history, *(steps or [])] for key in record})
        raise ValueError(
            f"history must hold train_loss, train_accuracy, val_loss or val_accuracy (or steps loss, "
            f"accuracy, train_loss); got keys {keys}"
        )
    return _saved(figure, save_to)


def plot_predictions(
    images: Any,
    predicted: Any,
    target: Any,
    *,
    class_names: Sequence[str] | None = None,
    max_images: int = 32,
    ncols: int = 8,
    save_to: PathLike | None = None,
) -> Figure:
    """A grid of images titled with their predicted and true labels; mistakes in red.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, 3, H, W)`` images, uint8 or
            float (a ``(N, T, F)`` batch of sequences is drawn as ``T x F`` images).
        predicted: ``(N,)`` predicted class indices.
        target: ``(N,)`` true class indices.
        class_names: names of the classes, indexed by class; indices by default.
        max_images: draw the first ``max_images`` images only.
        ncols: images per row.
        save_to: also save the figure to this file.

    Returns:
        A Figure with one small axes per image; a wrong prediction gets a red title
        and a red frame, and the figure's title counts the mistakes.
    """
    pictures = _as_images(images)
    predicted_t, target_t = _as_labels("predicted", predicted), _as_labels("target", target)
    if not len(pictures) == len(predicted_t) == len(target_t):
        raise ValueError(
            f"images, predicted and target must have the same length N; got {len(pictures)}, "
            f"{len(predicted_t)} and {len(target_t)}"
        )
    _check_positive("max_images", max_images)
    _check_positive("ncols", ncols)
    count = min(len(pictures), max_images)
    if count == 0:
        raise ValueError("images must hold at least one image; got 0")
    name = _namer(class_names, int(torch.cat([predicted_t, target_t]).max()) + 1)
    ncols = min(ncols, count)
    nrows = math.ceil(count / ncols)
    figure = _new_figure(figsize=(1.45 * ncols, 1.75 * nrows + 0.4))
    grid = figure.subplots(nrows, ncols, squeeze=False)
    wrong = 0
    for i, axes in enumerate(grid.flat):
        axes.set_xticks([])
        axes.set_yticks([])
        if i >= count:
            axes.set_axis_off()
            continue
        picture = pictures[i]
        if picture.dim() == 3:  # (3, H, W)
            axes.imshow(picture.permute(1, 2, 0).numpy())  # (H, W, 3)
        else:
            limits = (0, 255) if picture.dtype == torch.uint8 else (None, None)
            axes.imshow(picture.numpy(), cmap="gray", vmin=limits[0], vmax=limits[1])
        p, t = int(predicted_t[i]), int(target_t[i])
        color = "black" if p == t else "red"
        wrong += p != t
        axes.set_title(f"pred {name(p)}\ntrue {name(t)}", fontsize=8, color=color, pad=3)
        for spine in axes.spines.values():
            spine.set_color(color)
            spine.set_linewidth(0.5 if p == t else 2.5)
    figure.suptitle(f"{wrong} of {count} predictions wrong (in red)", fontsize=10)
    return _saved(figure, save_to)


def plot_confusion_matrix(
    predicted: Any,
    target: Any,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    save_to: PathLike | None = None,
) -> Figure:
    """The confusion matrix as a heat map with the count (or fraction) in each cell.

    Args:
        predicted: ``(N,)`` predicted class indices.
        target: ``(N,)`` true class indices.
        num_classes: ``C``; by default one more than the largest index seen.
        class_names: names of the ``C`` classes; indices by default.
        normalize: show each row as fractions of its true class (rows sum to 1).
        save_to: also save the figure to this file.

    Returns:
        A Figure: rows are true classes, columns predicted classes (see
        :func:`seqclf.metrics.confusion_matrix`).
    """
    counts = confusion_matrix(predicted, target, num_classes)  # (C, C)
    classes = counts.shape[0]
    if classes == 0:
        raise ValueError("predicted and target must hold at least one label; got 0")
    name = _namer(class_names, classes)
    values = counts.to(torch.float64)
    if normalize:
        values = values / values.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4.5, 0.55 * classes + 2.5)
    figure = _new_figure(figsize=(size + 1.0, size))
    axes: Axes = figure.subplots()
    image = axes.imshow(values.numpy(), cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true class" if normalize else "sequences")
    labels = [name(i) for i in range(classes)]
    axes.set_xticks(range(classes), labels, rotation=45 if max(map(len, labels)) > 2 else 0, ha="right")
    axes.set_yticks(range(classes), labels)
    if max(map(len, labels)) <= 2:
        for tick in axes.get_xticklabels():
            tick.set_horizontalalignment("center")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    correct = int(counts.diagonal().sum())
    total = int(counts.sum())
    axes.set_title(f"Confusion matrix: {correct} of {total} correct ({correct / max(total, 1):.1%})")
    threshold = float(values.max()) / 2
    fontsize = 9 if classes <= 10 else 7 if classes <= 20 else 5
    for i in range(classes):
        for j in range(classes):
            value = float(values[i, j])
            text = f"{value:.2f}" if normalize else str(int(counts[i, j]))
            axes.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                      color="white" if value > threshold else "black")
    return _saved(figure, save_to)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"seqclf.plots needs matplotlib, which is not installed: {INSTALL_HINT}") from error
    return Figure(figsize=figsize, layout="constrained")


def _saved(figure: Figure, save_to: PathLike | None) -> Figure:
    """Save ``figure`` to a new file; an existing file is never overwritten."""
    if save_to is None:
        return figure
    path = Path(save_to)
    try:
        file = path.open("xb")  # exclusive: fails if the file exists
    except FileExistsError:
        raise FileExistsError(
            f"save_to must name a file that does not exist yet (seqclf never overwrites a saved file); "
            f"got the existing file {str(path)!r}"
        ) from None
    try:
        with file:
            figure.savefig(file, dpi=150, format=path.suffix.lstrip(".").lower() or "png")
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written picture is left behind
        raise
    return figure


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _check_records(name: str, records: Sequence[Mapping[str, Any]], x: str) -> None:
    if isinstance(records, (str, bytes, Mapping)) or not all(isinstance(r, Mapping) for r in records):
        raise TypeError(f"{name} must be a sequence of dict records (e.g. trainer.history); got {records!r:.80}")
    missing = [i for i, record in enumerate(records) if x not in record]
    if missing:
        raise ValueError(f"{name} records must have the key {x!r}; got records without it at {missing[:5]}")


def _series(records: Sequence[Mapping[str, Any]], x: str, key: str) -> tuple[list[float], list[float]]:
    pairs = [(float(r[x]), float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _namer(class_names: Sequence[str] | None, needed: int) -> Any:
    if class_names is None:
        return str
    if isinstance(class_names, str) or len(class_names) < needed:
        got = repr(class_names) if isinstance(class_names, str) else f"{len(class_names)} names"
        raise ValueError(f"class_names must name at least {needed} classes; got {got}")
    return lambda index: str(class_names[index])


def _as_images(images: Any) -> Tensor:
    tensor = torch.as_tensor(images).detach().cpu()
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]  # (N, H, W)
    if not (tensor.dim() == 3 or (tensor.dim() == 4 and tensor.shape[1] == 3)):
        raise ValueError(f"images must have shape (N, H, W), (N, 1, H, W) or (N, 3, H, W); got {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        return tensor
    if not tensor.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point; got dtype {tensor.dtype}")
    return tensor.to(torch.float32)
