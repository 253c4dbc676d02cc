"""Classify MNIST digits with an LSTM that reads each image row by row.

The classic tutorial, on seqclf: LSTM(28 -> 64), Linear(64 -> 10) on the last step,
Adam 1e-3, batches of 32, 50 epochs, seed 2019; every 10 steps it tests on the first
200 test images and prints ``Epoch: 0 train loss: 0.5680 test accuracy: 0.80``.

    python examples/mnist_lstm.py                      # downloads MNIST to ./data
    python examples/mnist_lstm.py --data-dir ../shared/data --dataset fashion-mnist --epochs 1

``--recipe fast`` trains with batches of 256 and a one-cycle learning-rate schedule for
3 epochs: it reaches the tutorial's 3-epoch Fashion-MNIST accuracy in a fraction of the
time (see docs/benchmarks.md). ``--epochs``, ``--batch-size`` and ``--lr`` override the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import seqclf
from seqclf.callbacks import PeriodicEvaluation
from seqclf.datasets import DatasetNotFoundError
from seqclf.recipes import RECIPES

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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
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
        print(
            f"Epoch: {int(result['epoch'])} train loss: {result['train_loss']:.4f} "
            f"test accuracy: {result['accuracy']:.2f}",
            flush=True,
        )

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    recipe = dataclasses.replace(RECIPES[args.recipe], **{k: v for k, v in overrides.items() if v is not None})
    model = seqclf.SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    trainer = recipe.trainer(
        model,
        len(train),
        seed=args.seed,
        device=args.device,
        callbacks=[PeriodicEvaluation(test.subset(slice(args.eval_size)), args.eval_every, report=tutorial_line)],
    )
    trainer.fit(train)
    metrics = trainer.evaluate(test)
    print(f"Test accuracy on all {int(metrics['samples'])} test images: {metrics['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
