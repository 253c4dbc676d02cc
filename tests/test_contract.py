"""The model contract, checked for every registered model (``seqclf.list_models()``).

A model that registers with ``seqclf.register_model`` is checked here with no test of its
own: built by name with only the two sizes, it must ignore whatever the padding holds,
save and load, rebuild from a checkpoint, train with ``Trainer``, fit in the estimator,
export to ONNX with the same logits in ONNX Runtime, and stream as it predicts or refuse
to stream with a reason. See docs/adding-a-model.md. A model whose config has a
``vocab_size`` reads token ids ``(batch, time)``: it is given ids in place of features.
"""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import seqclf
from seqclf import Trainer, latest_checkpoint
from seqclf.callbacks import Checkpoint

FEATURES, CLASSES = 3, 3
MODELS = seqclf.list_models()
VOCAB = 50
"""The vocabulary size the contract gives a model that reads token ids."""


def reads_ids(name: str) -> bool:
    """Whether the registered model ``name`` reads token ids (its config has a ``vocab_size``)."""
    entry = seqclf.registry.model_entry(name)
    return "vocab_size" in entry.options and entry.defaults.get("vocab_size") is not None


def create(name: str) -> nn.Module:
    """The registered model ``name`` with the contract sizes."""
    extra = {"vocab_size": VOCAB} if reads_ids(name) else {}
    return seqclf.create_model(name, input_size=FEATURES, num_classes=CLASSES, **extra)


def values(name: str, *shape: int) -> Tensor:
    """Random input ``(*shape, FEATURES)``, or token ids ``shape`` for a model that reads ids."""
    return torch.randint(0, VOCAB, shape) if reads_ids(name) else torch.randn(*shape, FEATURES)


def build(name: str) -> nn.Module:
    """The registered model ``name`` with the contract sizes, its batch norms (if any) moved off 0 and 1."""
    model = create(name)
    x = values(name, 6, 9)
    with torch.no_grad():
        model.train()(x if reads_ids(name) else x * 2.0 + 1.0, torch.tensor([9, 4, 2, 7, 1, 9]))
    return model.eval()


def ragged(lengths: list[int], junk: float, name: str = "lstm") -> tuple[list[Tensor], Tensor, Tensor]:
    """Sequences of ``lengths``, their padded batch ``(B, T, F)`` with ``junk`` in the padding, and the lengths
    (for a model that reads ids: ``(B, T)`` ids, ``VOCAB + junk`` in the padding, outside the vocabulary)."""
    sequences = [values(name, n) for n in lengths]
    junk = VOCAB + junk if reads_ids(name) else junk
    padded = nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=junk)
    return sequences, padded, torch.tensor(lengths)


def task(n: int = 24, time: int = 7, name: str = "lstm") -> tuple[Tensor, Tensor, Tensor]:
    """A learnable ragged task: the class is the feature with the largest mean (for ids: the id's fifth of 0-14)."""
    y = torch.arange(n) % CLASSES
    lengths = torch.randint(2, time + 1, (n,))
    if reads_ids(name):
        return y[:, None] * 5 + torch.randint(0, 5, (n, time)), lengths, y
    x = torch.randn(n, time, FEATURES)
    x[torch.arange(n), :, y] += 2.0
    return x, lengths, y


