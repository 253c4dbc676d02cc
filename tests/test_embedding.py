"""Token models: SequenceClassifier(vocab_size=V) and its TokenEmbedding keep every guarantee of the float model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

import seqclf
from seqclf import SequenceClassifier, Trainer
from seqclf.callbacks import Checkpoint
from seqclf.checkpoint import latest_checkpoint
from seqclf.embedding import TokenEmbedding

V = 20


def order_task(n: int, seed: int, vocab: int = V) -> tuple[list[np.ndarray], np.ndarray]:
    """Class = which of the marker ids 2 and 3 comes first among noise ids 4..vocab-1 (a bag of words is at chance)."""
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for _ in range(n):
        ids = rng.integers(4, vocab, int(rng.integers(6, 16)))
        i, j = sorted(rng.choice(len(ids), 2, replace=False))
        label = int(rng.integers(2))
        ids[i], ids[j] = (2, 3) if label == 0 else (3, 2)
        sequences.append(ids)
        labels.append(label)
    return sequences, np.asarray(labels)


@pytest.mark.parametrize(
    ("cell", "readout", "bidirectional", "num_layers", "bag"),
    [(*c, False) for c in itertools.product(["lstm", "gru", "rnn"], ["last", "mean", "max"], [False, True], [1, 2])]
    + [(cell, readout, True, 1, True) for cell, readout in itertools.product(["lstm", "gru"], ["last", "max"])],
)
def test_ids_in_the_padding_never_change_a_result(
    cell: str, readout: str, bidirectional: bool, num_layers: int, bag: bool
) -> None:
    model = SequenceClassifier(
        3, 5, 4, num_layers=num_layers, cell=cell, bidirectional=bidirectional, readout=readout, vocab_size=V,  # type: ignore[arg-type]
        bag=bag,
    ).eval()
    lengths = torch.tensor([2, 7, 1, 5, 7, 3])
    sequences = [torch.randint(0, V, (int(n),)) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=V + 1000)  # out of range
    padded[0, 2:] = torch.randint(0, V, (5,))  # and in range
    batched = model(padded, lengths)
    alone = torch.cat([model(seq[None]) for seq in sequences])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_every_parameter_gets_a_gradient_and_a_frozen_embedding_none() -> None:
    x, lengths = torch.randint(0, V, (4, 6)), torch.tensor([6, 2, 3, 1])
    model = SequenceClassifier(3, 5, 2, vocab_size=V)
    model(x, lengths).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    frozen = SequenceClassifier(3, 5, 2, vocab_size=V, freeze_embedding=True)
    assert frozen.embedding is not None and frozen.embedding.frozen
    frozen(x, lengths).sum().backward()
    assert frozen.embedding.weight.grad is None and frozen.head.weight.grad is not None


@pytest.mark.parametrize("freeze", [True, False])
def test_from_embedding_starts_from_the_given_vectors(freeze: bool, one_thread: None) -> None:
    vectors = np.random.default_rng(0).normal(size=(V, 4)).astype(np.float32)
    model = SequenceClassifier.from_embedding(vectors, hidden_size=8, num_classes=2, freeze=freeze, readout="max")
    assert model.embedding is not None
    assert model.config.vocab_size == V and model.config.input_size == 4 and model.config.readout == "max"
    torch.testing.assert_close(model.embedding.weight.detach(), torch.from_numpy(vectors), rtol=0, atol=0)
    x, y = order_task(64, 0)
    Trainer(model, epochs=1, seed=0, device="cpu", lr=1e-2).fit((x, y))
    changed = not torch.equal(model.embedding.weight.detach(), torch.from_numpy(vectors))
    assert changed is not freeze


def test_learns_the_order_task_that_a_bag_of_words_cannot(one_thread: None) -> None:
    x_train, y_train = order_task(600, 0)
    x_test, y_test = order_task(300, 1)
    model = SequenceClassifier(8, 16, 2, vocab_size=V)
    trainer = Trainer(model, epochs=12, seed=0, device="cpu", lr=1e-2)
    trainer.fit((x_train, y_train))
    assert trainer.evaluate((x_test, y_test))["accuracy"] >= 0.95


def test_the_bag_of_words_is_the_mean_of_the_valid_token_vectors() -> None:
    model = SequenceClassifier(3, 5, 2, vocab_size=V, bag=True, bidirectional=True, readout="max").eval()
    assert model.num_features == 2 * 5 + 3 and model.head.in_features == 13
    x, lengths = torch.randint(0, V, (3, 6)), torch.tensor([6, 2, 4])
    features = model.forward_features(x, lengths)
    assert model.embedding is not None
    for i, n in enumerate(lengths.tolist()):
        expected = model.embedding.weight[x[i, :n]].mean(dim=0)  # (E,)
        torch.testing.assert_close(features[i, 10:], expected, atol=1e-6, rtol=0)
    without = SequenceClassifier(3, 5, 2, vocab_size=V, bidirectional=True, readout="max").eval()
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")}, strict=False)
    torch.testing.assert_close(features[:, :10], without.forward_features(x, lengths), rtol=0, atol=0)


@pytest.mark.parametrize("bag", [False, True])
def test_save_load_and_from_checkpoint_round_trip(tmp_path: Path, bag: bool) -> None:
    model = SequenceClassifier(3, 5, 2, vocab_size=V, freeze_embedding=True, bag=bag).eval()
    x, lengths = torch.randint(0, V, (3, 6)), torch.tensor([6, 2, 4])
    model.save(tmp_path / "model.safetensors")
    loaded = SequenceClassifier.load(tmp_path / "model.safetensors").eval()
    assert loaded.config == model.config and loaded.embedding is not None and loaded.embedding.frozen
    torch.testing.assert_close(loaded(x, lengths), model(x, lengths), rtol=0, atol=0)
    trainer = Trainer(model, epochs=1, seed=0, device="cpu", callbacks=[Checkpoint(tmp_path / "run")])
    trainer.fit(order_task(32, 0))
    path = latest_checkpoint(tmp_path / "run")
    assert path is not None
    rebuilt = SequenceClassifier.from_checkpoint(path)
    model.eval()
    torch.testing.assert_close(rebuilt(x, lengths), model(x, lengths), rtol=0, atol=0)


@pytest.mark.parametrize("bag", [False, True])
def test_onnx_export_takes_int64_ids_and_equals_eager(tmp_path: Path, bag: bool) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the ONNX test needs onnxruntime (seqclf[onnx])")
    model = SequenceClassifier(3, 5, 4, vocab_size=V, bidirectional=True, readout="mean", bag=bag).eval()
    path = seqclf.export.to_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    assert [(i.name, i.type) for i in session.get_inputs()] == [("x", "tensor(int64)"), ("lengths", "tensor(int64)")]
    lengths = torch.tensor([9, 2, 5])
    x = torch.randint(0, V, (3, 9))
    x[1, 2:] = -7  # junk in the padding
    (logits,) = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
    np.testing.assert_allclose(logits, model(x, lengths).detach().numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("cell", "readout", "bag"), list(itertools.product(["lstm", "gru"], ["last", "mean", "max"], [False, True]))
)
def test_streaming_one_token_at_a_time_equals_prefix_logits(cell: str, readout: str, bag: bool) -> None:
    model = SequenceClassifier(3, 5, 4, cell=cell, readout=readout, vocab_size=V, num_layers=2, bag=bag).eval()  # type: ignore[arg-type]
    x = torch.randint(0, V, (2, 6))
    state = model.initial_state(batch_size=2)
    for t in range(6):
        logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(logits, model(x[:, : t + 1]), atol=1e-5, rtol=0)


def test_trainer_takes_ids_as_lists_padded_arrays_and_datasets() -> None:
    sequences, y = order_task(40, 0)
    padded, lengths = seqclf.pad_sequences(sequences)
    assert padded.shape == (40, int(lengths.max())) and padded.dtype == torch.int64
    model = SequenceClassifier(3, 5, 2, vocab_size=V)
    trainer = Trainer(model, epochs=1, seed=0, device="cpu")
    from_list = trainer.predict_proba(sequences)
    torch.testing.assert_close(trainer.predict_proba(padded.numpy(), lengths), from_list, rtol=0, atol=1e-6)
    dataset = seqclf.TensorSequenceDataset(sequences, y)
    assert trainer.evaluate(dataset)["samples"] == 40
    assert trainer.evaluate((padded, lengths, y))["samples"] == 40
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    trainer.fit(loader)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (([np.array([1, 2, V])], [0]), ValueError, rf"train_data token ids must lie in \[0, {V}\) .*from 1 to {V}"),
        (([np.array([-1, 2])], [0]), ValueError, r"token ids must lie in .*from -1 to 2"),
        ((torch.randn(2, 3, 3), [0, 1]), TypeError, r"must be integer token ids \(batch, time\).*vocab_size=20"),
    ],
)
def test_bad_ids_are_refused_before_training(data: object, error: type[Exception], match: str) -> None:
    model = SequenceClassifier(3, 5, 2, vocab_size=V)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=match):
        Trainer(model, epochs=1, device="cpu").fit(data)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_float_model_refuses_ids_and_says_why() -> None:
    float_model = SequenceClassifier(3, 5, 2)
    with pytest.raises(TypeError, match=r"look like token ids .*vocab_size=V.*magnitudes"):
        Trainer(float_model, epochs=1, device="cpu").fit(order_task(4, 0))
    with pytest.raises(TypeError, match=r"x looks like token ids .*vocab_size=V"):
        float_model(torch.randint(0, V, (2, 4)))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m(torch.tensor([[1, V]])), ValueError, rf"x token ids must lie in \[0, {V}\) \(vocab_size\)"),
        (lambda m: m(torch.randn(1, 3)), TypeError, "x must be integer token ids"),
        (lambda m: m(torch.zeros(1, 3, 3, dtype=torch.int64)), ValueError, r"shape \(batch, time >= 1\); got \(1, 3, 3\)"),
        (lambda m: m.step(torch.tensor([V]), m.initial_state(1)), ValueError, r"x_t token ids must lie in \[0, 20\)"),
        (lambda m: m.step(torch.tensor([[1]]), m.initial_state(1)), ValueError, r"x_t must be token ids of shape"),
    ],
)
def test_bad_ids_name_the_argument(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(SequenceClassifier(3, 5, 2, vocab_size=V))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 0}, "vocab_size must be a positive int; got 0"),
        ({"vocab_size": V, "normalize": True}, "normalize must be False for a model that embeds token ids"),
        ({"freeze_embedding": True}, "freeze_embedding=True needs vocab_size"),
        ({"bag": True}, "bag=True needs vocab_size"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(3, 5, 2, **kwargs)  # type: ignore[arg-type]


def test_registered_and_vectors_checked() -> None:
    model = seqclf.create_model("text_lstm", input_size=4, num_classes=3, vocab_size=50)
    assert isinstance(model, SequenceClassifier) and model.config.vocab_size == 50
    with pytest.raises(ValueError, match=r"vectors must be floating point of shape \(vocab_size, embedding_dim\)"):
        TokenEmbedding(5, 2).load_vectors(np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="vectors must be a 2-D"):
        SequenceClassifier.from_embedding(np.zeros(5), hidden_size=2, num_classes=2)


def test_streaming_a_bag_model_needs_its_own_state() -> None:
    bag = SequenceClassifier(3, 5, 2, vocab_size=V, bag=True).eval()
    plain = SequenceClassifier(3, 5, 2, vocab_size=V).eval()
    with pytest.raises(ValueError, match="state must come from this model's initial_state"):
        bag.step(torch.tensor([1, 2]), plain.initial_state(2))
