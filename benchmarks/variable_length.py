"""Variable-length speed: dense padded path against packing, bucketing, ONNX Runtime, streaming.

Prints side-by-side figures from one run (one torch thread; medians of repeated runs,
the two sides of each comparison interleaved):

1. one forward+backward of a padded batch, dense path against the former
   ``pack_padded_sequence`` path (kept here as a reference implementation);
2. training throughput (sequences/s through ``Trainer.fit``) on variable-length data:
   dense against packed, variable lengths against equal lengths, and with bucketing;
3. ``predict``-style inference through ONNX Runtime against eager PyTorch;
4. streaming latency of ``model.step`` per time step at batch 1;
5. ONNX export time: ``to_onnx`` (TorchScript-based exporter) against torch's
   ``dynamo=True`` exporter, for one model.

    python benchmarks/variable_length.py
    python benchmarks/variable_length.py --sections export streaming
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqclf
from seqclf import SequenceClassifier
from seqclf.batching import LengthBucketing


def packed_features(self: SequenceClassifier, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The former packed path of ``SequenceClassifier.forward_features`` (reference only)."""
    if lengths is None or bool((lengths == x.shape[1]).all()):
        out, _ = self.rnn(x)
        return self._readout_full(out)
    lengths_cpu = lengths.to("cpu", torch.int64)
    packed_out, state = self.rnn(pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False))
    if self.config.readout == "last":
        h_n = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.config.bidirectional else 1
        return h_n[-directions:].transpose(0, 1).reshape(x.shape[0], self.num_features)
    out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
    valid = (torch.arange(x.shape[1]) < lengths_cpu[:, None]).unsqueeze(-1)
    if self.config.readout == "mean":
        return out.masked_fill(~valid, 0.0).sum(dim=1) / lengths_cpu[:, None].to(out.dtype)
    return out.masked_fill(~valid, float("-inf")).amax(dim=1)


