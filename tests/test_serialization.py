from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from seqclf import LSTMFCN, SequenceClassifier
from seqclf.serialization import SerializableModel, SerializationError, _checksum, load_safetensors, save_safetensors

from .conftest import FIXTURES, fixture_expected, fixture_input


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "f32": torch.randn(3, 4),
        "f64": torch.randn(2, dtype=torch.float64),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "i64": torch.arange(7),
        "i32": torch.tensor([-3, 4], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(4, 6)[:, ::2],  # not contiguous
    }


def test_round_trip_every_dtype(tmp_path: Path) -> None:
    tensors = _tensors()
    save_safetensors(tensors, tmp_path / "t.safetensors", metadata={"a": "b"})
    loaded, metadata = load_safetensors(tmp_path / "t.safetensors")
    assert metadata == {"a": "b"}
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name


def test_files_interchange_with_the_safetensors_package(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="the safetensors package checks interop")
    from safetensors import safe_open

    tensors = {k: v.contiguous() for k, v in _tensors().items()}
    save_safetensors(tensors, tmp_path / "ours.safetensors", metadata={"k": "v"})
    theirs = safetensors_torch.load_file(str(tmp_path / "ours.safetensors"))
    with safe_open(str(tmp_path / "ours.safetensors"), "pt") as file:
        assert file.metadata() == {"k": "v"}
    safetensors_torch.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"x": "y"})
    ours, metadata = load_safetensors(tmp_path / "theirs.safetensors")
    assert metadata == {"x": "y"}
    for name, tensor in tensors.items():
        assert torch.equal(theirs[name], tensor), name
        assert torch.equal(ours[name], tensor), name


def test_model_save_load_round_trip(tmp_path: Path) -> None:
    model = SequenceClassifier(3, 5, 4, num_layers=2, cell="gru", bidirectional=True, readout="max", dropout=0.2)
    model.save(tmp_path / "model.safetensors")
    loaded = SequenceClassifier.load(tmp_path / "model.safetensors")
    assert loaded.config == model.config and not loaded.training
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    torch.testing.assert_close(loaded(x, lengths), model.eval()(x, lengths), atol=0, rtol=0)
    _, metadata = load_safetensors(tmp_path / "model.safetensors")
    assert metadata["model_class"] == "SequenceClassifier"
    assert json.loads(metadata["config"]) == model.config.to_dict()


def test_save_never_overwrites_silently(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"precious")
    model = SequenceClassifier(3, 4, 2)
    with pytest.raises(FileExistsError, match="already exists; refusing to overwrite it"):
        model.save(path)
    assert path.read_bytes() == b"precious"
    model.save(path, overwrite=True)
    assert SequenceClassifier.load(path).config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary file left


def _valid_file(tmp_path: Path) -> bytes:
    SequenceClassifier(3, 4, 2).save(tmp_path / "good.safetensors")
    return (tmp_path / "good.safetensors").read_bytes()


