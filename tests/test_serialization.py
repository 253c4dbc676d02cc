from __future__ import annotations

import collections
import json
import random
import struct
import tempfile
from pathlib import Path
from typing import Any

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


def _overlap_the_first_tensor(header: dict[str, Any]) -> None:
    """Move the last tensor's bytes onto the first tensor's (same size, overlapping ranges)."""
    tensors = sorted((info["data_offsets"], name) for name, info in header.items() if name != "__metadata__")
    (begin, end), name = tensors[-1]
    header[name]["data_offsets"] = [0, end - begin]


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
            lambda d: _with_header(d, _overlap_the_first_tensor),
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


# ------------------------------------------------------ crafted and fuzzed files
def _raw_file(header: dict[str, object], data: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


@pytest.mark.parametrize("size", [2**64, 2**63, -1, True, 1.0])
def test_a_dimension_no_torch_size_holds_is_refused_even_in_an_empty_tensor(tmp_path: Path, size: object) -> None:
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(_raw_file({"a": {"dtype": "F32", "shape": [0, size], "data_offsets": [0, 0]}}))
    with pytest.raises(SerializationError, match=r"has shape \[0, .*\]; expected a list of non-negative int64 sizes"):
        load_safetensors(path)


def test_the_largest_int64_dimension_in_an_empty_tensor_loads_or_is_refused_plainly(tmp_path: Path) -> None:
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(_raw_file({"a": {"dtype": "F32", "shape": [0, 2**63 - 1], "data_offsets": [0, 0]}}))
    try:
        tensors, _ = load_safetensors(path)
    except SerializationError as error:
        assert "cannot be built" in str(error)
    else:
        assert tensors["a"].shape == (0, 2**63 - 1)


@pytest.mark.parametrize("where", ["tensor", "metadata"])
def test_a_deeply_nested_header_is_refused(tmp_path: Path, where: str) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    header = b'{"a":' + deep + b"}" if where == "tensor" else b'{"__metadata__":{"k":' + deep + b"}}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(SerializationError, match="its header is nested too deeply"):
        load_safetensors(path)
    with pytest.raises(SerializationError):
        SequenceClassifier.load(path)


def test_an_empty_tensor_listed_after_a_neighbour_at_the_same_offset_loads(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},  # listed after a, at a's start
        "c": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
    }
    path = tmp_path / "valid.safetensors"
    data = torch.tensor([1.5, -2.0]).numpy().tobytes() + torch.tensor([7]).numpy().tobytes()
    path.write_bytes(_raw_file(header, data))
    tensors, _ = load_safetensors(path)
    assert tensors["a"].tolist() == [1.5, -2.0] and tensors["b"].shape == (0, 3) and tensors["c"].tolist() == [7]
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="the safetensors package is the reference")
    theirs = safetensors_torch.load_file(str(path))
    assert theirs.keys() == tensors.keys() and all(torch.equal(theirs[k], tensors[k]) for k in tensors)


def _signed_model_file(path: Path, replace: dict[str, torch.Tensor]) -> None:
    """A consistent model file (valid checksum) of a SequenceClassifier whose tensors ``replace`` changes."""
    model = SequenceClassifier(3, 4, 2, normalize=True)
    model.save(path, overwrite=True)
    tensors, metadata = load_safetensors(path)
    tensors.update(replace)
    metadata["sha256"] = _checksum(tensors, metadata)
    save_safetensors(tensors, path, metadata=metadata, overwrite=True)


@pytest.mark.parametrize(
    ("name", "tensor", "message"),
    [
        ("head.bias", torch.tensor([1, 2]), r"head\.bias is torch\.int64, the model's is torch\.float32"),
        ("head.bias", torch.tensor([True, False]), r"head\.bias is torch\.bool, the model's is torch\.float32"),
        ("normalize.fitted", torch.tensor(1.0), r"normalize\.fitted is torch\.float32, the model's is torch\.bool"),
    ],
)
def test_an_integer_or_bool_tensor_is_never_cast_into_a_float_weight(
    tmp_path: Path, name: str, tensor: torch.Tensor, message: str
) -> None:
    path = tmp_path / "model.safetensors"
    _signed_model_file(path, {name: tensor})
    with pytest.raises(SerializationError, match=message + r".*A tensor is never cast to another kind"):
        SequenceClassifier.load(path)
    _signed_model_file(path, {"head.bias": torch.tensor([1.0, 2.0], dtype=torch.float64)})  # a wider float: fine
    assert SequenceClassifier.load(path).head.bias.tolist() == [1.0, 2.0]