def packed(model: SequenceClassifier) -> SequenceClassifier:
    model.forward_features = types.MethodType(packed_features, model)  # type: ignore[method-assign]
    return model


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, the functions interleaved so that load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():
        function()  # warm up
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def variable_batch(batch: int, time_steps: int, features: int, equal: bool = False) -> tuple[Tensor, Tensor]:
    lengths = (
        torch.full((batch,), time_steps) if equal else torch.randint(max(1, time_steps // 10), time_steps + 1, (batch,))
    )
    lengths[0] = time_steps
    return torch.randn(batch, time_steps, features), lengths


def forward_backward() -> None:
    print("1. forward+backward of one padded batch (lengths uniform in [T/10, T]), ms")
    print(f"{'cell, bidirectional, (B, T, F, H)':<38}{'packed':>9}{'dense':>9}{'speedup':>9}")
    cases = [
        ("lstm", False, 16, 361, 1, 64),
        ("lstm", False, 32, 100, 6, 64),
        ("lstm", False, 32, 28, 28, 64),
        ("gru", False, 16, 361, 1, 64),
        ("lstm", True, 16, 361, 1, 64),
        ("lstm", True, 32, 28, 28, 64),
    ]
    for cell, bidirectional, batch, time_steps, features, hidden in cases:
        torch.manual_seed(0)
        dense = SequenceClassifier(features, hidden, 10, cell=cell, bidirectional=bidirectional)  # type: ignore[arg-type]
        reference = packed(SequenceClassifier(features, hidden, 10, cell=cell, bidirectional=bidirectional))  # type: ignore[arg-type]
        x, lengths = variable_batch(batch, time_steps, features)

        def step(model: SequenceClassifier, x: Tensor = x, lengths: Tensor = lengths) -> Callable[[], None]:
            return lambda: model(x, lengths).sum().backward()

        seconds = median_seconds({"packed": step(reference), "dense": step(dense)}, repeats=15)
        name = f"{cell}, {bidirectional}, ({batch}, {time_steps}, {features}, {hidden})"
        print(
            f"{name:<38}{seconds['packed'] * 1e3:>9.1f}{seconds['dense'] * 1e3:>9.1f}"
            f"{seconds['packed'] / seconds['dense']:>8.1f}x"
        )


def training_throughput() -> None:
    print("\n2. training throughput, Trainer.fit, LSTM hidden 64, 1 feature, batch 16, 512 sequences, sequences/s")
    size, time_steps = 512, 361
    torch.manual_seed(0)
    variable = [torch.randn(int(n), 1) for n in torch.randint(time_steps // 10, time_steps + 1, (size,))]
    variable[0] = torch.randn(time_steps, 1)
    equal = torch.randn(size, time_steps, 1)
    y = torch.randint(0, 10, (size,))

    def fit(data: object, *, reference: bool = False, batching: LengthBucketing | None = None) -> Callable[[], None]:
        def run() -> None:
            model = SequenceClassifier(1, 64, 10)
            trainer = seqclf.Trainer(
                packed(model) if reference else model,
                epochs=1,
                batch_size=16,
                seed=0,
                progress=False,
                batching=batching,
            )
            trainer.fit(data)

        return run

    seconds = median_seconds(
        {
            "packed, variable": fit((variable, y), reference=True),
            "dense, variable": fit((variable, y)),
            "dense, variable, bucketed": fit((variable, y), batching=LengthBucketing()),
            "dense, equal length T": fit((equal, y)),
        },
        repeats=3,
    )
    rates = {name: size / value for name, value in seconds.items()}
    for name, rate in rates.items():
        print(f"   {name:<30}{rate:>9.0f}")
    equal = rates["dense, equal length T"]
    print(f"   dense / packed (variable lengths):   {rates['dense, variable'] / rates['packed, variable']:.2f}x")
    print(f"   variable / equal length (dense):              {rates['dense, variable'] / equal:.2f}x")
    print(
        f"   variable bucketed / equal length (dense):     "
        f"{rates['dense, variable, bucketed'] / equal:.2f}x"
    )


def onnx_inference() -> None:
    print("\n3. inference on 256 padded sequences (T up to 361, 1 feature, LSTM hidden 64), ms")
    try:
        import onnxruntime
    except ImportError:
        print("   skipped: onnxruntime is not installed (pip install 'seqclf[onnx]')")
        return
    from seqclf.export import to_onnx

    model = SequenceClassifier(1, 64, 10).eval()
    x, lengths = variable_batch(256, 361, 1)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.onnx"
        to_onnx(model, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy(), "lengths": lengths.numpy()}

        def eager() -> None:
            with torch.inference_mode():
                model(x, lengths)

        seconds = median_seconds({"eager": eager, "onnxruntime": lambda: session.run(["logits"], feed)}, repeats=10)
    print(
        f"   eager PyTorch {seconds['eager'] * 1e3:.1f}, ONNX Runtime {seconds['onnxruntime'] * 1e3:.1f}, "
        f"speedup {seconds['eager'] / seconds['onnxruntime']:.2f}x"
    )


def streaming_latency() -> None:
    print("\n4. streaming: model.step at batch 1, microseconds per step (1 feature, hidden 64)")
    for cell, readout, layers in [("lstm", "last", 1), ("lstm", "mean", 2), ("gru", "max", 1)]:
        model = SequenceClassifier(1, 64, 10, num_layers=layers, cell=cell, readout=readout).eval()  # type: ignore[arg-type]
        steps = torch.randn(1000, 1, 1)

        def stream(model: SequenceClassifier = model, steps: Tensor = steps) -> None:
            with torch.inference_mode():
                state = model.initial_state(1)
                for x_t in steps:
                    _, state = model.step(x_t, state)

        seconds = median_seconds({"stream": stream}, repeats=5)["stream"]
        print(f"   {cell}, readout={readout}, layers={layers}: {seconds / len(steps) * 1e6:.0f} us")


def export_time() -> None:
    print("\n5. ONNX export of one model (LSTM, 2 layers, bidirectional, hidden 64), seconds")
    import warnings

    from seqclf.export import to_onnx

    model = SequenceClassifier(1, 64, 10, num_layers=2, bidirectional=True).eval()
    x, lengths = torch.randn(2, 8, 1), torch.full((2,), 8)
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        to_onnx(model, Path(directory) / "legacy.onnx")
        legacy = time.perf_counter() - started
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch, steps = torch.export.Dim("batch"), torch.export.Dim("time")
            try:
                torch.onnx.export(model, (x, lengths), str(Path(directory) / "dynamo.onnx"), dynamo=True,
                                  input_names=["x", "lengths"], output_names=["logits"],
                                  dynamic_shapes={"x": {0: batch, 1: steps}, "lengths": {0: batch}})
                outcome = "exported"
            except Exception as error:  # report, do not stop the benchmark
                outcome = f"failed: {type(error).__name__}"
        dynamo = time.perf_counter() - started
    print(f"   to_onnx (dynamo=False) {legacy:.2f}, torch.onnx.export(dynamo=True) {dynamo:.2f} ({outcome}), "
          f"ratio {dynamo / legacy:.0f}x")


SECTIONS = {"packed": forward_backward, "training": training_throughput, "onnx": onnx_inference,
            "streaming": streaming_latency, "export": export_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread")
    for section in args.sections:
        SECTIONS[section]()


if __name__ == "__main__":
    main()
