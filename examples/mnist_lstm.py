"""Classify MNIST digits with an LSTM that reads each image row by row.

The classic tutorial, on seqclf: LSTM(28 -> 64), Linear(64 -> 10) on the last step,
Adam 1e-3, batches of 32, seed 2019; every 10 steps it tests on the first 200 test
images and prints ``Epoch: 0 train loss: 0.5680 test accuracy: 0.80``.

Its default is the tutorial's 50 epochs: about 13 minutes on a quiet 2-core CPU (15 s an
epoch), and much longer on a busy one (one epoch took 13.5 minutes at a load average of 10).
A first look, with the three pictures, in under a minute on a 2-core CPU (measured on
Fashion-MNIST, the same size: 42 s at a load average of 9, plus the download):

    python examples/mnist_lstm.py --recipe fast --epochs 1 --train-limit 12800 --plot-dir plots

More:

    python examples/mnist_lstm.py                    # the tutorial's 50 epochs; downloads MNIST to ./data
    python examples/mnist_lstm.py --epochs 3         # the tutorial's recipe for 3 epochs
    python examples/mnist_lstm.py --dataset fashion-mnist --data-dir ~/datasets/FashionMNIST/raw
    python examples/mnist_lstm.py --checkpoint-dir runs/mnist   # after a Ctrl-C, add --resume to continue
    torchrun --nproc-per-node 2 examples/mnist_lstm.py ...      # data-parallel: 2 processes, batch 32 each

``--data-dir`` takes the folder the download creates (``./data``, holding ``MNIST/raw``)
or the ``raw`` folder holding the four IDX files itself. A progress bar per epoch shows
on a terminal (``--no-progress`` hides it). ``--checkpoint-dir DIR`` saves the run every
500 steps, every epoch and on Ctrl-C; the same command with ``--resume`` continues it
exactly.

``--recipe fast`` trains with batches of 256 and a one-cycle learning-rate schedule for
3 epochs: it reaches the tutorial's 3-epoch Fashion-MNIST accuracy in a fraction of the
time (see the benchmarks page of the documentation). ``--epochs``, ``--batch-size`` and
``--lr`` override the recipe.
"""

from __future__ import annotations

# Only the standard library at the top: torch takes seconds to import, and --help and
# argument errors must not wait for it. seqclf (and so torch) is imported in main().
import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import seqclf
    from seqclf.callbacks import PeriodicEvaluation
    from seqclf.datasets import DatasetNotFoundError

PLOT_FILES = ("curves.png", "predictions.png", "confusion.png")
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # --dataset: torchvision's folder name
RECIPES = ("fast", "tutorial")  # the names in seqclf.recipes.RECIPES (a test checks they agree)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=RECIPES, default="tutorial",
                        help="tutorial: batch 32, Adam 1e-3, 50 epochs; fast: batch 256, one-cycle to 2e-2, "
                             "3 epochs (default: tutorial)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the 60,000 training images (default: the recipe's; tutorial: 50)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (tutorial: 32)")
    parser.add_argument("--lr", type=float, default=None, help="default: the recipe's (tutorial: 1e-3)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="folder holding MNIST/raw (or FashionMNIST/raw), or that raw folder itself; "
                             "missing files are downloaded there (default: ./data)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist",
                        help="mnist: handwritten digits; fashion-mnist: Zalando's clothing images, same size and "
                             "shape, harder (default: mnist)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=2019,
                        help="seeds the initial weights and the shuffling: the same seed gives the same run "
                             "(default: 2019, the tutorial's)")
    parser.add_argument("--eval-every", type=int, default=10, help="steps between tutorial log lines (default: 10)")
    parser.add_argument("--eval-size", type=int, default=200,
                        help="test images used by the log line (default: 200)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="save a checkpoint every 500 steps, every epoch and on Ctrl-C")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--plot-dir", type=Path, default=None,
                        help="write curves.png, predictions.png and confusion.png here (needs matplotlib: "
                             'pip install matplotlib, or pip install -e ".[plot]" in the clone)')
    return parser.parse_args(argv)