def _with_header(data: bytes, edit: object, *, resign: bool = False) -> bytes:
    """``data`` with its JSON header edited; with ``resign`` its checksum fits the edit (a consistent file)."""
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    edit(header)  # type: ignore[operator]
    if resign:
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "f.safetensors").write_bytes(data)
            tensors, _ = load_safetensors(Path(directory) / "f.safetensors")
        header["__metadata__"]["sha256"] = _checksum(tensors, header["__metadata__"])
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data[8 + size :]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:5], "shorter than the 8-byte header length"),
        (lambda d: d[:40], "truncated or not a safetensors file"),
        (lambda d: d[:-3], "is truncated: its tensors need"),
        (lambda d: d + b"xx", "is corrupt: its tensors need"),
        (lambda d: d[:8] + b"[" + d[9:], "header is not JSON"),
        (lambda d: struct.pack("<Q", 4) + b"[1] " + b"", "header is a list, not an object"),
        (lambda d: _with_header(d, lambda h: h["head.bias"].update(dtype="F12")), "has dtype 'F12'"),
        (
            lambda d: _with_header(d, lambda h: h["head.bias"].update(shape=[3])),
            "needs 12 bytes; its data_offsets hold 8",
        ),
        (
            lambda d: _with_header(d, lambda h: h["rnn.bias_hh_l0"].update(data_offsets=[0, 64])),
            "byte ranges must be contiguous",
        ),
        (lambda d: _with_header(d, lambda h: h["__metadata__"].update(config=1)), "__metadata__ must map str to str"),
        (
            lambda d: _with_header(d, lambda h: h["__metadata__"].update(config="{"), resign=True),
            "invalid SequenceClassifier config",
        ),
        (lambda d: _with_header(d, lambda h: h["__metadata__"].update(config="{")), "is corrupted: its content"),
        (
            lambda d: _with_header(d, lambda h: h["__metadata__"].update(format="other")),
            r"must be a seqclf model file .*; got a safetensors file not written by seqclf",
        ),
        (lambda d: _with_header(d, lambda h: h["__metadata__"].update(format_version="9")), "format version '9'"),
        (
            lambda d: _with_header(d, lambda h: h["__metadata__"].update(model_class="LSTMFCN"), resign=True),
            "holds a LSTMFCN model, not a SequenceClassifier",
        ),
        (
            lambda d: _with_header(
                d,
                lambda h: h["__metadata__"].update(
                    config=json.dumps({**json.loads(h["__metadata__"]["config"]), "hidden_size": 5})
                ),
                resign=True,
            ),
            "weights do not fit",
        ),
    ],
)
def test_load_refuses_bad_files(tmp_path: Path, damage: object, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(damage(_valid_file(tmp_path)))  # type: ignore[operator]
    with pytest.raises(SerializationError, match=message):
        SequenceClassifier.load(path)


def test_load_refuses_a_foreign_safetensors_file(tmp_path: Path) -> None:
    save_safetensors({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(SerializationError, match=r"must be a seqclf model file .*; got a safetensors file not written"):
        SequenceClassifier.load(tmp_path / "other.safetensors")


def test_save_load_is_generic_over_model_classes(tmp_path: Path) -> None:
    class Tiny(nn.Module, SerializableModel):
        config_class = type(SequenceClassifier(1, 1, 2).config)

        def __init__(self, config: object) -> None:
            super().__init__()
            self.config = config
            self.linear = nn.Linear(2, 3)

        @classmethod
        def from_config(cls, config: object) -> Tiny:
            return cls(config)

    model = Tiny(SequenceClassifier(1, 1, 2).config)
    model.save(tmp_path / "tiny.safetensors")
    assert torch.equal(Tiny.load(tmp_path / "tiny.safetensors").linear.weight, model.linear.weight)
    with pytest.raises(
        SerializationError, match=r"holds a Tiny model, not a SequenceClassifier; load it with Tiny\.load"
    ):
        SequenceClassifier.load(tmp_path / "tiny.safetensors")


@pytest.mark.parametrize(
    ("tensors", "metadata", "error", "message"),
    [
        ({"a": [1.0]}, None, TypeError, r"tensors\['a'\] must be a torch.Tensor; got list"),
        ({"a": torch.zeros(1, dtype=torch.complex64)}, None, ValueError, "has dtype torch.complex64"),
        ({"a": torch.zeros(1)}, {"k": 1}, TypeError, "metadata must map str to str"),
        ({"__metadata__": torch.zeros(1)}, None, TypeError, "tensor names must be strings other than '__metadata__'"),
    ],
)
def test_save_validation(
    tmp_path: Path, tensors: dict[str, object], metadata: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        save_safetensors(tensors, tmp_path / "x.safetensors", metadata=metadata)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_a_normalising_model_saves_its_statistics(tmp_path: Path) -> None:
    model = SequenceClassifier(3, 4, 2, normalize=True)
    assert model.normalize is not None
    model.normalize.set_statistics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 1.0, 2.0]))
    model.save(tmp_path / "model.safetensors")
    loaded = SequenceClassifier.load(tmp_path / "model.safetensors")
    assert loaded.normalize is not None and loaded.normalize.is_fitted
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(loaded(x), model.eval()(x), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sequence_classifier.safetensors", SequenceClassifier), ("lstm_fcn.safetensors", LSTMFCN)],
)
def test_model_files_written_by_seqclf_0_1_0_still_load_and_predict_the_same(name: str, cls: type[nn.Module]) -> None:
    model = cls.load(FIXTURES / name)  # type: ignore[attr-defined]
    assert isinstance(model, cls) and not model.training
    x, lengths = fixture_input()  # (5, 7, 3) with junk in the padding, (5,)
    with torch.no_grad():
        logits = model(x, lengths)  # (5, 3)
    torch.testing.assert_close(logits, torch.tensor(fixture_expected()[name]), rtol=0, atol=1e-6)
