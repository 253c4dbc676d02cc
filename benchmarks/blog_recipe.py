"""seqclf against the classic tutorial's pipeline and the compute floor, side by side.

In one process, on the same data, model, optimizer and batch size, it times:

- ``tutorial``: a faithful re-implementation of the tutorial's pipeline: torchvision
  dataset with a per-item ``ToTensor()``, ``DataLoader(batch_size, shuffle=True,
  num_workers=4)``, and every 10 steps a test on the first 200 test images (autograd on,
  as in the tutorial) that formats the tutorial's log line;
- ``seqclf+eval``: seqclf's ``Trainer`` with the same every-10-steps evaluation
  (``PeriodicEvaluation``, formatting the same line);
- ``seqclf``: the same ``Trainer`` without that evaluation;
- ``floor``: a bare loop stepping through one pre-loaded float tensor in the same
  shuffled batches as ``seqclf`` (so its weights end up equal to seqclf's).

The runs are interleaved and repeated, and each figure is printed as median [min-max].
Then (sections, all on by default): time-to-accuracy of the tutorial pipeline against
seqclf's tutorial and fast recipes; inference throughput of ``Trainer.predict`` and
``evaluate`` against a bare ``model(x)`` loop; whole-process wall time of
``examples/mnist_lstm.py --epochs 1`` against ``benchmarks/tutorial_script.py --epochs 1``;
and attempts to go past the floor.

    python benchmarks/blog_recipe.py --threads 1             # everything (minutes)
    python benchmarks/blog_recipe.py --threads 1 --quick     # throughput, inference, past-floor only
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import seqclf
from seqclf.batching import epoch_plan
from seqclf.callbacks import Callback, PeriodicEvaluation
from seqclf.data import TensorSequenceDataset
from seqclf.recipes import FAST, TUTORIAL, Recipe

ROOT = Path(__file__).resolve().parent.parent
SEED = 2019
EVAL_EVERY, EVAL_SIZE = 10, 200
NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass
class Data:
    """The benchmark's data, held both ways: torchvision datasets and seqclf tensors."""

    name: str
    root: Path
    train: TensorSequenceDataset  # uint8 images + batch transform
    test: TensorSequenceDataset
    test_x: Tensor  # (N, 28, 28) float, for the bare loops
    test_y: Tensor

    def torchvision(self, train: bool) -> Any:
        import torchvision

        cls = getattr(torchvision.datasets, NAMES[self.name])
        return cls(str(self.root), train=train, transform=torchvision.transforms.ToTensor(), download=False)


def load_data(data_dir: str, dataset: str) -> Data:
    loader = seqclf.datasets.mnist if dataset == "mnist" else seqclf.datasets.fashion_mnist
    train, test = loader(data_dir, train=True), loader(data_dir, train=False)
    root = Path(data_dir)
    nested = root / dataset
    root = nested if (nested / NAMES[dataset]).is_dir() else root
    test_x = seqclf.image_rows_as_sequence(test.x)  # (N, 28, 28)
    return Data(dataset, root, train, test, test_x, test.y)


def new_model() -> seqclf.SequenceClassifier:
    torch.manual_seed(SEED)  # every contender starts from the same weights
    return seqclf.SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)


def test_accuracy(model: nn.Module, data: Data) -> float:
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model(x).argmax(1) for x in torch.split(data.test_x, 1000)])
    model.train()
    return float((predicted == data.test_y).float().mean())


def tutorial_line(epoch: int, loss: float, accuracy: float) -> str:
    return f"Epoch: {epoch} train loss: {loss:.4f} test accuracy: {accuracy:.2f}"


# ---------------------------------------------------------------- contenders
def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds since it was made, not counting the stretches spent paused."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        self.paused_wall = self.paused_cpu = 0.0

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0 - self.paused_wall, cpu_seconds() - self.cpu0 - self.paused_cpu

    def pause(self, call: Callable[[], None]) -> None:
        wall, cpu = time.perf_counter(), cpu_seconds()
        call()
        self.paused_wall += time.perf_counter() - wall
        self.paused_cpu += cpu_seconds() - cpu


