"""Check on a CUDA GPU what the CPU test suite cannot, in one run sized for about 5 minutes.

    python benchmarks/gpu_check.py                       # on CUDA
    python benchmarks/gpu_check.py --json gpu.json       # also write the results as JSON
    python benchmarks/gpu_check.py --smoke               # every check on the CPU, small (seconds)

Without CUDA the script runs the smoke mode and says so. Each check prints one line,
``PASS``, ``FAIL`` or ``TIME`` (a measurement), with its figures; the exit status is 1 when
a check fails. The checks:

1. ``padding``: a padded batch gives the logits of each sequence run alone (NaN in the
   padding), for LSTM/GRU, one and two directions, every readout, and LSTM-FCN; with
   cuDNN's TF32 off (float32 arithmetic), and the figure under torch's defaults beside it.
2. ``resume``: a run resumed from a mid-epoch checkpoint ends with the weights of the run
   that never stopped, bit for bit (deterministic algorithms on).
3. ``bidirectional``: the padded bidirectional path does not make cuDNN copy the weights
   at every call (torch warns "RNN module weights are not part of single contiguous chunk
   of memory" when it does); its time per forward and backward beside the unpadded path.
4. ``pickle``: an estimator fitted and pickled on the device loads and predicts in a
   process that sees no GPU.
5. ``generators``: ``SequenceClassifierEstimator.fit(random_state=...)`` leaves the
   caller's CPU and CUDA random generators as they were.
6. ``tutorial``: the wall time of the MNIST tutorial's recipe (50 epochs of 60,000 images
   in batches of 32), on Fashion-MNIST from ``SEQCLF_DATA_DIR`` when it is there (the same
   shapes) or else on random images of the same shape. When the 50 epochs would overrun
   ``--tutorial-budget-s``, it stops after the epochs that fit and reports the projection.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# deterministic cuBLAS (the resume check) needs this before CUDA starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np
import torch

import seqclf
from seqclf import LSTMFCN, SequenceClassifier, Trainer
from seqclf.callbacks import Callback, Checkpoint

REPACK_WARNING = "not part of single contiguous chunk of memory"


@dataclasses.dataclass
class Result:
    name: str
    status: str  # "PASS", "FAIL" or "TIME"
    detail: str
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How large each check runs: full on CUDA, small for the smoke mode."""

    batch: int
    time_steps: int
    hidden: int
    repeats: int
    estimator_steps: int
    tutorial_epochs: int
    tutorial_images: int | None  # None: the whole training set


FULL = Sizes(batch=64, time_steps=40, hidden=64, repeats=20, estimator_steps=200, tutorial_epochs=50,
             tutorial_images=None)
