"""The seed spread of the real-MNIST accuracy test's protocol, to set its threshold with a measured margin.

The test trains the tutorial's model (LSTM 28 -> 64, Adam 1e-3, batches of 32) for 2 epochs on
the first 4,000 MNIST test digits, tests on digits 8,000-9,999, for seeds 0, 1 and 2, and
checks the mean. This runs the same protocol for ``--seeds`` seeds and prints each accuracy,
the mean and the standard deviation of one run and of a 3-seed mean.

    python benchmarks/mnist_seed_spread.py --data-dir DATA --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

import seqclf


def accuracy(data_dir: Path, seed: int) -> float:
    digits = seqclf.datasets.mnist(data_dir, train=False)
    train, test = digits.subset(slice(0, 4000)), digits.subset(slice(8000, 10000))
    seqclf.seed_everything(seed)
    model = seqclf.SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    trainer = seqclf.Trainer(model, epochs=2, batch_size=32, lr=1e-3, seed=seed, device="cpu", progress=False)
    trainer.fit(train)
    return trainer.evaluate(test)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        results.append(accuracy(args.data_dir, seed))
        print(f"seed {seed}: {results[-1]:.4f}", flush=True)
    mean, sd = statistics.mean(results), statistics.stdev(results)
    print(f"{len(results)} seeds: mean {mean:.4f}, sd {sd:.4f}, min {min(results):.4f}, max {max(results):.4f}; "
          f"sd of a 3-seed mean {sd / 3 ** 0.5:.4f}")


if __name__ == "__main__":
    main()