def test_a_config_that_describes_a_huge_model_is_refused_before_it_is_built(tmp_path: Path) -> None:
    path = tmp_path / "bomb.safetensors"
    model = SequenceClassifier(3, 4, 2)
    model.save(path)
    tensors, metadata = load_safetensors(path)
    metadata["config"] = json.dumps({**model.config.to_dict(), "hidden_size": 2**20, "num_layers": 50})
    tensors = {f"renamed.{key}": value for key, value in tensors.items()}  # no name to compare shapes with
    metadata["sha256"] = _checksum(tensors, metadata)
    save_safetensors(tensors, path, metadata=metadata, overwrite=True)
    with pytest.raises(SerializationError, match=r"weights do not fit its SequenceClassifier config: .*Missing key.* \.\.\.$"):
        SequenceClassifier.load(path)


_WHITESPACE = b" \t\n\r"
_VALUES: list[object] = [0, -1, 1, 7, 2**31, 2**63, 2**64, 1.5, float("nan"), "F32", "I64", "BOOL", "F16", "x", None,
                         True, [], {}, [0], [0, 0], [8, 0], [0, 2**64], {"dtype": "F32"}]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One random change to a safetensors file: bytes, lengths or its JSON header."""
    size = struct.unpack("<Q", data[:8])[0]
    how = rng.randrange(9)
    if how == 0:  # flip one bit anywhere
        at = rng.randrange(len(data))
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
    if how == 1:  # one random byte anywhere
        at = rng.randrange(len(data))
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    if how == 2:  # truncate
        return data[: rng.randrange(len(data))]
    if how == 3:  # insert or delete a few bytes
        at = rng.randrange(len(data))
        if rng.random() < 0.5:
            return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9))) + data[at:]
        return data[:at] + data[at + rng.randrange(1, 9) :]
    if how == 4:  # another header length
        return struct.pack("<Q", max(0, size + rng.choice([-9, -8, -1, 1, 8, 2**32, 2**63]))) + data[8:]
    if how == 5:  # other whitespace in the header's padding: the same file
        spaces = [i for i in range(8, 8 + size) if data[i] == ord(" ")]
        if not spaces:
            return data
        at = rng.choice(spaces)
        return data[:at] + bytes([rng.choice(_WHITESPACE)]) + data[at + 1 :]
    header = json.loads(data[8 : 8 + size])
    if how == 6:  # the same header written in another key order: the same file
        items = list(header.items())
        rng.shuffle(items)
        return _raw_file(dict(items), data[8 + size :])
    # a value deep in the header replaced, metadata included
    node: object = header
    key: object = None
    parent: object = None
    while isinstance(node, (dict, list)) and node and (parent is None or rng.random() < 0.7):
        parent, key = node, rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
        node = node[key]  # type: ignore[index]
    if isinstance(parent, (dict, list)):
        parent[key] = rng.choice(_VALUES) if how == 7 else json.dumps(rng.choice(_VALUES))  # type: ignore[index]
    return _raw_file(header, data[8 + size :])


def test_fuzzed_files_raise_only_the_documented_error_and_never_load_wrong_values(tmp_path: Path) -> None:
    """Thousands of seeded random mutations of a valid model file: refused with SerializationError, or exact."""
    try:
        from safetensors.torch import load as reference_load
    except ImportError:  # the safetensors package is optional: without it the reader is checked against itself
        reference_load = None
    model = SequenceClassifier(3, 4, 2, num_layers=2, normalize=True)
    assert model.normalize is not None
    model.normalize.set_statistics(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 1.0, 3.0]))
    good = tmp_path / "good.safetensors"
    model.save(good)
    original, expected = good.read_bytes(), model.state_dict()
    rng = random.Random(0)
    outcomes: collections.Counter[str] = collections.Counter()
    for i in range(3000):
        data = _mutate(original, rng)
        path = tmp_path / f"fuzzed-{i}.safetensors"  # a new file: rewriting one file is slow on some file systems
        path.write_bytes(data)
        try:
            tensors, _ = load_safetensors(path)
        except SerializationError:
            outcomes["read refused"] += 1
            continue  # SequenceClassifier.load reads through load_safetensors: it refuses the same file
        outcomes["read"] += 1
        if reference_load is not None:
            try:
                theirs = reference_load(data)
            except Exception:  # the package is stricter on some headers (e.g. leading whitespace)
                outcomes["read, refused by the package"] += 1
            else:
                assert theirs.keys() == tensors.keys()
                assert all(torch.equal(theirs[k], tensors[k]) for k in tensors)
        try:
            loaded = SequenceClassifier.load(path)
        except SerializationError:
            outcomes["model refused"] += 1
        else:
            outcomes["model loaded"] += 1
            assert loaded.state_dict().keys() == expected.keys()
            assert all(torch.equal(loaded.state_dict()[k], expected[k]) for k in expected), "loaded wrong values"
    # every path was exercised: refusals, files read, and unchanged files that load exactly
    assert min(outcomes["read refused"], outcomes["read"], outcomes["model refused"], outcomes["model loaded"]) > 50, (
        outcomes
    )