def test_the_built_in_models_are_registered() -> None:
    assert {"lstm", "gru", "rnn", "lstm_fcn"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_config_rebuilds_the_model(name: str) -> None:
    model = build(name)
    config = model.config
    assert isinstance(config, type(model).config_class)  # type: ignore[arg-type]
    data = json.loads(json.dumps(config.to_dict()))  # plain data
    assert type(config).from_dict(data) == config
    assert type(model).from_config(config).config == config  # type: ignore[operator]
    assert {"input_size", "num_classes"} <= {f.name for f in fields(config)}
    with pytest.raises(FrozenInstanceError):
        config.input_size = 7  # type: ignore[misc]


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_the_head_on_the_features(name: str) -> None:
    model = build(name)
    x = values(name, 4, 6)
    lengths = torch.tensor([6, 1, 3, 5])
    features = model.forward_features(x, lengths)
    assert features.shape == (4, model.num_features)
    logits = model(x, lengths)
    assert logits.shape == (4, CLASSES) and torch.isfinite(logits).all()
    torch.testing.assert_close(model.forward_head(features), logits, atol=0, rtol=0)
    torch.testing.assert_close(model(x, torch.full((4,), 6)), model(x), atol=1e-6, rtol=0)  # full lengths


@pytest.mark.parametrize("name", MODELS)
def test_padding_never_changes_a_result(name: str) -> None:
    model = build(name)
    sequences, padded, lengths = ragged([7, 1, 3, 7, 5], junk=9.0, name=name)
    batched = model(padded, lengths)
    alone = torch.cat([model(seq[None]) for seq in sequences])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    other_junk = torch.cat([padded, torch.full((5, 4, *padded.shape[2:]), -40).to(padded.dtype)], dim=1)  # more
    other_junk[torch.arange(11)[None, :] >= lengths[:, None]] = -40.0
    torch.testing.assert_close(model(other_junk, lengths), batched, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = build(name).train()
    _, padded, lengths = ragged([5, 2, 4, 5], junk=3.0, name=name)
    nn.functional.cross_entropy(model(padded, lengths), torch.tensor([0, 1, 2, 0])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_is_refused_naming_the_argument(name: str) -> None:
    model = build(name)
    if reads_ids(name):
        with pytest.raises(ValueError, match=r"x must be token ids of shape \(batch, time >= 1\)"):
            model(torch.zeros(2, 5, FEATURES, dtype=torch.int64))
        with pytest.raises(TypeError, match="x must be integer token ids"):
            model(torch.zeros(2, 5))
        with pytest.raises(ValueError, match=rf"x token ids must lie in \[0, {VOCAB}\)"):
            model(torch.full((2, 5), VOCAB))
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
            model(torch.zeros(2, 5, dtype=torch.int64), torch.tensor([5, 0]))
        return
    with pytest.raises(ValueError, match=rf"x must have shape \(batch, time, {FEATURES}\)"):
        model(torch.zeros(2, 5, FEATURES + 1))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        model(torch.zeros(2, 5, FEATURES, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        model(torch.zeros(2, 5, FEATURES), torch.tensor([5, 0]))


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_round_trip(name: str, tmp_path: Path) -> None:
    model = build(name)
    model.save(tmp_path / "model.safetensors")
    loaded = type(model).load(tmp_path / "model.safetensors")
    assert loaded.config == model.config and not loaded.training
    _, padded, lengths = ragged([6, 2, 5, 1], junk=5.0, name=name)
    torch.testing.assert_close(loaded(padded, lengths), model(padded, lengths), atol=0, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_trainer_fits_it_and_from_checkpoint_rebuilds_it(name: str, tmp_path: Path, one_thread: None) -> None:
    model = create(name)
    before = [p.detach().clone() for p in model.parameters()]
    x, lengths, y = task(name=name)
    trainer = Trainer(model, epochs=2, batch_size=8, seed=0, device="cpu", progress=False,
                      callbacks=[Checkpoint(tmp_path, every_n_epochs=1)])
    history = trainer.fit((x, lengths, y))
    assert len(history) == 2 and all(np.isfinite(history.series("train_loss")))
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    path = latest_checkpoint(tmp_path)
    assert path is not None
    rebuilt = type(model).from_checkpoint(path)  # type: ignore[attr-defined]
    assert rebuilt.config == model.config and not rebuilt.training
    torch.testing.assert_close(rebuilt(x, lengths), model.eval()(x, lengths), atol=0, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_it_overfits_a_tiny_batch(name: str, one_thread: None) -> None:
    model = create(name).train()
    x, lengths, y = task(n=9, name=name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x, lengths), y).backward()
        optimizer.step()
    assert (model(x, lengths).argmax(dim=1) == y).all()


@pytest.mark.parametrize("name", MODELS)
def test_the_estimator_fits_it_by_name(name: str, one_thread: None) -> None:
    pytest.importorskip("sklearn", reason="the estimator is the optional extra seqclf[sklearn]")
    from seqclf.sklearn import SequenceClassifierEstimator

    if reads_ids(name):
        pytest.skip("a token model's estimator is TextClassifierEstimator (strings in; tests/test_text_estimator.py)")

    x, _, y = task(n=18, time=6)
    labels = np.array(["a", "b", "c"])[y.numpy()]
    closed_form = callable(getattr(create(name), "fit_closed_form", None))  # no optimizer: no training knobs
    knobs = {} if closed_form else {"min_steps": 2, "batch_size": 9}
    clf = SequenceClassifierEstimator(model=name, layout="ntc", random_state=0, device="cpu", **knobs)
    clf.fit(x.numpy(), labels)
    assert isinstance(clf.model_, seqclf.registry.model_entry(name).model_class)
    proba = clf.predict_proba(x.numpy())
    assert proba.shape == (18, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(x.numpy())) <= {"a", "b", "c"}


@pytest.mark.parametrize("name", MODELS)
def test_onnx_runtime_equals_eager(name: str, tmp_path: Path, one_thread: None) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is the optional extra seqclf[onnx]")
    from seqclf.export import to_onnx

    model = build(name)
    to_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for lengths in ([9, 4, 1, 6], [1], [3, 5, 5]):
        _, padded, lengths_t = ragged(lengths, junk=7.0, name=name)
        (logits,) = session.run(["logits"], {"x": padded.numpy(), "lengths": lengths_t.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), model(padded, lengths_t), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_streaming_equals_the_prefix_logits_or_is_refused_with_a_reason(name: str) -> None:
    model = build(name)
    x = values(name, 2, 6)
    try:
        state = model.initial_state(batch_size=2)
    except (NotImplementedError, ValueError) as error:
        assert "stream" in str(error)
        with pytest.raises(type(error), match="stream"):
            model.step(x[:, 0], None)
        return
    for t in range(6):
        logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(logits, model(x[:, : t + 1]), atol=1e-5, rtol=0)
    assert logits.grad_fn is None  # no autograd history unless asked for


def test_the_example_in_adding_a_model_keeps_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The docs' example model, registered as the page shows, passes the checks above."""
    page = Path(__file__).resolve().parents[1] / "docs" / "adding-a-model.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    monkeypatch.setattr(seqclf.registry, "_REGISTRY", dict(seqclf.registry._REGISTRY))
    module = types.ModuleType("adding_a_model")  # dataclasses look their module up in sys.modules
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(blocks[-1], "adding-a-model.md", "exec"), module.__dict__)
    assert "deep_head" in seqclf.list_models()
    test_config_rebuilds_the_model("deep_head")
    test_forward_is_the_head_on_the_features("deep_head")
    test_padding_never_changes_a_result("deep_head")
    test_save_and_load_round_trip("deep_head", tmp_path)
    test_streaming_equals_the_prefix_logits_or_is_refused_with_a_reason("deep_head")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "run").mkdir()
    test_trainer_fits_it_and_from_checkpoint_rebuilds_it("deep_head", tmp_path / "run", None)
    test_onnx_runtime_equals_eager("deep_head", tmp_path / "onnx", None)
