"""Accuracy and fit time on UCR/UEA data sets bundled with aeon (offline), beside published results.

Runs the library's time-series defaults (LSTM-FCN + the small-data recipe) and a plain LSTM
under the same recipe on each data set's official train/test split, for several seeds,
and prints a table with aeon's bundled published accuracies (resample 0) of
InceptionTime, HC2 and WEASEL-2.0.

    python benchmarks/ucr_uea.py                      # the four headline data sets, 3 seeds
    python benchmarks/ucr_uea.py --datasets JapaneseVowels OSULeaf --models lstm_fcn

Needs ``aeon`` (a benchmark dependency only). Each fit runs on one thread
(``--threads``); ``--jobs 2`` runs two fits at once in separate processes.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

import seqclf
from seqclf.recipes import SMALL_DATA, SmallDataRecipe

HEADLINE = ["ArrowHead", "GunPoint", "ItalyPowerDemand", "BasicMotions"]
PUBLISHED = ["InceptionTime", "HC2", "WEASEL-2.0"]


def load(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Official split as padded ``(N, T, C)`` float32, lengths and class indices; z-normalised per channel
    with the training set's statistics over valid steps."""
    from aeon.datasets import load_classification

    x_train, y_train = load_classification(name, split="train")
    x_test, y_test = load_classification(name, split="test")
    classes = np.unique(y_train)

    def tensors(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seqs = [torch.as_tensor(np.asarray(a, dtype=np.float32)).T for a in x]  # (T_i, C)
        padded, lengths = seqclf.pad_sequences(seqs)
        return padded, lengths, torch.as_tensor(np.searchsorted(classes, y))

    xtr, ltr, ytr = tensors(x_train, y_train)
    xte, lte, yte = tensors(x_test, y_test)
    valid = torch.cat([s[: int(n)] for s, n in zip(xtr, ltr, strict=True)])  # (sum T_i, C)
    mean, std = valid.mean(0), valid.std(0).clamp(min=1e-8)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    return xtr, ltr, ytr, xte, lte, yte


def build(model: str, input_size: int, num_classes: int) -> torch.nn.Module:
    if model == "lstm":
        return seqclf.SequenceClassifier(input_size, 64, num_classes)
    kwargs: dict[str, Any] = {}
    for part in model.split(",")[1:]:  # e.g. "lstm_fcn,layout=serial,norm=layer"
        key, value = part.split("=")
        kwargs[key] = int(value) if value.isdigit() else value
    if kwargs.get("filters") == "small":
        kwargs["filters"] = (32, 64, 32)
    return seqclf.LSTMFCN(input_size, num_classes, **kwargs)


def run_one(args: tuple[str, str, int, int, dict[str, Any]]) -> dict[str, Any]:
    name, model_name, seed, threads, recipe_kwargs = args
    torch.set_num_threads(threads)
    xtr, ltr, ytr, xte, lte, yte = load(name)
    num_classes = int(ytr.max()) + 1
    seqclf.seed_everything(seed)
    model = build(model_name, xtr.shape[-1], num_classes)
    recipe = SmallDataRecipe(**{**SMALL_DATA.__dict__, **recipe_kwargs})
    equal = bool((ltr == xtr.shape[1]).all())
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer = recipe.fit(model, xtr, ytr, None if equal else ltr, seed=seed, progress=False)
    fit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    test = (xte, yte) if bool((lte == xte.shape[1]).all()) else (xte, lte, yte)
    accuracy = trainer.evaluate(test)["accuracy"]
    epochs = len(trainer.history)
    return {"dataset": name, "model": model_name, "seed": seed, "accuracy": accuracy, "fit_s": fit_s, "cpu_s": cpu_s,
            "epochs": epochs, "steps": trainer.state.step}


def published(name: str) -> dict[str, float]:
    import aeon

    folder = os.path.join(os.path.dirname(aeon.__file__), "testing", "example_results_files", "classification",
                          "accuracy")
    out = {}
    for method in PUBLISHED:
        with open(os.path.join(folder, f"{method}_accuracy.csv")) as f:
            for row in csv.reader(f):
                if row and row[0] == name:
                    out[method] = float(row[1])  # resample 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=HEADLINE)
    parser.add_argument("--models", nargs="+", default=["lstm_fcn", "lstm"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--recipe", nargs="*", default=[], help="recipe overrides, e.g. val_fraction=0")
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    for item in args.recipe:
        key, value = item.split("=")
        overrides[key] = float(value) if "." in value or key == "val_fraction" else int(value)
    tasks = [(d, m, s, args.threads, overrides) for d in args.datasets for m in args.models for s in range(args.seeds)]
    results = []
    with ProcessPoolExecutor(max(args.jobs, 1)) as pool:
        mapper: Callable[..., Any] = pool.map if args.jobs > 1 else map
        for r in mapper(run_one, tasks):
            print(f"  {r['dataset']:<22} {r['model']:<32} seed {r['seed']}  acc {r['accuracy']:.4f}  "
                  f"fit {r['fit_s']:6.1f}s (cpu {r['cpu_s']:6.1f}s)  epochs {r['epochs']}  steps {r['steps']}",
                  flush=True)
            results.append(r)
    print()
    print(f"| data set | model | accuracy (mean ± sd of {args.seeds}) | fit s (mean) | fit CPU s (mean) | "
          + " | ".join(PUBLISHED) + " |")
    print("|" + "---|" * (5 + len(PUBLISHED)))
    for d in args.datasets:
        pub = published(d)
        for m in args.models:
            rs = [r for r in results if r["dataset"] == d and r["model"] == m]
            accs = [r["accuracy"] for r in rs]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells = " | ".join(f"{pub[p]:.3f}" if p in pub else "—" for p in PUBLISHED)
            print(f"| {d} | {m} | {statistics.mean(accs):.3f} ± {sd:.3f} | "
                  f"{statistics.mean(r['fit_s'] for r in rs):.1f} | {statistics.mean(r['cpu_s'] for r in rs):.1f} | "
                  f"{cells} |")


if __name__ == "__main__":
    main()
