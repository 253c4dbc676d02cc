"""Rocket's options side by side on UCR archive data sets: kernels, Hydra, the ridge penalties.

Fits :class:`seqclf.Rocket` with ``fit_closed_form`` (what the estimator does) on each data
set's official split for every variant given, one torch thread, and prints accuracy and
the fit's CPU seconds, then each variant's mean. A variant is ``num_kernels`` plus
options: ``5000``, ``5000+hydra``, ``10000``, and ``+rocket_alphas`` for ROCKET's own ten
penalties (1e-3 to 1e3) instead of the default seventeen (1e-3 to 1e5)::

    python benchmarks/rocket_variants.py --data-dir DIR --datasets GunPoint Adiac \\
        --variants 2000+rocket_alphas 5000+rocket_alphas 5000 10000 5000+hydra

Needs aeon (a benchmark dependency only) to read the archive's ``.tsv`` files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from seqclf import Rocket
from seqclf.ridge import DEFAULT_ALPHAS

ROCKET_ALPHAS = tuple(10.0 ** (-3 + 6 * i / 9) for i in range(10))


def load(data_dir: Path, name: str, part: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``x`` ``(N, T, C)`` float32 (NaN padding zeroed), ``lengths`` ``(N,)`` and the labels."""
    from aeon.datasets import load_from_tsv_file

    x, y = load_from_tsv_file(str(data_dir / name / f"{name}_{part}.tsv"))
    if isinstance(x, list):  # unequal lengths: a list of (C, T_i)
        lengths = torch.tensor([s.shape[-1] for s in x])
        padded = np.zeros((len(x), x[0].shape[0], int(lengths.max())))
        for i, s in enumerate(x):
            padded[i, :, : s.shape[-1]] = s
        x = padded
    else:
        valid = ~np.isnan(x).all(axis=1)  # (N, T)
        lengths = torch.from_numpy(valid.shape[1] - np.argmax(valid[:, ::-1], axis=1))
    tensor = torch.from_numpy(np.nan_to_num(x)).float().transpose(1, 2)  # (N, T, C)
    return tensor, lengths, np.asarray(y)


def run(data_dir: Path, name: str, variant: str, seed: int) -> tuple[float, float]:
    """Test accuracy and fit CPU seconds of one variant."""
    kernels, *options = variant.split("+")
    unknown = set(options) - {"hydra", "rocket_alphas"}
    if unknown:
        raise SystemExit(f"--variants entries are NUM_KERNELS[+hydra][+rocket_alphas]; got {variant!r}")
    x, lengths, y = load(data_dir, name, "TRAIN")
    x_test, lengths_test, y_test = load(data_dir, name, "TEST")
    classes, index = np.unique(y, return_inverse=True)
    torch.manual_seed(seed)
    started = time.process_time()
    model = Rocket(input_size=x.shape[-1], num_classes=len(classes), num_kernels=int(kernels),
                   hydra="hydra" in options)
    model.fit_closed_form(x, torch.from_numpy(index), lengths,
                          alphas=ROCKET_ALPHAS if "rocket_alphas" in options else DEFAULT_ALPHAS)
    fit_s = time.process_time() - started
    with torch.no_grad():
        predicted = model.eval()(x_test, lengths_test).argmax(dim=1).numpy()
    return float(np.mean(classes[predicted] == y_test)), fit_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a folder in the UCR archive's layout")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", default=["5000", "5000+hydra"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
    for name in args.datasets:
        for variant in args.variants:
            accuracy, fit_s = run(args.data_dir, name, variant, args.seed)
            results[variant].append((accuracy, fit_s))
            print(f"{name:<30} {variant:<22} acc {accuracy:.4f}  fit CPU {fit_s:7.1f}s", flush=True)
    print()
    print("| variant | mean accuracy | total fit CPU s | median fit CPU s |")
    print("|---|---|---|---|")
    for variant, rows in results.items():
        print(f"| {variant} | {np.mean([a for a, _ in rows]):.4f} | {sum(f for _, f in rows):.1f} | "
              f"{statistics.median(f for _, f in rows):.2f} |")


if __name__ == "__main__":
    main()
