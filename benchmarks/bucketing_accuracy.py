"""Does length bucketing cost accuracy? Test accuracy of a plain LSTM with and without it.

Trains ``SequenceClassifier(F, 64, C)`` (one LSTM layer, last-step readout) on the UCR/UEA
unequal-length datasets bundled with aeon, over several seeds, once with shuffled batches
and once with :class:`seqclf.batching.LengthBucketing`, and prints the accuracies side by side.

    python benchmarks/bucketing_accuracy.py --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import seqclf
from seqclf.batching import LengthBucketing

DATASETS = {"JapaneseVowels": 50, "PickupGestureWiimoteZ": 100}  # name: epochs


def load(name: str, split: str) -> tuple[list[torch.Tensor], list[str]]:
    from aeon.datasets import load_classification

    x, y = load_classification(name, split=split)
    return [torch.as_tensor(np.asarray(s, dtype=np.float32)).T.contiguous() for s in x], list(y)  # (T_i, F)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'dataset':<24}{'batching':<12}{'accuracy mean':>14}{'std':>8}{'fit s':>8}   per seed")
    for name in args.datasets:
        epochs = DATASETS[name]
        train_x, train_y = load(name, "train")
        test_x, test_y = load(name, "test")
        classes = sorted(set(train_y))
        y_train = torch.tensor([classes.index(c) for c in train_y])
        y_test = torch.tensor([classes.index(c) for c in test_y])
        steps = torch.cat(train_x)  # standardise each feature with the training set's statistics
        mean, std = steps.mean(0), steps.std(0).clamp_min(1e-8)
        train_x = [(s - mean) / std for s in train_x]
        test_x = [(s - mean) / std for s in test_x]
        results: dict[str, list[float]] = {}
        for label, batching in (("shuffled", None), ("bucketed", LengthBucketing())):
            accuracies, seconds = [], []
            for seed in range(args.seeds):
                seqclf.seed_everything(seed)
                model = seqclf.SequenceClassifier(train_x[0].shape[1], 64, len(classes))
                trainer = seqclf.Trainer(
                    model, epochs=epochs, batch_size=args.batch_size, seed=seed, progress=False, batching=batching
                )
                started = time.perf_counter()
                trainer.fit((train_x, y_train))
                seconds.append(time.perf_counter() - started)
                accuracies.append(float((trainer.predict(test_x) == y_test).float().mean()))
            results[label] = accuracies
            print(
                f"{name:<24}{label:<12}{statistics.mean(accuracies):>14.3f}{statistics.stdev(accuracies):>8.3f}"
                f"{statistics.mean(seconds):>8.1f}   {' '.join(f'{a:.3f}' for a in accuracies)}",
                flush=True,
            )
        differences = [b - s for b, s in zip(results["bucketed"], results["shuffled"], strict=True)]
        print(f"{name:<24}bucketed - shuffled accuracy, paired by seed: mean {statistics.mean(differences):+.3f}, "
              f"lower in {sum(d < 0 for d in differences)} of {len(differences)} seeds")


if __name__ == "__main__":
    main()
