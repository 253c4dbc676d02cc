"""TextClassifierEstimator: raw strings in, original labels out; sklearn's protocols; one safe file; ONNX."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

import seqclf
from seqclf.serialization import SerializationError
from seqclf.sklearn import TextClassifierEstimator

QUICK = {"min_steps": 20, "min_epochs": 2, "hidden_size": 16, "embedding_dim": 16, "device": "cpu", "random_state": 0}


def keyword_task(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Sports or politics by one keyword among filler words; labels are strings."""
    rng = np.random.default_rng(seed)
    filler = [f"word{i}" for i in range(30)]
    texts, labels = [], []
    for _ in range(n):
        label = str(rng.choice(["sport", "politics"]))
        words = list(rng.choice(filler, int(rng.integers(3, 12))))
        words.insert(int(rng.integers(len(words) + 1)), "goal" if label == "sport" else "vote")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels)


def order_task(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Class = which of the words "alpha" and "omega" comes first among noise words: the same bag of words either way."""
    rng = np.random.default_rng(seed)
    noise = [f"noise{i}" for i in range(16)]
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(noise, int(rng.integers(6, 16))))
        i, j = sorted(rng.choice(len(words), 2, replace=False))
        label = int(rng.integers(2))
        words[i], words[j] = ("alpha", "omega") if label == 0 else ("omega", "alpha")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels)


@pytest.fixture(scope="module")
def fitted() -> TextClassifierEstimator:
    texts, labels = keyword_task(200, 0)
    return TextClassifierEstimator(**{**QUICK, "min_steps": 150}).fit(texts, labels)


def test_fits_strings_and_returns_the_original_labels(fitted: TextClassifierEstimator) -> None:
    texts, labels = keyword_task(100, 1)
    assert fitted.classes_.tolist() == ["politics", "sport"]
    assert set(fitted.predict(texts)) <= {"politics", "sport"}
    proba = fitted.predict_proba(texts)
    assert proba.shape == (100, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert fitted.score(texts, labels) >= 0.95
    assert fitted.predict(["", "no known words here"]).shape == (2,)  # one unknown id each


def test_the_order_task_defeats_a_bag_of_words_but_not_the_token_model(one_thread: None) -> None:
    x_train, y_train = order_task(800, 0)
    x_test, y_test = order_task(400, 1)
    vectorizer = TfidfVectorizer()
    bag = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(x_train), y_train)
    bag_accuracy = bag.score(vectorizer.transform(x_test), y_test)
    assert bag_accuracy < 0.6  # at chance: both classes hold the same words
    clf = TextClassifierEstimator(random_state=0, device="cpu").fit(x_train, y_train)
    assert clf.score(x_test, y_test) >= 0.95


def test_clone_and_grid_search() -> None:
    texts, labels = keyword_task(80, 2)
    estimator = TextClassifierEstimator(**QUICK)
    assert clone(estimator).get_params() == estimator.get_params()
    search = GridSearchCV(estimator, {"hidden_size": [8, 16]}, cv=2).fit(texts, labels)
    assert search.best_params_["hidden_size"] in (8, 16)
    assert search.predict(texts[:3]).shape == (3,)


def test_save_load_one_safe_file(fitted: TextClassifierEstimator, tmp_path: Path) -> None:
    texts, _ = keyword_task(20, 3)
    path = fitted.save(tmp_path / "clf.safetensors")
    _, metadata = seqclf.serialization.load_safetensors(path)  # plain safetensors: no pickle anywhere
    assert metadata["format"] == "seqclf-text-estimator" and "vocabulary" in metadata
    loaded = TextClassifierEstimator.load(path)
    assert loaded.get_params() == fitted.get_params() and loaded.vocabulary_ == fitted.vocabulary_
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))
    assert loaded.classes_.tolist() == fitted.classes_.tolist()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        fitted.save(path)
    fitted.save(path, overwrite=True)
    seqclf.SequenceClassifier(3, 4, 2).save(tmp_path / "model.safetensors")
    with pytest.raises(SerializationError, match=r"must be a file written by TextClassifierEstimator\.save"):
        TextClassifierEstimator.load(tmp_path / "model.safetensors")


def test_the_ngram_bag_beside_the_token_model_and_without_it(fitted: TextClassifierEstimator, tmp_path: Path) -> None:
    texts, _ = keyword_task(30, 6)
    assert isinstance(fitted.ngram_model_, seqclf.ngram_bag.NgramBag) and fitted.ngram_model_.ngrams == 2
    x, lengths = fitted.encode(texts)
    with torch.no_grad():
        mean = (fitted.model_(x, lengths).softmax(1) + fitted.ngram_model_(x, lengths).softmax(1)) / 2
    np.testing.assert_allclose(fitted.predict_proba(texts), mean.double().numpy(), atol=1e-6)
    alone = TextClassifierEstimator(**{**QUICK, "ngrams": 0}).fit(*keyword_task(60, 7))
    assert alone.ngram_model_ is None and alone.inference_model() is alone.model_
    with torch.no_grad():
        expected = alone.model_(*alone.encode(texts)).softmax(1).double().numpy()
    np.testing.assert_allclose(alone.predict_proba(texts), expected, atol=1e-6)
    # a file written before the n-gram bag existed: no ``ngrams`` among its hyperparameters
    path = alone.save(tmp_path / "old.safetensors")
    tensors, metadata = seqclf.serialization.load_safetensors(path)
    params = json.loads(metadata["params"])
    del params["ngrams"]
    seqclf.serialization.save_safetensors(
        tensors, tmp_path / "older.safetensors", metadata={**metadata, "params": json.dumps(params)}
    )
    older = TextClassifierEstimator.load(tmp_path / "older.safetensors")
    assert older.ngrams == 0 and older.ngram_model_ is None
    np.testing.assert_array_equal(older.predict_proba(texts), alone.predict_proba(texts))


@pytest.mark.parametrize("ngrams", [-1, 1.5, True])
def test_a_bad_ngrams_is_refused_before_training(ngrams: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"ngrams must be an int >= 0 (0: no n-gram bag); got {ngrams!r}")):
        TextClassifierEstimator(**{**QUICK, "ngrams": ngrams, "min_steps": 10**9}).fit(*keyword_task(20, 8))


def test_integer_labels_and_exported_model_through_onnx_runtime(fitted: TextClassifierEstimator, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the ONNX test needs onnxruntime (seqclf[onnx])")
    texts, _ = keyword_task(30, 4)
    path = seqclf.export.to_onnx(fitted, tmp_path / "text.onnx")  # both models: the token model and the bag
    session = ort.InferenceSession(str(path))
    ids, lengths = fitted.encode(texts)  # the tokenisation step, beside the exported model
    (proba,) = session.run(None, {"x": ids.numpy(), "lengths": lengths.numpy()})
    np.testing.assert_allclose(proba, fitted.predict_proba(texts), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(fitted.classes_[proba.argmax(axis=1)], fitted.predict(texts))


def test_any_labels(one_thread: None) -> None:
    texts, labels = keyword_task(60, 5)
    numeric = np.where(labels == "sport", 7, -3)
    clf = TextClassifierEstimator(**QUICK).fit(texts, numeric)
    assert clf.classes_.tolist() == [-3, 7] and set(clf.predict(texts)) <= {-3, 7}


def test_verbose_lines_history_and_silence_by_default(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    texts, labels = keyword_task(40, 6)
    with caplog.at_level(logging.INFO, logger="seqclf"):
        quiet = TextClassifierEstimator(**QUICK).fit(texts, labels)
        assert not [r for r in caplog.records if r.name == "seqclf.sklearn"] and capsys.readouterr().err == ""
        assert len(quiet.history_) >= 2 and quiet.best_epoch_ == quiet.history_[-1]["epoch"]
        TextClassifierEstimator(**QUICK, verbose=1).fit(texts, labels)
    lines = [r.getMessage() for r in caplog.records if r.name == "seqclf.sklearn"]
    assert lines[0].startswith("fitting on 40 texts (up to ")
    assert lines[1].startswith("epoch 1/") and lines[-2].startswith("fit done (")
    assert lines[-1] == "fitted a bag of words and 2-grams beside the token model"  # ngrams=2, the default
    TextClassifierEstimator(**QUICK, verbose=2).fit(texts, labels)
    assert "epoch 1/" in capsys.readouterr().err  # the progress bar


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        ("one text", ["a"], TypeError, "X must be a list or 1-D array of str .*got str"),
        (["fine", 3], ["a", "b"], TypeError, r"X\[1\] must be a str; got int 3"),
        ([], [], ValueError, "X must hold at least one text; got 0"),
        (["a b", "c d"], ["x"], ValueError, r"y must have one label per text of X \(2\); got 1"),
        (["a b", "c d"], ["x", "x"], ValueError, "at least two classes"),
    ],
)
def test_bad_input_names_the_argument(X: object, y: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TextClassifierEstimator(**QUICK).fit(X, y)


def test_unfitted_predict_is_refused() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TextClassifierEstimator().predict(["text"])
    assert torch.get_num_threads() >= 1


def test_the_text_page_runs_and_its_printed_labels_are_right(
    capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    pytest.importorskip("onnxruntime", reason="the page exports to ONNX (seqclf[onnx])")
    page = Path(__file__).resolve().parents[1] / "docs" / "text.md"
    namespace: dict[str, object] = {}
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
        exec(compile(block, f"text.md block {number}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "['good first' 'bad first']" and out[-1] == "['good first' 'bad first']"
    assert "True 100" in out
    assert "torch.Size([2, 2]) 48" in out  # the bag of words adds input_size features
