"""Classify MNIST digits with an LSTM that reads each image row by row.

The classic tutorial, on seqclf: LSTM(28 -> 64), Linear(64 -> 10) on the last step,
Adam 1e-3, batches of 32, 50 epochs, seed 2019; every 10 steps it tests on the first
200 test images and prints ``Epoch: 0 train loss: 0.5680 test accuracy: 0.80``.

    python examples/mnist_lstm.py                      # downloads MNIST to ./data
    python examples/mnist_lstm.py --data-dir ../shared/data --dataset fashion-mnist --epochs 1
    torchrun --nproc-per-node 2 examples/mnist_lstm.py ...   # data-parallel: 2 processes, batch 32 each
    python examples/mnist_lstm.py --epochs 1 --plot-dir plots   # + curves, predictions, confusion matrix

A progress bar per epoch shows on a terminal (``--no-progress`` hides it).
``--checkpoint-dir DIR`` saves the run (every 500 steps, every epoch, and on Ctrl-C);
run the same command with ``--resume`` to continue it exactly.

``--recipe fast`` trains with batches of 256 and a one-cycle learning-rate schedule for
3 epochs: it reaches the tutorial's 3-epoch Fashion-MNIST accuracy in a fraction of the
time (see docs/benchmarks.md). ``--epochs``, ``--batch-size`` and ``--lr`` override the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from tqdm import tqdm

import seqclf
from seqclf.callbacks import Checkpoint, PeriodicEvaluation
from seqclf.checkpoint import latest_checkpoint
from seqclf.datasets import DatasetNotFoundError
from seqclf.recipes import RECIPES

PLOT_FILES = ("curves.png", "predictions.png", "confusion.png")
LOADERS = {"mnist": seqclf.datasets.mnist, "fashion-mnist": seqclf.datasets.fashion_mnist}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="tutorial", help="default: tutorial")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's (tutorial: 50)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (tutorial: 32)")
    parser.add_argument("--lr", type=float, default=None, help="default: the recipe's (tutorial: 1e-3)")
    parser.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw (torchvision's layout)")
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--eval-every", type=int, default=10, help="steps between tutorial log lines")
    parser.add_argument("--eval-size", type=int, default=200, help="test images used by the log line")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="save a checkpoint every 500 steps, every epoch and on Ctrl-C")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
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

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    recipe = dataclasses.replace(RECIPES[args.recipe], **{k: v for k, v in overrides.items() if v is not None})
    model = seqclf.SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    checkpoints = [] if args.checkpoint_dir is None else [Checkpoint(args.checkpoint_dir, every_n_steps=500)]
    resume_from = latest_checkpoint(args.checkpoint_dir) if args.resume and args.checkpoint_dir else None
    if args.resume and resume_from is None:
        print(f"error: --resume needs a checkpoint in --checkpoint-dir; got none in {args.checkpoint_dir}",
              file=sys.stderr)
        return 1
    periodic = PeriodicEvaluation(test.subset(slice(args.eval_size)), args.eval_every, report=tutorial_line)
    trainer = recipe.trainer(
        model,
        len(train),
        seed=args.seed,
        device=args.device,
        callbacks=[periodic, *checkpoints],
        progress=False if args.no_progress else None,
    )
    try:
        # with --plot-dir, per-epoch test figures for the curves
        trainer.fit(train, eval_data=test if args.plot_dir else None, resume_from=resume_from)
    except (FileExistsError, seqclf.CheckpointError) as error:  # a run's saved files are never overwritten
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if checkpoints and trainer.is_main_process:
            print(f"Interrupted; saved {checkpoints[0].last_path}. Continue with --checkpoint-dir "
                  f"{args.checkpoint_dir} --resume", file=sys.stderr)
        return 130
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
