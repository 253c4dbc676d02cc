"""A loader handed another kind of seqclf file names that kind and the call that reads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seqclf import LSTMFCN, CheckpointError, SequenceClassifier, Trainer
from seqclf._formats import container_of, describe
from seqclf.checkpoint import load_checkpoint, save_checkpoint
from seqclf.serialization import load_safetensors, save_safetensors

from .conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("one_thread")


def _estimator_class() -> Any:
    pytest.importorskip("sklearn", reason="scikit-learn is needed for the estimator's files")
    from seqclf.sklearn import SequenceClassifierEstimator

    return SequenceClassifierEstimator


# each kind of file: how to write it, and what a refusal must name (its kind, and the call that reads it)
FILES: dict[str, tuple[str, str]] = {
    "checkpoint": ("a seqclf training checkpoint of a SequenceClassifier", "SequenceClassifier.from_checkpoint"),
    "model": ("a seqclf model file of a SequenceClassifier", "SequenceClassifier.load"),
    "lstm_fcn_model": ("a seqclf model file of a LSTMFCN", "LSTMFCN.load"),
    "estimator": ("a seqclf estimator file", "SequenceClassifierEstimator.load"),
    "estimator_0_1": ("a seqclf estimator file", "SequenceClassifierEstimator.load"),
    "safetensors": ("a safetensors file not written by seqclf", "load_safetensors"),
    "state_dict": ("not a seqclf", "model.load_state_dict(torch.load(path, weights_only=True))"),
    "onnx": ("an ONNX model", "onnxruntime.InferenceSession"),
}

LOADERS: dict[str, tuple[Callable[[Path], object], set[str]]] = {
    # loader: (the call, the kinds of file it reads)
    "SequenceClassifier.load": (SequenceClassifier.load, {"model"}),
    "LSTMFCN.load": (LSTMFCN.load, {"lstm_fcn_model"}),
    "SequenceClassifier.from_checkpoint": (SequenceClassifier.from_checkpoint, {"checkpoint"}),
    "load_checkpoint": (load_checkpoint, {"checkpoint"}),
    "SequenceClassifierEstimator.load": (lambda path: _estimator_class().load(path), {"estimator", "estimator_0_1"}),
    "load_safetensors": (load_safetensors, {"model", "lstm_fcn_model", "estimator", "safetensors"}),
}


def _write(kind: str, path: Path) -> Path:
    model = SequenceClassifier(3, 4, 2)
    if kind == "checkpoint":
        save_checkpoint(Trainer(model, device="cpu", progress=False).state_dict(), path)
    elif kind == "model":
        model.save(path)
    elif kind == "lstm_fcn_model":
        LSTMFCN(3, 2, hidden_size=4, filters=(4, 4, 4)).save(path)
    elif kind == "estimator":
        x = np.random.default_rng(0).normal(size=(8, 5, 3))
        y = np.array(["a", "b"] * 4)
        estimator = _estimator_class()(layout="ntc", model="lstm", hidden_size=4, min_steps=2, random_state=0)
        estimator.set_params(device="cpu").fit(x, y).save(path)
    elif kind == "estimator_0_1":
        path.write_bytes((FIXTURES / "estimator_lstm.pt").read_bytes())
    elif kind == "safetensors":
        save_safetensors({"weight": torch.ones(2)}, path)
    elif kind == "state_dict":
        torch.save(model.state_dict(), path)
    else:
        export = pytest.importorskip("seqclf.export", reason="ONNX export needs the onnx package")
        pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
        export.to_onnx(model, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    directory = tmp_path_factory.mktemp("kinds")
    written: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in written:
            written[kind] = _write(kind, directory / f"{kind}.bin")  # the name says nothing: the content does
        return written[kind]

    return get


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_loader_names_the_kind_of_file_it_was_given_and_the_call_that_reads_it(
    files: Callable[[str], Path], kind: str, loader: str
) -> None:
    load, reads = LOADERS[loader]
    path = files(kind)
    if kind in reads:
        load(path)  # the right loader reads it
        return
    what, call = FILES[kind]
    with pytest.raises(CheckpointError) as refused:  # SerializationError is a CheckpointError
        load(path)
    message = str(refused.value)
    assert call in message, message
    assert what in message or kind in ("model", "lstm_fcn_model", "checkpoint"), message  # or "holds a LSTMFCN"
    assert "weights_only=False" not in message


def test_torch_advice_to_load_unsafely_is_never_passed_on(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x02" + b"\xff" * 40)  # a pickle that torch's safe loader cannot read
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert "weights_only" not in str(refused.value)


def test_containers_are_told_apart_by_content() -> None:
    model = (FIXTURES / "sequence_classifier.safetensors").read_bytes()
    checkpoint = (FIXTURES / "sequence_classifier_checkpoint.pt").read_bytes()
    assert container_of(model[:16], len(model)) == "safetensors"
    assert container_of(checkpoint[:16], len(checkpoint)) == "torch"
    assert container_of(b"hello world, not a model", 24) == "unknown"
    assert container_of(b"\x10\x00\x00\x00\x00\x00\x00\x00{", 9) == "unknown"  # a header longer than the file
    assert describe(FIXTURES / "estimator_lstm.pt") is not None and "older torch format" in str(
        describe(FIXTURES / "estimator_lstm.pt")
    )
    assert describe(FIXTURES / "missing") is None
