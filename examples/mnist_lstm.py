"""Classify MNIST digits with an LSTM that reads each image row by row.

The classic tutorial, on seqclf: LSTM(28 -> 64), Linear(64 -> 10) on the last step,
Adam 1e-3, batches of 32, 50 epochs, seed 2019; every 10 steps it tests on the first
200 test images and prints ``Epoch: 0 train loss: 0.5680 test accuracy: 0.80``.

    python examples/mnist_lstm.py                      # downloads MNIST to ./data
    python examples/mnist_lstm.py --data-dir ../shared/data --dataset fashion-mnist --epochs 1
    torchrun --nproc-per-node 2 examples/mnist_lstm.py ...   # data-parallel: 2 processes, batch 32 each
    python examples/mnist_lstm.py --epochs 1 --plot-dir plots   # + curves, predictions, confusion matrix

A progress bar per epoch shows on a terminal (``--no-progress`` hides it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

import seqclf
from seqclf.callbacks import PeriodicEvaluation
from seqclf.datasets import DatasetNotFoundError

PLOT_FILES = ("curves.png", "predictions.png", "confusion.png")
LOADERS = {"mnist": seqclf.datasets.mnist, "fashion-mnist": seqclf.datasets.fashion_mnist}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw (torchvision's layout)")
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--eval-every", type=int, default=10, help="steps between tutorial log lines")
    parser.add_argument("--eval-size", type=int, default=200, help="test images used by the log line")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--plot-dir", type=Path, default=None,
                        help="write curves.png, predictions.png and confusion.png here (needs seqclf[plot])")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    existing = [name for name in PLOT_FILES if args.plot_dir and (args.plot_dir / name).exists()]
    if existing:  # checked before training: a finished run must not fail at its very end
        print(f"error: --plot-dir {args.plot_dir} already holds {', '.join(existing)}; "
              "choose another folder or move them (seqclf never overwrites a saved file)", file=sys.stderr)
        return 1
    seqclf.seed_everything(args.seed)
    load = LOADERS[args.dataset]
    try:
        train = load(args.data_dir, train=True, download=not args.no_download)
        test = load(args.data_dir, train=False, download=not args.no_download)
        if args.train_limit is not None:
            train = train.subset(slice(args.train_limit))
    except DatasetNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    def tutorial_line(result: dict[str, float]) -> None:
        # tqdm.write prints to stdout like print, above the progress bar instead of through it
        tqdm.write(
            f"Epoch: {int(result['epoch'])} train loss: {result['train_loss']:.4f} "
            f"test accuracy: {result['accuracy']:.2f}"
        )
        sys.stdout.flush()  # show each line at once when stdout is a pipe or a file

    model = seqclf.SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    periodic = PeriodicEvaluation(test.subset(slice(args.eval_size)), args.eval_every, report=tutorial_line)
    trainer = seqclf.Trainer(
        model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        callbacks=[periodic],
        progress=False if args.no_progress else None,
    )
    trainer.fit(train, eval_data=test if args.plot_dir else None)  # per-epoch test curves for the plots
    metrics = trainer.evaluate(test)  # every process evaluates a part; all get the whole figure
    if trainer.is_main_process:
        print(f"Test accuracy on all {int(metrics['samples'])} test images: {metrics['accuracy']:.4f}")
        if args.plot_dir:
            write_plots(args.plot_dir, trainer, periodic, test, args.dataset)
    return 0


def write_plots(
    folder: Path,
    trainer: seqclf.Trainer,
    periodic: PeriodicEvaluation,
    test: seqclf.TensorSequenceDataset,
    dataset: str,
) -> None:
    import torchvision

    from seqclf import plots  # needs matplotlib: pip install "seqclf[plot]"

    folder.mkdir(parents=True, exist_ok=True)
    names = torchvision.datasets.FashionMNIST.classes if dataset == "fashion-mnist" else None
    predicted = trainer.predict(test)  # (N,)
    plots.plot_training_curves(trainer.history, periodic.results, save_to=folder / "curves.png")
    plots.plot_predictions(test.x[:32], predicted[:32], test.y[:32], class_names=names,
                           save_to=folder / "predictions.png")
    plots.plot_confusion_matrix(predicted, test.y, num_classes=10, class_names=names,
                                save_to=folder / "confusion.png")
    print(f"Wrote curves.png, predictions.png and confusion.png to {folder}")


if __name__ == "__main__":
    sys.exit(main())