SMOKE = Sizes(batch=8, time_steps=12, hidden=8, repeats=3, estimator_steps=10, tutorial_epochs=1,
              tutorial_images=256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="run every check on the CPU at small sizes")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this new file")
    parser.add_argument("--tutorial-budget-s", type=float, default=150.0,
                        help="seconds the tutorial check may train before it projects the rest (default: 150)")
    parser.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS), help="the checks to run")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} already exists; name a new file (results never overwrite a file)")
    smoke = args.smoke or not torch.cuda.is_available()
    if not args.smoke and smoke:
        print("no CUDA device: running the smoke mode on the CPU")
    device = torch.device("cpu" if smoke else "cuda")
    sizes = SMOKE if smoke else FULL
    environment = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "seqclf": seqclf.__version__,
        "mode": "smoke" if smoke else "full",
    }
    print(" ".join(f"{key}={value}" for key, value in environment.items()))
    results = []
    start = time.perf_counter()
    for name in args.checks:
        check_start = time.perf_counter()
        try:
            result = CHECKS[name](device, sizes, args)
        except Exception as error:  # one broken check must not hide the others' results
            result = Result(name, "FAIL", f"raised {type(error).__name__}: {error}")
        result.figures["seconds"] = round(time.perf_counter() - check_start, 2)
        print(f"{result.status} {result.name}: {result.detail} ({result.figures['seconds']:.1f} s)", flush=True)
        results.append(result)
    total = time.perf_counter() - start
    failed = [result.name for result in results if result.status == "FAIL"]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed or measured in {total:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if args.json is not None:
        with open(args.json, "x") as file:  # "x": never overwrite
            json.dump({"environment": environment, "seconds": round(total, 2),
                       "results": [dataclasses.asdict(result) for result in results]}, file, indent=2)
    return 1 if failed else 0


# ------------------------------------------------------------------ the checks
def check_padding(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> Result:
    configs: dict[str, Callable[[], torch.nn.Module]] = {}
    for cell in ("lstm", "gru"):
        for bidirectional in (False, True):
            for readout in ("last", "mean", "max"):
                name = f"{cell}-{'bi' if bidirectional else 'uni'}-{readout}"
                configs[name] = lambda c=cell, b=bidirectional, r=readout: SequenceClassifier(
                    3, sizes.hidden, 4, cell=c, bidirectional=b, readout=r, num_layers=2)
    configs["lstm_fcn"] = lambda: LSTMFCN(3, 4, hidden_size=sizes.hidden, filters=(8, 16, 8))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sizes.batch, sizes.time_steps, 3, generator=generator)
    lengths = torch.randint(1, sizes.time_steps + 1, (sizes.batch,), generator=generator)
    lengths[0] = sizes.time_steps
    padding = torch.arange(sizes.time_steps)[None, :] >= lengths[:, None]  # (B, T)
    x = x.masked_fill(padding[..., None], float("nan")).to(device)  # NaN padding: nothing may read it
    lengths = lengths.to(device)
    worst, worst_default, worst_name = 0.0, 0.0, ""
    for name, build in configs.items():
        torch.manual_seed(0)
        model = build().to(device).eval()
        with torch.no_grad():
            with _cudnn_tf32(False):
                difference = _padding_difference(model, x, lengths)
            default = _padding_difference(model, x, lengths)
        if difference > worst:
            worst, worst_name = difference, name
        worst_default = max(worst_default, default)
    tolerance = 1e-5
    status = "PASS" if worst <= tolerance else "FAIL"
    detail = (f"{len(configs)} models, batch {sizes.batch} of up to {sizes.time_steps} steps: max |padded - alone| "
              f"{worst:.2e} (tolerance {tolerance:.0e}; worst {worst_name or '-'}), {worst_default:.2e} with torch's "
              "default TF32 setting for cuDNN")
    return Result("padding", status, detail, {"max_difference": worst, "max_difference_default_tf32": worst_default})


def _padding_difference(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> float:
    padded = model(x, lengths)  # (B, C)
    alone = torch.cat([model(x[i : i + 1, : int(n)]) for i, n in enumerate(lengths.tolist())])  # (B, C)
    if not bool(torch.isfinite(padded).all()):
        return math.inf
    return float((padded - alone).abs().max())


def check_resume(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> Result:
    x, y = _task(96, sizes.time_steps)
    lengths = torch.randint(2, sizes.time_steps + 1, (96,), generator=torch.Generator().manual_seed(1))
    data = (x, lengths, y)
    with _deterministic(), tempfile.TemporaryDirectory() as folder:
        straight = _resume_trainer(device, sizes)
        straight.fit(data)
        stopped = _resume_trainer(device, sizes, [Checkpoint(Path(folder) / "run", every_n_steps=7,
                                                             every_n_epochs=None, keep_last=None)])
        stopped.fit(data)
        resumed = _resume_trainer(device, sizes)
        resumed.fit(data, resume_from=Path(folder) / "run" / "step-00000007.pt")  # mid-epoch 1 of 2
    differences = [
        float((a.double() - b.double()).abs().max())
        for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True)
    ]
    bitwise = all(torch.equal(a, b) for a, b in zip(straight.model.state_dict().values(),
                                                    resumed.model.state_dict().values(), strict=True))
    detail = (f"resumed at step 7 of {straight.state.step}: weights "
              + ("bitwise equal" if bitwise else f"differ by up to {max(differences):.2e}")
              + " to the run that never stopped")
    figures = {"bitwise": bitwise, "max_difference": max(differences)}
    return Result("resume", "PASS" if bitwise else "FAIL", detail, figures)


def _resume_trainer(device: torch.device, sizes: Sizes, callbacks: list[Callback] | None = None) -> Trainer:
    seqclf.seed_everything(0)
    model = SequenceClassifier(3, sizes.hidden, 2, bidirectional=True, dropout=0.1, num_layers=2)
    return Trainer(model, epochs=2, batch_size=16, seed=0, device=device, callbacks=callbacks or [], progress=False)


def check_bidirectional(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> Result:
    seqclf.seed_everything(0)
    model = SequenceClassifier(28, sizes.hidden * 2, 10, bidirectional=True).to(device)
    batch = sizes.batch * 4
    x = torch.randn(batch, 28, 28, device=device)
    lengths = torch.randint(1, 29, (batch,), device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        padded = _seconds_per_call(lambda: model(x, lengths).sum().backward(), device, sizes.repeats)
        dense = _seconds_per_call(lambda: model(x).sum().backward(), device, sizes.repeats)
    repacks = sum(REPACK_WARNING in str(warning.message) for warning in caught)
    detail = (f"{repacks} weight re-pack warnings in {2 * (sizes.repeats + 2)} calls; forward+backward of "
              f"{batch} x 28 x 28: padded {padded * 1e3:.2f} ms, unpadded {dense * 1e3:.2f} ms "
              f"({padded / dense:.2f}x)")
    if device.type == "cpu":
        detail += " (the CPU has no cuDNN: the warning is a CUDA check)"
    return Result("bidirectional", "PASS" if repacks == 0 else "FAIL", detail,
                  {"repack_warnings": repacks, "padded_ms": padded * 1e3, "dense_ms": dense * 1e3})


def _seconds_per_call(call: Callable[[], None], device: torch.device, repeats: int) -> float:
    for _ in range(2):  # warm-up: kernel selection, allocator
        call()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    _synchronize(device)
    return (time.perf_counter() - start) / repeats


def check_pickle(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> Result:
    from seqclf.sklearn import SequenceClassifierEstimator

    x, y = _task(48, sizes.time_steps)
    labels = np.where(y.numpy() == 1, "up", "down")
    clf = SequenceClassifierEstimator(model="lstm", layout="ntc", hidden_size=sizes.hidden,
                                      min_steps=sizes.estimator_steps, random_state=0,
                                      device=str(device)).fit(x.numpy(), labels)
    expected = clf.predict_proba(x.numpy())
    with tempfile.TemporaryDirectory() as folder:
        blob, inputs, output = Path(folder) / "clf.pkl", Path(folder) / "x.npy", Path(folder) / "proba.npy"
        blob.write_bytes(pickle.dumps(clf))
        np.save(inputs, x.numpy())
        code = ("import pickle, sys, numpy as np; clf = pickle.loads(open(sys.argv[1], 'rb').read()); "
                "np.save(sys.argv[3], clf.predict_proba(np.load(sys.argv[2])))")
        environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a process that sees no GPU
        run = subprocess.run([sys.executable, "-c", code, str(blob), str(inputs), str(output)],
                             capture_output=True, text=True, env=environment, timeout=300, check=False)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
            return Result("pickle", "FAIL", f"pickled on {device}, loading without a GPU failed: {last}")
        loaded = np.load(output)
    difference = float(np.abs(loaded - expected).max())
    status = "PASS" if difference <= 1e-5 else "FAIL"
    return Result("pickle", status, f"pickled on {device}, predicted without a GPU: max |proba difference| "
                  f"{difference:.2e} (tolerance 1e-05)", {"max_difference": difference})


def check_generators(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> Result:
    from seqclf.sklearn import SequenceClassifierEstimator

    x, y = _task(32, sizes.time_steps)
    torch.manual_seed(123)
    cpu_before = torch.get_rng_state()
    cuda_before = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    SequenceClassifierEstimator(model="lstm", layout="ntc", hidden_size=sizes.hidden, min_steps=sizes.estimator_steps,
                                random_state=7, device=str(device)).fit(x.numpy(), y.numpy())
    cpu_kept = torch.equal(cpu_before, torch.get_rng_state())
    cuda_after = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    cuda_kept = all(torch.equal(a, b) for a, b in zip(cuda_before, cuda_after, strict=True))
    detail = f"fit on {device}: the caller's CPU generator {'kept' if cpu_kept else 'CHANGED'}" + (
        f", its CUDA generators {'kept' if cuda_kept else 'CHANGED'}" if device.type == "cuda" else "")
    return Result("generators", "PASS" if cpu_kept and cuda_kept else "FAIL", detail,
                  {"cpu_kept": cpu_kept, "cuda_kept": cuda_kept if device.type == "cuda" else None})


def check_tutorial(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> Result:
    from seqclf.recipes import TUTORIAL

    train, source = _tutorial_data(sizes)
    seqclf.seed_everything(0)
    model = SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    epochs = sizes.tutorial_epochs
    budget = _Budget(args.tutorial_budget_s, epochs)
    recipe = dataclasses.replace(TUTORIAL, epochs=epochs)
    trainer = recipe.trainer(model, len(train), seed=0, device=device, callbacks=[budget], progress=False)
    start = time.perf_counter()
    history = trainer.fit(train)
    _synchronize(device)
    seconds = time.perf_counter() - start
    done = len(history)
    per_epoch = seconds / done
    figures = {"epochs_run": done, "seconds": round(seconds, 1), "seconds_per_epoch": round(per_epoch, 2),
               "train_accuracy": history.last("train_accuracy"), "data": source}
    if done == epochs:
        detail = f"{epochs} epoch(s) of {len(train)} {source} images in {seconds:.1f} s ({per_epoch:.2f} s an epoch)"
    else:
        figures["projected_seconds"] = round(per_epoch * epochs, 1)
        detail = (f"{done} of {epochs} epochs in {seconds:.1f} s ({per_epoch:.2f} s an epoch, {source} images); "
                  f"all {epochs} projected at {per_epoch * epochs:.0f} s")
    return Result("tutorial", "TIME", detail, figures)


class _Budget(Callback):
    """Stop after the epoch at which the next one would overrun ``seconds``."""

    def __init__(self, seconds: float, epochs: int) -> None:
        self.seconds, self.epochs, self.start = seconds, epochs, 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, record: Any) -> None:
        elapsed = time.perf_counter() - self.start
        done = trainer.state.epoch + 1
        if done < self.epochs and elapsed + elapsed / done > self.seconds:
            trainer.state.should_stop = True


def _tutorial_data(sizes: Sizes) -> tuple[seqclf.TensorSequenceDataset, str]:
    from seqclf.datasets import DatasetNotFoundError, fashion_mnist

    folder = os.environ.get("SEQCLF_DATA_DIR")
    train: seqclf.TensorSequenceDataset | None = None
    source = "random"
    if folder:
        try:
            train, source = fashion_mnist(folder, train=True), "Fashion-MNIST"
        except DatasetNotFoundError:
            train = None
    if train is None:
        generator = torch.Generator().manual_seed(0)
        n = sizes.tutorial_images or 60_000  # MNIST's training set
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (n,), generator=generator)
        train = seqclf.TensorSequenceDataset(images, labels, transform=seqclf.image_rows_as_sequence)
    if sizes.tutorial_images is not None:
        train = train.subset(slice(sizes.tutorial_images))
    return train, source


# ------------------------------------------------------------------ helpers
def _task(n: int, time_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable task of ``n`` sequences ``(n, time_steps, 3)``: the class is feature 0's sign."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2  # (n,)
    x = torch.randn(n, time_steps, 3, generator=generator)
    x[:, :, 0] += torch.where(y == 1, 1.0, -1.0)[:, None]
    return x, y


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _cudnn_tf32(enabled: bool) -> Iterator[None]:
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


@contextmanager
def _deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


CHECKS: dict[str, Callable[[torch.device, Sizes, argparse.Namespace], Result]] = {
    "padding": check_padding,
    "resume": check_resume,
    "bidirectional": check_bidirectional,
    "pickle": check_pickle,
    "generators": check_generators,
    "tutorial": check_tutorial,
}

if __name__ == "__main__":
    sys.exit(main())