def load_data(args: argparse.Namespace) -> tuple[seqclf.TensorSequenceDataset, seqclf.TensorSequenceDataset] | None:
    """The training and test sets, or None after printing why they could not be loaded."""
    from seqclf.datasets import DatasetNotFoundError

    hints = other_dataset_hints(args)
    if hints and not args.no_download and not found(args.dataset, args.data_dir):
        print(f"{hints[0]} (downloading {DATASETS[args.dataset]} instead)", file=sys.stderr)
    try:
        train = loader(args.dataset)(args.data_dir, train=True, download=not args.no_download)
        test = loader(args.dataset)(args.data_dir, train=False, download=not args.no_download)
    except DatasetNotFoundError as error:
        if not hints:  # name the other data set anyway: the files at hand may be that one's
            hints = [f"hint: to train on {DATASETS[option]} instead, add --dataset {option}"
                     for option in DATASETS if option != args.dataset]
        print("\n".join([f"error: {missing_files_message(error)}", *hints]), file=sys.stderr)
        return None
    if args.train_limit is not None:
        train = train.subset(slice(args.train_limit))
    return train, test


def other_dataset_hints(args: argparse.Namespace) -> list[str]:
    """A hint per other data set found in --data-dir or beside it (e.g. data/mnist and data/fashion-mnist)."""
    hints = []
    for option in DATASETS:
        if option == args.dataset:
            continue
        if found(option, args.data_dir):
            hints.append(f"hint: {args.data_dir} holds {DATASETS[option]} files: add --dataset {option}")
        elif found(option, args.data_dir.parent):
            parent = args.data_dir.parent
            hints.append(f"hint: {parent} holds {DATASETS[option]} files: add --dataset {option} --data-dir {parent}")
    return hints


def loader(option: str) -> Callable[..., seqclf.TensorSequenceDataset]:
    import seqclf

    return seqclf.datasets.fashion_mnist if option == "fashion-mnist" else seqclf.datasets.mnist


def found(option: str, folder: Path) -> bool:
    """Whether ``folder`` holds the files of a dataset (its test split, to read less)."""
    from seqclf.datasets import DatasetNotFoundError

    try:
        loader(option)(folder, train=False)
    except DatasetNotFoundError:
        return False
    return True


def missing_files_message(error: DatasetNotFoundError) -> str:
    """What a command-line user can do about missing files (the library's message speaks of download=True)."""
    if error.download_error is None:
        why, retry = "--no-download was given", "."
    else:
        why, retry = f"the download failed: {error.download_error}", ", or run again with internet access."
    return (
        f"{error.dataset} files are missing from {error.folder}/: {', '.join(error.missing)} ({why}).\n"
        f"Point --data-dir at the folder holding {error.dataset}/raw/, or at that raw folder itself, "
        f"or copy the uncompressed IDX files to {error.folder}/ from {error.source}{retry}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    existing = [name for name in PLOT_FILES if args.plot_dir and (args.plot_dir / name).exists()]
    if existing:  # checked before training: a finished run must not fail at its very end
        print(f"error: --plot-dir {args.plot_dir} already holds {', '.join(existing)}; "
              "choose another folder or move them (seqclf never overwrites a saved file)", file=sys.stderr)
        return 1
    import seqclf  # after parsing the arguments: importing torch takes seconds
    from seqclf.callbacks import Checkpoint, PeriodicEvaluation
    from seqclf.checkpoint import latest_checkpoint
    from seqclf.recipes import RECIPES as RECIPE_SETTINGS

    seqclf.seed_everything(args.seed)
    data = load_data(args)
    if data is None:
        return 1
    train, test = data

    from tqdm import tqdm

    def tutorial_line(result: dict[str, float]) -> None:
        # tqdm.write prints to stdout like print, above the progress bar instead of through it
        tqdm.write(
            f"Epoch: {int(result['epoch'])} train loss: {result['train_loss']:.4f} "
            f"test accuracy: {result['accuracy']:.2f}"
        )
        sys.stdout.flush()  # show each line at once when stdout is a pipe or a file

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    recipe = dataclasses.replace(RECIPE_SETTINGS[args.recipe], **{k: v for k, v in overrides.items() if v is not None})
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

    from seqclf import plots  # needs matplotlib (pip install -e ".[plot]" in the clone)

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