@dataclass
class Run:
    seconds: float  # wall time
    samples: int
    accuracy: float
    model: nn.Module
    cpu: float = float("nan")  # CPU seconds, all threads and worker processes

    @property
    def rate(self) -> float:
        return self.samples / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Samples per CPU-second: the work done, much less sensitive than wall time to other jobs."""
        return self.samples / self.cpu


def run_tutorial(data: Data, size: int, batch_size: int, epochs: int = 1, on_epoch: EpochHook | None = None) -> Run:
    """The tutorial's loop, as in benchmarks/tutorial_script.py, on the first ``size`` images."""
    train_data = data.torchvision(train=True)
    if size < len(train_data):
        train_data = torch.utils.data.Subset(train_data, range(size))
    test = data.torchvision(train=False)
    test_x = test.data.type(torch.FloatTensor)[:EVAL_SIZE] / 255.0
    test_y = test.targets.numpy()[:EVAL_SIZE]
    rnn = new_model()
    torch.manual_seed(SEED)
    loader = torch.utils.data.DataLoader(train_data, batch_size=batch_size, shuffle=True, num_workers=4)
    optimizer = torch.optim.Adam(rnn.parameters(), lr=TUTORIAL.lr)
    loss_func = nn.CrossEntropyLoss()
    sink = io.StringIO()
    clock = Clock()
    for epoch in range(epochs):
        for step, (b_x, b_y) in enumerate(loader):
            b_x = b_x.view(-1, 28, 28)
            output = rnn(b_x)
            loss = loss_func(output, b_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % EVAL_EVERY == 0:
                test_output = rnn(test_x)
                pred_y = torch.max(test_output, 1)[1].data.numpy()
                accuracy = float((pred_y == test_y).astype(int).sum()) / float(test_y.size)
                print(tutorial_line(epoch, float(loss.data.numpy()), accuracy), file=sink)
        if on_epoch is not None:
            clock.pause(partial(lambda hook, done: hook(done, *clock.elapsed(), rnn), on_epoch, epoch))
    seconds, cpu = clock.elapsed()
    return Run(seconds, len(train_data) * epochs, test_accuracy(rnn, data), rnn, cpu)


EpochHook = Callable[[int, float, float, nn.Module], None]
"""Called after each epoch with (epoch, wall seconds, CPU seconds, model); its own time is not counted."""


class _EpochHook(Callback):
    def __init__(self, hook: EpochHook, clock: Clock) -> None:
        self.hook, self.clock = hook, clock

    def on_epoch_end(self, trainer: seqclf.Trainer, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        self.clock.pause(lambda: self.hook(epoch, *self.clock.elapsed(), trainer.model))


def run_seqclf(
    data: Data, size: int, recipe: Recipe, *, evaluate: bool, on_epoch: EpochHook | None = None
) -> Run:
    """seqclf's Trainer following ``recipe`` on the first ``size`` images."""
    train = data.train.subset(slice(size))
    sink = io.StringIO()
    callbacks: list[Callback] = []
    if evaluate:
        report = lambda r: print(tutorial_line(int(r["epoch"]), r["train_loss"], r["accuracy"]), file=sink)  # noqa: E731
        callbacks.append(PeriodicEvaluation(data.test.subset(slice(EVAL_SIZE)), EVAL_EVERY, report=report))
    clock = Clock()
    hook = None if on_epoch is None else _EpochHook(on_epoch, clock)
    if hook is not None:
        callbacks.append(hook)
    model = new_model()
    trainer = recipe.trainer(model, size, seed=SEED, device="cpu", callbacks=callbacks)
    trainer.fit(train)
    seconds, cpu = clock.elapsed()
    return Run(seconds, size * recipe.epochs, test_accuracy(model, data), model, cpu)


def run_floor(
    data: Data,
    size: int,
    batch_size: int,
    *,
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
    context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> Run:
    """The bare loop: one float tensor, the same shuffled batches as seqclf's Trainer."""
    x = seqclf.image_rows_as_sequence(data.train.x[:size])  # (size, 28, 28), loaded before timing
    y = data.train.y[:size]
    model = new_model()
    opt = optimizer(model.parameters()) if optimizer else torch.optim.Adam(model.parameters(), lr=TUTORIAL.lr)
    loss_fn = nn.CrossEntropyLoss()
    call = forward or (lambda m, xb: m(xb))
    started, cpu = time.perf_counter(), cpu_seconds()
    with context():
        for indices in epoch_plan(size, batch_size, seed=SEED, epoch=0):
            xb, yb = x[indices], y[indices]
            opt.zero_grad()
            loss = loss_fn(call(model, xb).float(), yb)
            loss.backward()
            opt.step()
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return Run(seconds, size, test_accuracy(model, data), model, cpu)


# ------------------------------------------------------------------ helpers
def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    med = statistics.median(values)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def interleave(contenders: dict[str, Callable[[], Run]], repeats: int) -> dict[str, list[Run]]:
    """Run each contender ``repeats`` times, round robin, so machine noise shows up as spread."""
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    for repeat in range(repeats):
        for name, contender in contenders.items():
            run = contender()
            runs[name].append(run)
            line = f"  [{repeat + 1}/{repeats}] {name:<14} {run.rate:>9,.0f} samples/s  {run.cpu_rate:>9,.0f} per CPU-s"
            print(line, flush=True)
    return runs


def header(title: str) -> None:
    print(f"\n== {title}", flush=True)


# ----------------------------------------------------------------- sections
def throughput(data: Data, args: argparse.Namespace) -> None:
    size = args.steps * args.batch_size
    recipe = Recipe(batch_size=args.batch_size, epochs=1, lr=TUTORIAL.lr)
    header(f"training throughput: batch {args.batch_size}, {args.steps} steps ({size:,} images), x{args.repeats}")
    runs = interleave(
        {
            "tutorial": lambda: run_tutorial(data, size, args.batch_size),
            "seqclf+eval": lambda: run_seqclf(data, size, recipe, evaluate=True),
            "seqclf": lambda: run_seqclf(data, size, recipe, evaluate=False),
            "floor": lambda: run_floor(data, size, args.batch_size),
        },
        args.repeats,
    )
    print(f"  {'contender':<12} {'samples/s median [min-max]':>28} {'samples per CPU-s':>28}  test accuracy")
    for name, results in runs.items():
        wall, cpu = spread([r.rate for r in results]), spread([r.cpu_rate for r in results])
        print(f"  {name:<12} {wall:>28} {cpu:>28}  {results[0].accuracy:.4f}")
    for label, rate in (("wall", "rate"), ("CPU ", "cpu_rate")):
        by_rep = {name: [float(getattr(r, rate)) for r in results] for name, results in runs.items()}
        ratio_floor = [a / b for a, b in zip(by_rep["seqclf"], by_rep["floor"], strict=True)]
        ratio_tutorial = [a / b for a, b in zip(by_rep["seqclf+eval"], by_rep["tutorial"], strict=True)]
        print(f"  {label} seqclf / floor          {spread(ratio_floor, '{:.2f}')}  (target >= 0.95; per repeat)")
        print(f"  {label} seqclf+eval / tutorial  {spread(ratio_tutorial, '{:.2f}')}  (target >= 2.5; per repeat)")
    same = all(
        torch.equal(p, q)
        for p, q in zip(runs["seqclf"][0].model.parameters(), runs["floor"][0].model.parameters(), strict=True)
    )
    print(f"  seqclf and floor end with bitwise-equal weights: {same}")


def time_to_accuracy(data: Data, args: argparse.Namespace) -> None:
    size = len(data.train) if args.train_limit is None else args.train_limit
    header(f"time to accuracy: {size:,} training images, full test set ({len(data.test):,} images)")
    curves: dict[str, list[tuple[float, float, float]]] = {}

    def recorder(name: str) -> EpochHook:
        curves[name] = []

        def hook(epoch: int, seconds: float, cpu: float, model: nn.Module) -> None:
            accuracy = test_accuracy(model, data)
            curves[name].append((seconds, cpu, accuracy))
            print(f"  {name:<22} epoch {epoch}: {seconds:7.1f} s ({cpu:7.1f} CPU-s)  test accuracy {accuracy:.4f}")

        return hook

    tutorial = Recipe(batch_size=32, epochs=args.epochs, lr=TUTORIAL.lr)
    run_tutorial(data, size, tutorial.batch_size, tutorial.epochs, on_epoch=recorder("tutorial pipeline"))
    run_seqclf(data, size, tutorial, evaluate=True, on_epoch=recorder("seqclf tutorial recipe"))
    run_seqclf(data, size, FAST, evaluate=False, on_epoch=recorder("seqclf fast recipe"))
    reference_wall, reference_cpu, target = curves["tutorial pipeline"][-1]
    print(f"  target: the tutorial pipeline's accuracy after {args.epochs} epochs, {target:.4f}")
    for name, curve in curves.items():
        reached = next(((wall, cpu) for wall, cpu, accuracy in curve if accuracy >= target), None)
        if reached is None:
            print(f"  {name:<22} not reached (best {max(a for _, _, a in curve):.4f})")
        else:
            wall, cpu = reached
            print(
                f"  {name:<22} {wall:7.1f} s = {wall / reference_wall:.3f} of the tutorial pipeline's wall time; "
                f"{cpu:7.1f} CPU-s = {cpu / reference_cpu:.3f} of its CPU time"
            )
    print(f"  (fast recipe: {FAST}; target <= 0.2, aim 0.1)")


def inference(data: Data, args: argparse.Namespace) -> None:
    header(f"inference on the {len(data.test):,} test images, x{args.repeats}")
    model = new_model().eval()
    sizes = [256, 1024, 2048, 4096, len(data.test)]

    def bare(batch_size: int) -> Callable[[], Run]:
        def run() -> Run:
            started, cpu = time.perf_counter(), cpu_seconds()
            with torch.inference_mode():
                for x in torch.split(data.test_x, batch_size):
                    model(x)
            return Run(time.perf_counter() - started, len(data.test_x), float("nan"), model, cpu_seconds() - cpu)

        return run

    bare_runs = interleave({f"bare {b}": bare(b) for b in sizes}, args.repeats)
    best_name = max(bare_runs, key=lambda name: statistics.median(r.cpu_rate for r in bare_runs[name]))
    best = int(best_name.split()[1])
    trainer = seqclf.Trainer(model, device="cpu")
    trainer.eval_batch_size = best

    def timed(call: Callable[[], object]) -> Callable[[], Run]:
        def run() -> Run:
            started, cpu = time.perf_counter(), cpu_seconds()
            call()
            return Run(time.perf_counter() - started, len(data.test), float("nan"), model, cpu_seconds() - cpu)

        return run

    source = trainer.as_source(data.test)
    api_runs = interleave(
        {
            "bare best": bare(best),
            "predict": timed(lambda: trainer.predict(data.test)),
            "predict(src)": timed(lambda: trainer.predict(source)),
            "evaluate": timed(lambda: trainer.evaluate(data.test)),
        },
        args.repeats,
    )
    for name, results in {**bare_runs, **api_runs}.items():
        wall, cpu = spread([r.rate for r in results]), spread([r.cpu_rate for r in results])
        print(f"  {name:<14} {wall:>26} samples/s {cpu:>26} per CPU-s")
    base = api_runs["bare best"]
    for name in ("predict", "predict(src)", "evaluate"):
        ratios = [r.rate / b.rate for r, b in zip(api_runs[name], base, strict=True)]
        cpu_ratios = [r.cpu_rate / b.cpu_rate for r, b in zip(api_runs[name], base, strict=True)]
        print(
            f"  {name} / bare loop at batch {best}: {spread(ratios, '{:.2f}')} "
            f"(per CPU-s: {spread(cpu_ratios, '{:.2f}')})  (target >= 0.9)"
        )
    print(f"  Trainer.eval_batch_size is {seqclf.Trainer.eval_batch_size}")


def whole_process(data: Data, args: argparse.Namespace) -> None:
    # the commands exactly as a user types them: torch's default threads, whatever --threads says
    header(f"whole process, 1 epoch, x{args.process_repeats} (start-up included, torch's default threads)")
    python = sys.executable
    threads: list[str] = []
    commands = {
        "tutorial_script.py": [
            *threads, python, str(ROOT / "benchmarks/tutorial_script.py"),
            "--data-dir", str(data.root), "--dataset", data.name, "--epochs", "1",
        ],
        "mnist_lstm.py": [
            *threads, python, str(ROOT / "examples/mnist_lstm.py"),
            "--data-dir", str(data.root), "--dataset", data.name, "--epochs", "1", "--no-download",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for repeat in range(args.process_repeats):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            times[name].append(time.perf_counter() - started)
            print(f"  [{repeat + 1}/{args.process_repeats}] {name:<20} {times[name][-1]:6.1f} s", flush=True)
    for name, values in times.items():
        print(f"  {name:<20} {spread(values, '{:.1f}')} s")
    ratios = [a / b for a, b in zip(times["mnist_lstm.py"], times["tutorial_script.py"], strict=True)]
    print(f"  mnist_lstm.py / tutorial_script.py: {spread(ratios, '{:.2f}')}  (target <= 0.5)")


def past_the_floor(data: Data, args: argparse.Namespace) -> None:
    header(f"past the floor: variants of the bare loop, {args.steps} steps, x{args.repeats}")

    for batch_size in sorted({args.batch_size, 256}):
        size = args.steps * batch_size if batch_size == args.batch_size else args.steps * batch_size // 4
        variants = floor_variants(data, size, batch_size)
        print(f"  batch {batch_size}, {size:,} images:")
        try:  # oneDNN has no bf16 LSTM without AVX-512 bf16 / AMX: probe one step first
            run_floor(data, batch_size, batch_size, context=bf16_autocast)
        except RuntimeError as error:
            print(f"  {'bf16 autocast':<14} fails: {str(error).splitlines()[0][:110]}")
            del variants["bf16 autocast"]
        runs = interleave(variants, args.repeats)
        base = runs["floor"]
        for name, results in runs.items():
            ratios = [r.rate / b.rate for r, b in zip(results, base, strict=True)]
            cpu_ratios = [r.cpu_rate / b.cpu_rate for r, b in zip(results, base, strict=True)]
            print(
                f"  {name:<14} {spread([r.rate for r in results]):>24} samples/s  "
                f"x{spread(ratios, '{:.2f}')} of floor (per CPU-s: x{spread(cpu_ratios, '{:.2f}')})  "
                f"acc {results[0].accuracy:.4f}"
            )


def bf16_autocast() -> AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def floor_variants(data: Data, size: int, batch_size: int) -> dict[str, Callable[[], Run]]:
    def no_onednn() -> AbstractContextManager[Any]:
        return torch.backends.mkldnn.flags(enabled=False)

    def fused(params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=TUTORIAL.lr, fused=True)

    return {
        "floor": lambda: run_floor(data, size, batch_size),
        "fused Adam": lambda: run_floor(data, size, batch_size, optimizer=fused),
        "no oneDNN": lambda: run_floor(data, size, batch_size, context=no_onednn),
        "cell loop": lambda: run_floor(data, size, batch_size, forward=cell_loop),
        "bf16 autocast": lambda: run_floor(data, size, batch_size, context=bf16_autocast),
    }


def cell_loop(model: nn.Module, x: Tensor) -> Tensor:
    """The LSTM written out: the input projection of all steps in one matrix product, then a cell loop."""
    assert isinstance(model, seqclf.SequenceClassifier) and isinstance(model.rnn, nn.LSTM)
    rnn, head = model.rnn, model.head
    batch, steps, _ = x.shape
    hidden = rnn.hidden_size
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    w_ih, w_hh, b_ih, b_hh = (getattr(rnn, name) for name in names)
    gates_x = torch.addmm(b_ih + b_hh, x.reshape(batch * steps, -1), w_ih.t())
    gates_x = gates_x.view(batch, steps, 4 * hidden)  # (B, T, 4H)
    h = x.new_zeros(batch, hidden)
    c = x.new_zeros(batch, hidden)
    for t in range(steps):
        i, f, g, o = torch.addmm(gates_x[:, t], h, w_hh.t()).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    out: Tensor = head(h)
    return out


SECTIONS: dict[str, Callable[[Data, argparse.Namespace], None]] = {
    "throughput": throughput,
    "time-to-accuracy": time_to_accuracy,
    "inference": inference,
    "process": whole_process,
    "past-floor": past_the_floor,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data"))
    parser.add_argument("--dataset", choices=sorted(NAMES), default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=200, help="training steps per throughput run")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the tutorial recipe (time to accuracy)")
    parser.add_argument("--train-limit", type=int, default=None, help="time to accuracy on the first N images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each timing")
    parser.add_argument("--process-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {list(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="100 steps, 3 repeats, no time-to-accuracy/process")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 100, 3
        args.sections = "throughput,inference,past-floor"
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections must name sections from {list(SECTIONS)}; got {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_data(args.data_dir, args.dataset)
    print(
        f"seqclf {seqclf.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.dataset}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    for name in args.sections.split(","):
        SECTIONS[name](data, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
