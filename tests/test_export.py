from __future__ import annotations

import copy
import itertools
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from seqclf import SequenceClassifier

CONFIGS = list(itertools.product(["lstm", "gru", "rnn"], ["last", "mean", "max"], [False, True], [1, 2]))


def _padded_batches() -> list[tuple[Tensor, Tensor]]:
    """Batches of several sizes and lengths, with junk in the padding."""
    batches = []
    for batch, time in [(4, 9), (1, 1), (3, 5)]:
        lengths = torch.randint(1, time + 1, (batch,))
        lengths[0] = time
        x = torch.randn(batch, time, 3)
        x[torch.arange(time)[None, :] >= lengths[:, None]] = 7.0
        batches.append((x, lengths))
    return batches


@pytest.mark.parametrize(("cell", "readout", "bidirectional", "num_layers"), CONFIGS)
def test_onnxruntime_equals_eager_on_padded_batches(
    tmp_path: Path, one_thread: None, cell: str, readout: str, bidirectional: bool, num_layers: int
) -> None:
    ort = pytest.importorskip("onnxruntime", reason="needs onnx and onnxruntime: pip install onnx onnxruntime (or pip install -e '.[onnx]')")
    from seqclf.export import to_onnx

    model = SequenceClassifier(
        3, 5, 4, num_layers=num_layers, cell=cell, bidirectional=bidirectional, readout=readout
    ).eval()  # type: ignore[arg-type]
    to_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "lengths"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for x, lengths in _padded_batches():
        (logits,) = session.run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), model(x, lengths).detach(), atol=1e-4, rtol=0)


def test_onnx_export_carries_normalisation_inside_the_model(tmp_path: Path, one_thread: None) -> None:
    ort = pytest.importorskip("onnxruntime", reason="needs onnx and onnxruntime: pip install onnx onnxruntime (or pip install -e '.[onnx]')")
    from seqclf.export import to_onnx

    model = SequenceClassifier(3, 5, 4, readout="mean", normalize=True).eval()
    assert model.normalize is not None
    model.normalize.set_statistics(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 1.0]))
    to_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x, lengths = _padded_batches()[0]
    (logits,) = session.run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), model(x, lengths).detach(), atol=1e-4, rtol=0)
    plain = SequenceClassifier(3, 5, 4, readout="mean").eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.allclose(plain(x, lengths), model(x, lengths))  # the normalisation changes the logits


@pytest.mark.parametrize("layout", ["parallel", "serial"])
def test_the_time_series_model_exports_with_its_normalisation(tmp_path: Path, one_thread: None, layout: str) -> None:
    ort = pytest.importorskip("onnxruntime", reason="needs onnx and onnxruntime: pip install onnx onnxruntime (or pip install -e '.[onnx]')")
    from seqclf import LSTMFCN
    from seqclf.export import to_onnx

    model = LSTMFCN(3, 4, hidden_size=5, filters=(4, 6, 4), layout=layout, normalize=True)  # type: ignore[arg-type]
    assert model.normalize is not None
    model.normalize.set_statistics(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 1.0]))
    model.train()(torch.randn(6, 9, 3), torch.tensor([9, 4, 2, 7, 1, 9]))  # batch-norm running statistics move
    model.eval()
    to_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for x, lengths in _padded_batches():
        (logits,) = session.run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), model(x, lengths).detach(), atol=1e-4, rtol=0)


def test_to_onnx_never_overwrites_silently(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="needs onnx and onnxruntime: pip install onnx onnxruntime (or pip install -e '.[onnx]')")
    from seqclf.export import to_onnx

    path = tmp_path / "model.onnx"
    path.write_bytes(b"precious")
    model = SequenceClassifier(3, 4, 2)
    with pytest.raises(FileExistsError, match="already exists; refusing to overwrite it"):
        to_onnx(model, path)
    assert path.read_bytes() == b"precious"
    assert to_onnx(model, path, overwrite=True) == path
    assert path.stat().st_size > 100 and model.training  # the caller's model is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    with pytest.raises(TypeError, match="model must have a config with an int input_size"):
        to_onnx(torch.nn.Linear(2, 2), tmp_path / "other.onnx")


