"""Choosing the text estimator's defaults on development corpora that the text benchmark does not use.

The defaults of :class:`seqclf.sklearn.TextClassifierEstimator` must work on a corpus they
have not seen, so they are chosen here, on three corpora of different text lengths built
from Debian packages, and only then measured on BBC News (``benchmarks/text.py``):

- ``fortunes``: short texts (a few dozen words). Debian's ``fortunes`` package
  (``apt-get install fortunes``): each file under ``/usr/share/games/fortunes`` is a
  category and its fortunes are separated by lines holding only ``%``. The categories
  with at least 500 fortunes are the classes; 200 fortunes of each are drawn (seed 0).
- ``manpages``: long texts (hundreds to thousands of words). The English manual pages
  installed under ``/usr/share/man/man<section>``, the section being the class (sections
  1, 2, 3, 5, 7 and 8); the roff markup is stripped, as are the ``.TH`` title line (it
  names the section) and pages under 50 words; 100 pages of each section are drawn
  (seed 0).
- ``packages``: texts of a paragraph or two (median about 60 words). The English
  descriptions of Debian's packages (the ``Translation-en`` index that ``apt-get update -o
  Acquire::Languages=en`` fetches), the archive section as the class (12 topical sections:
  admin, database, editors, games, graphics, mail, math, net, science, sound, text, web;
  a description shared by several packages is taken once, none under 20 words); 200
  descriptions of each section are drawn (seed 0).

Build the corpora once (they are written as ``DIR/<corpus>/<class>/<n>.txt``), then run::

    apt-get update -o Acquire::Languages=en
    apt-get install fortunes
    python benchmarks/text_dev.py prepare --out DIR
    python benchmarks/text_dev.py run --data-dir DIR --corpora fortunes manpages packages --seeds 3 > run.log
    python benchmarks/text_dev.py summarise run.log

(``summarise`` also joins the logs of runs split by corpus or candidate, and of a run
cut short, comparing each setting with TF-IDF + logistic regression on the seeds it
finished.)

Each seed draws a stratified 75/25 split; on each split the candidate settings of the
text estimator and scikit-learn's TF-IDF + ``LogisticRegression`` are fitted side by side.
Prints accuracy (mean ± sd over seeds), the mean gap to TF-IDF + logistic regression and
fit CPU seconds (median) per candidate and corpus, then the candidates ranked by the gap
averaged over the corpora.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import os
import platform
import random
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

FORTUNES = Path("/usr/share/games/fortunes")
MAN = Path("/usr/share/man")
MAN_SECTIONS = ("1", "2", "3", "5", "7", "8")

# Settings that differ from the estimator's constructor defaults; "defaults" is the
# estimator as it stands. Each alternative changes one thing (or the cost budget) from the
# settings chosen on BBC News before this comparison, so that a gain can be traced.
BBC_CHOSEN: dict[str, Any] = {
    "cell": "gru", "bidirectional": True, "readout": "max", "max_length": 400,
    "min_epochs": 12, "lr": 5e-3, "embedding_dim": 64, "val_fraction": 0.0, "ngrams": 0,
}
CANDIDATES: dict[str, dict[str, Any]] = {
    "bbc-chosen": {},
    "len200": {"max_length": 200},
    "len800": {"max_length": 800},
    "mean": {"readout": "mean"},
    "lstm": {"cell": "lstm"},
    "uni-gru": {"bidirectional": False},
    "epochs6": {"min_epochs": 6},
    "lr2e-3": {"lr": 2e-3},
    # second round, from the first round's choice (len800): a bag of words beside the GRU,
    # and that with an LSTM (about half the GRU's cost)
    "len800-bag": {"max_length": 800, "bag": True},
    "len800-bag-lstm": {"max_length": 800, "bag": True, "cell": "lstm"},
    # third round: dropout before the head (regularising a model of ~1M weights fitted on
    # a few thousand texts), with the GRU and with the cheaper LSTM
    "len800-drop": {"max_length": 800, "dropout": 0.5},
    "len800-drop-lstm": {"max_length": 800, "dropout": 0.5, "cell": "lstm"},
    # fourth round: a fastText-style bag of words and bigrams fitted beside the token model,
    # the two models' probabilities averaged (ngrams=2); with the GRU, and cheaper forms of
    # it (an LSTM, half the epochs, half the hidden units)
    "ngrams": {"max_length": 800, "ngrams": 2},
    "ngrams-lstm": {"max_length": 800, "ngrams": 2, "cell": "lstm"},
    "ngrams-epochs6": {"max_length": 800, "ngrams": 2, "min_epochs": 6},
    "ngrams-h32": {"max_length": 800, "ngrams": 2, "hidden_size": 32},
}


# ------------------------------------------------------------------ corpora
def _fortunes(rng: random.Random, per_class: int = 200, min_size: int = 500) -> dict[str, list[str]]:
    corpus = {}
    for path in sorted(p for p in FORTUNES.iterdir() if p.is_file() and "." not in p.name):
        items = [t.strip() for t in re.split(r"^%$", path.read_text("utf-8", errors="replace"), flags=re.M)]
        items = [t for t in items if t]
        if len(items) >= min_size:
            corpus[path.name] = rng.sample(items, per_class)
    return corpus


_ESCAPE = re.compile(r"\\(f[BIRPC]|f\(..|f\[[^]]*\]|\(..|\*\(..|\*.|\[[^]]*\]|s[-+]?\d|&|-|e|\||\^)")


def _strip_roff(source: str) -> str:
    lines = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", ".TH", ".so")):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            line = parts[1] if len(parts) > 1 else ""  # the macro's arguments
        lines.append(_ESCAPE.sub(" ", line))
    return "\n".join(lines)


def _manpages(rng: random.Random, per_class: int = 100, min_words: int = 50) -> dict[str, list[str]]:
    corpus = {}
    for section in MAN_SECTIONS:
        pages = []
        for path in sorted((MAN / f"man{section}").glob("*.gz")):
            if path.is_symlink():
                continue
            text = _strip_roff(gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace"))
            if len(text.split()) >= min_words:
                pages.append(text)
        corpus[section] = rng.sample(pages, min(per_class, len(pages)))
    return corpus


PACKAGE_SECTIONS = (
    "admin", "database", "editors", "games", "graphics", "mail", "math", "net", "science", "sound", "text", "web",
)


def _paragraphs(text: str) -> list[dict[str, str]]:
    """The fields of each paragraph of a Debian control file (continuation lines joined)."""
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        found.append(fields)
    return found


def _packages(rng: random.Random, per_class: int = 200, min_words: int = 20) -> dict[str, list[str]]:
    """Debian package descriptions (the English long descriptions), the archive section as the class."""
    sections = {
        p["Description-md5"]: p["Section"].split("/")[-1]
        for p in _paragraphs(subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True).stdout)
        if "Description-md5" in p and "Section" in p
    }
    lists = sorted(Path("/var/lib/apt/lists").glob("*_main_i18n_Translation-en*"))
    if not lists:
        raise SystemExit("no Translation-en under /var/lib/apt/lists: run `apt-get update -o Acquire::Languages=en`")
    texts: dict[str, set[str]] = collections.defaultdict(set)  # a set: split packages share one description
    for path in lists:
        helper = ["/usr/lib/apt/apt-helper", "cat-file", str(path)]
        for p in _paragraphs(subprocess.run(helper, capture_output=True, text=True, check=True).stdout):
            section = sections.get(p.get("Description-md5", ""))
            text = p.get("Description-en", "").replace("\n.\n", "\n\n")
            if section in PACKAGE_SECTIONS and len(text.split()) >= min_words:
                texts[section].add(text)
    return {s: rng.sample(sorted(texts[s]), min(per_class, len(texts[s]))) for s in PACKAGE_SECTIONS}


def prepare(out: Path) -> None:
    for name, build in (("fortunes", _fortunes), ("manpages", _manpages), ("packages", _packages)):
        corpus = build(random.Random(0))
        for label, texts in corpus.items():
            folder = out / name / label
            folder.mkdir(parents=True, exist_ok=True)
            for i, text in enumerate(texts):
                (folder / f"{i:04d}.txt").write_text(text, "utf-8")
        words = [len(t.split()) for texts in corpus.values() for t in texts]
        print(
            f"{name}: {len(words)} texts, {len(corpus)} classes ({', '.join(corpus)}); "
            f"words per text median {statistics.median(words):.0f}, mean {statistics.mean(words):.0f}"
        )


def load(folder: Path) -> tuple[list[str], np.ndarray]:
    paths = sorted(folder.glob("*/*.txt"))
    if not paths:
        raise SystemExit(f"{folder} holds no <class>/*.txt; build the corpora with `prepare` first")
    return [p.read_text("utf-8") for p in paths], np.asarray([p.parent.name for p in paths])


# ------------------------------------------------------------------ runs
def run(data_dir: Path, corpora: list[str], seeds: range, names: list[str]) -> None:
    from seqclf.sklearn import TextClassifierEstimator

    acc: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    cpu: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for corpus in corpora:
        texts, labels = load(data_dir / corpus)
        for seed in seeds:
            x_train, x_test, y_train, y_test = train_test_split(
                texts, labels, test_size=0.25, stratify=labels, random_state=seed
            )
            for name in ["tfidf+lr", *names]:
                started = time.process_time()
                if name == "tfidf+lr":
                    vectorizer = TfidfVectorizer()
                    lr = LogisticRegression(max_iter=1000, random_state=seed)
                    lr.fit(vectorizer.fit_transform(x_train), y_train)
                    predicted = lr.predict(vectorizer.transform(x_test))
                else:
                    params = {**BBC_CHOSEN, **CANDIDATES[name]}
                    clf = TextClassifierEstimator(**params, random_state=seed, device="cpu").fit(x_train, y_train)
                    predicted = clf.predict(x_test)
                cpu[corpus, name].append(time.process_time() - started)
                acc[corpus, name].append(float(np.mean(predicted == y_test)))
                print(
                    f"{corpus} seed {seed} {name:<10} accuracy {acc[corpus, name][-1]:.4f} "
                    f"fit+predict {cpu[corpus, name][-1]:.1f} CPU s  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    print(f"\nseeds {seeds.start}-{seeds.stop - 1}; load {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| corpus | setting | accuracy (mean ± sd) | gap to tfidf+lr | fit+predict CPU s, median |")
    print("| --- | --- | --- | --- | --- |")
    gaps: dict[str, list[float]] = collections.defaultdict(list)
    for corpus in corpora:
        base = statistics.mean(acc[corpus, "tfidf+lr"])
        for name in ["tfidf+lr", *names]:
            a = acc[corpus, name]
            sd = statistics.stdev(a) if len(a) > 1 else 0.0
            gap = statistics.mean(a) - base
            if name != "tfidf+lr":
                gaps[name].append(gap)
            print(
                f"| {corpus} | {name} | {statistics.mean(a):.4f} ± {sd:.4f} | {gap:+.4f} "
                f"| {statistics.median(cpu[corpus, name]):.1f} |"
            )
    print("\nranked by the gap to tfidf+lr averaged over the corpora:")
    for name in sorted(gaps, key=lambda n: -statistics.mean(gaps[n])):
        print(f"  {name:<10} {statistics.mean(gaps[name]):+.4f}")


_LINE = re.compile(r"^(\S+) seed (\d+) (\S+)\s+accuracy ([\d.]+) fit\+predict ([\d.]+) CPU s")


def summarise(logs: list[Path]) -> None:
    """The tables of ``run`` from the per-fit lines of its logs (several runs, or a run cut short: each setting is
    compared with TF-IDF + logistic regression on the seeds it finished)."""
    acc: dict[tuple[str, str], dict[int, float]] = collections.defaultdict(dict)
    cpu: dict[tuple[str, str], dict[int, float]] = collections.defaultdict(dict)
    for log in logs:
        for line in log.read_text().splitlines():
            if match := _LINE.match(line):
                corpus, seed, name, a, c = match.groups()
                acc[corpus, name][int(seed)] = float(a)
                cpu[corpus, name][int(seed)] = float(c)
    corpora = sorted({corpus for corpus, _ in acc})
    gaps: dict[str, list[float]] = collections.defaultdict(list)
    print("| corpus | setting | seeds | accuracy (mean ± sd) | gap to tfidf+lr | fit+predict CPU s, median |")
    print("| --- | --- | --- | --- | --- | --- |")
    for corpus in corpora:
        names = sorted((n for c, n in acc if c == corpus), key=lambda n: (n != "tfidf+lr", n))
        for name in names:
            seeds = sorted(acc[corpus, name])
            base = statistics.mean(acc[corpus, "tfidf+lr"][s] for s in seeds)  # on the same splits
            a = [acc[corpus, name][s] for s in seeds]
            sd = statistics.stdev(a) if len(a) > 1 else 0.0
            gap = statistics.mean(a) - base
            if name != "tfidf+lr":
                gaps[name].append(gap)
            used = statistics.median(cpu[corpus, name][s] for s in seeds)
            print(
                f"| {corpus} | {name} | {len(seeds)} | {statistics.mean(a):.4f} ± {sd:.4f} | {gap:+.4f} | {used:.1f} |"
            )
    print("\nranked by the gap to tfidf+lr averaged over the corpora (settings measured on every corpus):")
    complete = [n for n in gaps if len(gaps[n]) == len(corpora)]
    for name in sorted(complete, key=lambda n: -statistics.mean(gaps[n])):
        print(f"  {name:<10} {statistics.mean(gaps[name]):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build the corpora from the installed Debian files")
    prep.add_argument("--out", type=Path, required=True)
    go = sub.add_parser("run", help="compare the candidate settings")
    go.add_argument("--data-dir", type=Path, required=True)
    go.add_argument("--corpora", nargs="+", default=["fortunes", "manpages", "packages"])
    go.add_argument("--seeds", type=int, default=3)
    go.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    go.add_argument("--threads", type=int, default=1)
    tables = sub.add_parser("summarise", help="the tables from the logs of one or more runs")
    tables.add_argument("logs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "summarise":
        summarise(args.logs)
        return
    if args.command == "prepare":
        prepare(args.out)
        return
    torch.set_num_threads(args.threads)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} torch thread(s)")
    run(args.data_dir, args.corpora, range(args.seeds), args.candidates)


if __name__ == "__main__":
    main()