@pytest.mark.filterwarnings(
    "ignore:The tensor attributes self.encoder.rnn._flat_weights"
)  # torch.export's note on nn.RNN internals
@pytest.mark.parametrize(
    ("bidirectional", "readout"), [(False, "last"), (False, "max"), (True, "last"), (True, "mean")]
)
def test_traced_and_exported_programs_are_correct_on_padded_input(
    one_thread: None, bidirectional: bool, readout: str
) -> None:
    """Recorded with full-length lengths, the programs still read lengths (a former silent 0.127 error)."""
    model = SequenceClassifier(3, 5, 4, num_layers=2, bidirectional=bidirectional, readout=readout).eval()  # type: ignore[arg-type]
    example = (torch.randn(3, 7, 3), torch.full((3,), 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated; nn.RNN's own checks warn while traced
        traced = torch.jit.trace(model, example)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, example, dynamic_shapes={"x": {0: batch}, "lengths": {0: batch}}).module()
    x = torch.randn(4, 7, 3)
    lengths = torch.tensor([7, 3, 1, 5])
    x[torch.arange(7)[None, :] >= lengths[:, None]] = 9.0
    alone = torch.cat([model(x[i : i + 1, : int(n)]) for i, n in enumerate(lengths)])
    assert (model(x) - alone).abs().max() > 1e-3  # ignoring lengths would be caught
    torch.testing.assert_close(traced(x, lengths), alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(exported(x, lengths), alone, atol=1e-5, rtol=0)
    shorter = torch.randn(2, 4, 3), torch.tensor([4, 2])  # the trace also follows another time length
    torch.testing.assert_close(traced(*shorter), model(*shorter), atol=1e-5, rtol=0)


def test_compiled_forward_has_no_graph_breaks_when_dynamo_may_trace_rnns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamo refuses nn.LSTM/GRU/RNN unless allow_rnn is set; the rest of forward then is one graph."""
    monkeypatch.setattr(torch._dynamo.config, "allow_rnn", True)
    torch._dynamo.reset()
    model = SequenceClassifier(3, 5, 4, num_layers=2, bidirectional=True, readout="mean").eval()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 6, 3), torch.tensor([6, 3]))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()


def _five_lines(path: Path, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The user's ONNX Runtime code of docs/deploying.md, without seqclf."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    classes = np.array(json.loads(session.get_modelmeta().custom_metadata_map["classes"]))
    (proba,) = session.run(["probabilities"], {"x": X, "lengths": lengths})
    labels: np.ndarray = classes[proba.argmax(axis=1)]
    return labels


@pytest.mark.parametrize(("layout", "model"), [(None, "lstm_fcn"), ("nct", "lstm"), ("ntc", "lstm")])
def test_a_fitted_estimator_exports_with_its_layout_and_labels(
    tmp_path: Path, one_thread: None, layout: str | None, model: str
) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is the optional extra seqclf[onnx]")
    pytest.importorskip("sklearn", reason="the estimator needs scikit-learn (seqclf[sklearn])")
    from seqclf.export import to_onnx
    from seqclf.sklearn import SequenceClassifierEstimator

    rng = np.random.default_rng(0)
    labels = np.array(["walk", "run", "sit"])[np.arange(30) % 3]
    sequences = [rng.normal(size=(2, int(rng.integers(4, 10)))) + (labels[i] == "run") for i in range(30)]  # (C, T_i)
    if layout == "ntc":
        sequences = [s.T for s in sequences]  # (T_i, C)
    clf = SequenceClassifierEstimator(layout=layout, model=model, hidden_size=6, min_steps=10,  # type: ignore[arg-type]
                                      random_state=0, device="cpu").fit(sequences, labels)
    path = to_onnx(clf, tmp_path / "clf.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "lengths"]
    assert session.get_inputs()[0].type == "tensor(double)"  # numpy's default float64 goes in as it is
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["classes"]) == ["run", "sit", "walk"] == clf.classes_.tolist()
    assert metadata["layout"] == ("ntc" if layout == "ntc" else "nct") and metadata["n_features_in"] == "2"
    assert metadata["kind"] == "SequenceClassifierEstimator"

    lengths = np.array([len(s) if layout == "ntc" else s.shape[1] for s in sequences])
    longest = int(lengths.max())
    padded = np.full((30, longest, 2) if layout == "ntc" else (30, 2, longest), 9.0)  # junk in the padding
    for i, s in enumerate(sequences):
        if layout == "ntc":
            padded[i, : len(s)] = s
        else:
            padded[i, :, : s.shape[1]] = s
    (proba,) = session.run(["probabilities"], {"x": padded, "lengths": lengths})
    np.testing.assert_allclose(proba, clf.predict_proba(sequences), atol=1e-5, rtol=0)
    assert np.array_equal(_five_lines(path, padded, lengths), clf.predict(sequences))
    with pytest.raises(Exception, match=r"expected: \(tensor\(double\)\)"):  # float32: ONNX Runtime names the type
        session.run(["probabilities"], {"x": padded.astype(np.float32), "lengths": lengths})


def test_estimator_export_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="ONNX export is the optional extra seqclf[onnx]")
    pytest.importorskip("sklearn", reason="the estimator needs scikit-learn (seqclf[sklearn])")
    from seqclf.export import to_onnx
    from seqclf.sklearn import SequenceClassifierEstimator

    with pytest.raises(ValueError, match=r"model must be a fitted SequenceClassifierEstimator \(call fit first\)"):
        to_onnx(SequenceClassifierEstimator(), tmp_path / "clf.onnx")
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, a fitted SequenceClassifierEstimator or a fitted "
                       r"TextClassifierEstimator; got str"):
        to_onnx("model.pt", tmp_path / "clf.onnx")
    x = np.random.default_rng(0).normal(size=(8, 1, 5))
    clf = SequenceClassifierEstimator(model="lstm", hidden_size=4, min_steps=2, random_state=0, device="cpu")
    clf.fit(x, np.arange(8) % 2)
    path = tmp_path / "clf.onnx"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists; refusing to overwrite it"):
        to_onnx(clf, path)
    assert path.read_bytes() == b"precious"
    assert to_onnx(clf, path, overwrite=True) == path and path.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.onnx"]


def _text_task() -> tuple[list[str], list[str]]:
    """Three classes by keyword among noise words, texts of 2 to 15 words, mixed case and punctuation."""
    rng = np.random.default_rng(0)
    noise = [f"w{i}" for i in range(12)]
    keyword = {"sport": "Goal", "politics": "VOTE", "weather": "rain!"}
    texts, labels = [], []
    for i in range(45):
        label = list(keyword)[i % 3]
        words = list(rng.choice(noise, int(rng.integers(1, 15))))
        words.insert(int(rng.integers(len(words) + 1)), keyword[label])
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


# unknown words, one-letter words and punctuation (no token), accents, a text with no token,
# and texts longer than max_length=8
_NEW_TEXTS = ["goal", "w1 vote, w2 VOTE w3", "a b c", "", "Café RAIN w4 w5 w6 w7 w8 w9 w10 w11 goal",
              "unknown words only", "w2 " * 20 + "vote", "rain"]


@pytest.fixture(scope="module")
def text_clf() -> Any:
    pytest.importorskip("sklearn", reason="the text estimator needs scikit-learn (seqclf[sklearn])")
    from seqclf.sklearn import TextClassifierEstimator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clf = TextClassifierEstimator(min_count=1, min_steps=30, max_length=8, random_state=0, device="cpu")
        return clf.fit(*_text_task())
    finally:
        torch.set_num_threads(threads)


def _tokenise_from_metadata(metadata: dict[str, str], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The user's tokenisation from the file's metadata alone, without seqclf or scikit-learn (docs/text.md)."""
    index = {token: i for i, token in enumerate(json.loads(metadata["vocabulary"])) if token is not None}
    unknown, max_length = int(metadata["unknown_id"]), int(metadata["max_length"])
    rows = []
    for text in texts:
        tokens = re.findall(metadata["token_pattern"], text.lower() if json.loads(metadata["lowercase"]) else text)
        rows.append([index.get(token, unknown) for token in tokens[:max_length]] or [unknown])
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    ids = np.full((len(rows), lengths.max()), int(metadata["padding_id"]), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return ids, lengths


def test_a_fitted_text_estimator_exports_with_its_labels_and_tokenisation(
    tmp_path: Path, one_thread: None, text_clf: Any
) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is the optional extra seqclf[onnx]")
    from seqclf.export import to_onnx
    from seqclf.vocabulary import Vocabulary

    path = to_onnx(text_clf, tmp_path / "text.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("x", "tensor(int64)"), ("lengths", "tensor(int64)")]
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["kind"] == "TextClassifierEstimator"
    assert json.loads(metadata["classes"]) == ["politics", "sport", "weather"] == text_clf.classes_.tolist()
    assert metadata["token_pattern"] == r"(?u)\b\w\w+\b" and metadata["lowercase"] == "true"
    assert (metadata["max_length"], metadata["unknown_id"], metadata["padding_id"]) == ("8", "1", "0")
    vocabulary = json.loads(metadata["vocabulary"])
    assert vocabulary[:2] == [None, None] and len(vocabulary) == len(text_clf.vocabulary_)
    assert Vocabulary(vocabulary[2:]) == text_clf.vocabulary_ and "goal" in vocabulary

    train, _ = _text_task()
    for texts in (_NEW_TEXTS, train, _NEW_TEXTS[4:5]):
        ids, lengths = _tokenise_from_metadata(metadata, texts)
        expected_ids, expected_lengths = text_clf.encode(texts)
        np.testing.assert_array_equal(ids, expected_ids.numpy())
        np.testing.assert_array_equal(lengths, expected_lengths.numpy())
        assert len(set(lengths.tolist())) > 1 or len(texts) == 1  # padded batches of different lengths
        (proba,) = session.run(["probabilities"], {"x": ids, "lengths": lengths})
        np.testing.assert_allclose(proba, text_clf.predict_proba(texts), atol=1e-5, rtol=0)
        junk = np.where(np.arange(ids.shape[1])[None, :] >= lengths[:, None], 5, ids)  # known ids in the padding
        (proba_junk,) = session.run(["probabilities"], {"x": junk, "lengths": lengths})
        np.testing.assert_allclose(proba_junk, proba, atol=1e-6, rtol=0)
        labels = np.array(json.loads(metadata["classes"]))[proba.argmax(axis=1)]
        np.testing.assert_array_equal(labels, text_clf.predict(texts))
    assert (text_clf.predict(train) == np.array(_text_task()[1])).mean() > 0.5  # it learnt something to compare


def test_text_estimator_export_refuses_what_it_cannot_write(tmp_path: Path, text_clf: Any) -> None:
    pytest.importorskip("onnx", reason="ONNX export is the optional extra seqclf[onnx]")
    from seqclf.export import to_onnx
    from seqclf.sklearn import TextClassifierEstimator

    with pytest.raises(ValueError, match=r"^model must be a fitted TextClassifierEstimator \(call fit first\); got an unfitted one$"):
        to_onnx(TextClassifierEstimator(), tmp_path / "text.onnx")
    odd = copy.copy(text_clf)
    odd.classes_ = np.array([1j, 2j, 3j])  # labels no JSON array can hold
    with pytest.raises(TypeError, match=r"^model\.classes_ must be str, int, float or bool labels to be exported; got \['complex'\]$"):
        to_onnx(odd, tmp_path / "text.onnx")
    assert not (tmp_path / "text.onnx").exists()
    path = tmp_path / "text.onnx"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists; refusing to overwrite it"):
        to_onnx(text_clf, path)
    assert path.read_bytes() == b"precious"
    assert to_onnx(text_clf, path, overwrite=True) == path and path.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.onnx"]


def test_without_onnx_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from seqclf.export import to_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'^to_onnx needs the onnx package, which is not installed: pip install onnx onnxruntime \(or, in a clone of seqclf, pip install -e "\.\[onnx\]"\)$'):
        to_onnx(SequenceClassifier(3, 8, 2), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
