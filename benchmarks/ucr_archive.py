"""seqclf's defaults across the UCR 2018 archive, beside MultiRocket-Hydra and published results.

Reads the archive's own layout (``DIR/<Name>/<Name>_TRAIN.tsv`` and ``_TEST.tsv``: the
label first, unequal lengths padded with NaN at the end) with aeon's
``load_from_tsv_file``, and for each data set, on its official train/test split, fits:

- ``default``: ``SequenceClassifierEstimator(layout="nct", random_state=seed)``, the
  estimator's defaults as a new user gets them;
- ``lstm``, ``lstm_fcn`` (and any other name the estimator's ``model=`` takes): the
  estimator with that model and its other defaults;
- ``mr_hydra``: aeon's ``MultiRocketHydraClassifier(n_jobs=1, random_state=seed)``
  (fit time measured after a warm-up fit in the same process, so numba's one-time
  compilation is not counted; unequal lengths are zero-padded at the end for it, as it
  takes equal lengths only).

A model may carry estimator overrides after a colon: ``default:min_steps=2000,lr=0.001``.
Beside them the table shows the published accuracies of InceptionTime and HIVE-COTE 2
(``HC2``) from the results files bundled in aeon (resample 0, the archive's own split).
It prints the table, the means, wins/ties/losses, the mean rank and the fit-time ratio
to MultiRocket-Hydra. Every fit runs on one thread (torch, numba and MR-Hydra alike);
``--jobs N`` runs N fits at once in separate processes.

Each finished fit is appended to ``--out`` (CSV) at once, so a stopped run resumes where
it stopped when started again with the same ``--out``::

    python benchmarks/ucr_archive.py --data-dir UCRArchive_2018 --published-only --seeds 3 --jobs 2
    python benchmarks/ucr_archive.py --data-dir UCRArchive_2018 --datasets ArrowHead Ham --models default mr_hydra
    python benchmarks/ucr_archive.py --data-dir UCRArchive_2018 --report    # the table of what finished

Needs ``aeon`` and scikit-learn (benchmark dependencies only).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread per fit, set before numpy, torch and numba load

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from concurrent.futures import Future, ProcessPoolExecutor  # noqa: E402
from concurrent.futures import wait as wait_for  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

PUBLISHED = ("InceptionTime", "HC2")
PEER = "mr_hydra"
DEFAULT_MODELS = ("default", "lstm", "lstm_fcn", PEER)
FIELDS = (
    "dataset", "model", "seed", "accuracy", "fit_s", "cpu_s", "n_train", "n_test", "length", "n_classes", "options",
)
TIE = 1e-6  # accuracies are stored to 6 decimals: closer than this is the same count of right answers


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class Split:
    """One data set's official split: series ``(n_channels, n_timepoints_i)`` and labels."""

    name: str
    x_train: list[np.ndarray]
    y_train: np.ndarray
    x_test: list[np.ndarray]
    y_test: np.ndarray

    @property
    def equal_length(self) -> bool:
        return len({s.shape[-1] for s in [*self.x_train, *self.x_test]}) == 1

    @property
    def length(self) -> int:
        return max(s.shape[-1] for s in [*self.x_train, *self.x_test])


def dataset_names(data_dir: Path) -> list[str]:
    """The data sets in ``data_dir`` (folders holding ``<Name>_TRAIN.tsv``), sorted."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir must be a folder of the UCR archive's layout; got {str(data_dir)!r}")
    return sorted(p.name for p in data_dir.iterdir() if (p / f"{p.name}_TRAIN.tsv").is_file())


def _trim(x: np.ndarray, name: str, part: str) -> list[np.ndarray]:
    """Series ``(1, T_i)`` without their NaN padding; NaN inside a series is refused."""
    out = []
    for i, series in enumerate(np.asarray(x, dtype=np.float64)):  # (C, T)
        valid = ~np.isnan(series).any(axis=0)  # (T,)
        length = int(valid.nonzero()[0].max()) + 1 if valid.any() else 0
        if length == 0 or not valid[:length].all():
            raise ValueError(
                f"{name} {part} series {i} must be NaN only as padding at its end (the archive's layout); "
                f"got {int((~valid[:length]).sum())} missing values inside a series of {length} steps"
            )
        out.append(series[:, :length])
    return out


def load_split(data_dir: Path, name: str) -> Split:
    """``DIR/<name>/<name>_TRAIN.tsv`` and ``_TEST.tsv``, read with aeon's ``load_from_tsv_file``."""
    from aeon.datasets import load_from_tsv_file

    parts = {}
    for part in ("TRAIN", "TEST"):
        path = data_dir / name / f"{name}_{part}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"data set {name!r} must have {path}; it is missing")
        x, y = load_from_tsv_file(str(path))  # x (n_cases, 1, n_timepoints), NaN-padded
        parts[part] = (_trim(x, name, part), np.asarray(y))
    return Split(name, parts["TRAIN"][0], parts["TRAIN"][1], parts["TEST"][0], parts["TEST"][1])


def published(name: str) -> dict[str, float]:
    """Published accuracies on the archive's own split (resample 0) from aeon's bundled results."""
    return {method: table[name] for method, table in _published_tables().items() if name in table}


_TABLES: dict[str, dict[str, float]] = {}


def _published_tables() -> dict[str, dict[str, float]]:
    if not _TABLES:
        import aeon

        folder = Path(aeon.__file__).parent / "testing" / "example_results_files" / "classification" / "accuracy"
        for method in PUBLISHED:
            with open(folder / f"{method}_accuracy.csv", newline="") as f:
                rows = [row for row in csv.reader(f) if row and row[0] != "Resamples:"]
            _TABLES[method] = {row[0]: float(row[1]) for row in rows}  # column 1: resample 0
    return _TABLES


# ------------------------------------------------------------------ models
def parse_model(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:key=value,key=value"`` as the name and its estimator overrides."""
    name, _, rest = spec.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--models entries must be NAME or NAME:key=value,...; got {spec!r}")
        overrides[key] = _value(value)
    if name == PEER and overrides:
        raise ValueError(f"{PEER!r} takes no overrides; got {spec!r}")
    return name, overrides


def _value(text: str) -> Any:
    special = {"True": True, "False": False, "None": None}
    if text in special:
        return special[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


_WARM: set[str] = set()


def _warm_up_mr_hydra() -> None:
    """One small fit, so that numba's compilation is not timed as the first data set's fit."""
    if PEER in _WARM:
        return
    from aeon.classification.convolution_based import MultiRocketHydraClassifier

    rng = np.random.default_rng(0)
    MultiRocketHydraClassifier(n_jobs=1, random_state=0).fit(rng.normal(size=(8, 1, 40)), np.arange(8) % 2)
    _WARM.add(PEER)


def _padded(series: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(series), series[0].shape[0], length))  # (N, C, T), zeros after each end
    for i, s in enumerate(series):
        out[i, :, : s.shape[-1]] = s
    return out


def fit_and_score(split: Split, spec: str, seed: int, min_steps: int | None) -> tuple[float, float, float]:
    """Accuracy on the test split, and the fit's wall and CPU seconds, of one model."""
    import torch

    torch.set_num_threads(1)
    name, overrides = parse_model(spec)
    if name == PEER:
        from aeon.classification.convolution_based import MultiRocketHydraClassifier

        _warm_up_mr_hydra()
        x_train, x_test = _padded(split.x_train, split.length), _padded(split.x_test, split.length)
        classifier: Any = MultiRocketHydraClassifier(n_jobs=1, random_state=seed)
    else:
        from seqclf.sklearn import SequenceClassifierEstimator

        params: dict[str, Any] = {"layout": "nct", "random_state": seed, "device": "cpu"}
        if name != "default":
            params["model"] = name
        if min_steps is not None and trained_by_gradient(name):
            params["min_steps"] = min_steps
        params.update(overrides)
        classifier = SequenceClassifierEstimator(**params)
        x_train, x_test = (
            (np.stack(split.x_train), np.stack(split.x_test)) if split.equal_length else (split.x_train, split.x_test)
        )
    started, cpu_started = time.perf_counter(), time.process_time()
    classifier.fit(x_train, split.y_train)
    fit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    accuracy = float(np.mean(classifier.predict(x_test) == split.y_test))
    return accuracy, fit_s, cpu_s


def trained_by_gradient(name: str) -> bool:
    """Whether seqclf's model ``name`` (``"default"``: the estimator's) trains by gradient, so takes ``min_steps``.

    A model fitted in closed form (the default ``Rocket``) has no training budget.
    """
    from seqclf.registry import model_entry
    from seqclf.sklearn import SequenceClassifierEstimator

    model = SequenceClassifierEstimator().model if name == "default" else name
    return not hasattr(model_entry(model).model_class, "fit_closed_form")


@dataclass(frozen=True)
class Task:
    data_dir: str
    dataset: str
    model: str
    seed: int
    min_steps: int | None

    @property
    def options(self) -> str:
        return "" if self.min_steps is None else f"min_steps={self.min_steps}"


def run_task(task: Task) -> dict[str, Any]:
    """One fit, as a CSV row."""
    split = load_split(Path(task.data_dir), task.dataset)
    accuracy, fit_s, cpu_s = fit_and_score(split, task.model, task.seed, task.min_steps)
    return {
        "dataset": task.dataset, "model": task.model, "seed": task.seed, "accuracy": f"{accuracy:.6f}",
        "fit_s": f"{fit_s:.2f}", "cpu_s": f"{cpu_s:.2f}", "n_train": len(split.y_train), "n_test": len(split.y_test),
        "length": split.length, "n_classes": len(np.unique(split.y_train)), "options": task.options,
    }


# ------------------------------------------------------------------ the CSV
def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV (none when it does not exist yet)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        if tuple(reader.fieldnames) != FIELDS:
            raise ValueError(f"--out {str(path)!r} must be a results CSV with columns {FIELDS}; "
                             f"got {tuple(reader.fieldnames)}: name another file")
        return [row for row in reader if all(row.get(k) is not None for k in FIELDS)]  # not a line cut by a kill


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row and flush it to disk, so a kill loses at most the fit in progress."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        if not new and not _ends_with_newline(path):
            f.write("\n")  # a line cut by a kill stays a line of its own, dropped when read
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# ------------------------------------------------------------------ the report
def _rank(values: list[float]) -> list[float]:
    """Rank 1 for the highest value; ties share their mean rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(values[order[j + 1]] - values[order[i]]) <= TIE:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def report(rows: Iterable[dict[str, str]], datasets: Sequence[str], models: Sequence[str]) -> str:
    """The archive table (markdown), means, wins/ties/losses, mean rank and fit-time ratios.

    Fit times are the fits' CPU seconds (one thread each): on a shared machine the work
    one core does, where wall time also counts the waits for a busy core.
    """
    acc: dict[tuple[str, str], list[float]] = {}
    fit: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        key = (row["dataset"], row["model"])
        acc.setdefault(key, []).append(float(row["accuracy"]))
        fit.setdefault(key, []).append(float(row["cpu_s"]))
    columns = [*models, *PUBLISHED]
    lines = ["| data set | " + " | ".join(columns) + " | " + " | ".join(f"fit CPU s {m}" for m in models) + " |",
             "|---" * (1 + len(columns) + len(models)) + "|"]
    table: dict[str, dict[str, float]] = {}
    for d in datasets:
        pub = published(d)
        cells, fits, values = [], [], {}
        for m in models:
            a = acc.get((d, m), [])
            if a:
                values[m] = statistics.mean(a)
                sd = f" ± {statistics.stdev(a):.3f}" if len(a) > 1 else ""
                cells.append(f"{values[m]:.3f}{sd} ({len(a)})")
                fits.append(f"{statistics.mean(fit[(d, m)]):.1f}")
            else:
                cells.append("—")
                fits.append("—")
        for p in PUBLISHED:
            cells.append(f"{pub[p]:.3f}" if p in pub else "—")
            if p in pub:
                values[p] = pub[p]
        lines.append(f"| {d} | " + " | ".join(cells) + " | " + " | ".join(fits) + " |")
        table[d] = values
    complete = [d for d in datasets if all(m in table[d] for m in models)]
    lines.append("")
    lines.append(f"Data sets with every model's results: {len(complete)} of {len(datasets)}"
                 + ("" if len(complete) == len(datasets) else
                    f" (missing: {', '.join(d for d in datasets if d not in complete)})"))
    if not complete:
        return "\n".join(lines)
    unpublished = [d for d in complete if not all(p in table[d] for p in PUBLISHED)]
    if unpublished:
        columns = list(models)
        lines.append(f"No published results for {', '.join(unpublished)}: the summary compares the models run only.")
    ranks = {c: 0.0 for c in columns}
    for d in complete:
        for c, r in zip(columns, _rank([table[d][c] for c in columns]), strict=True):
            ranks[c] += r / len(complete)
    lines.append("")
    lines.append("| | " + " | ".join(columns) + " |")
    lines.append("|---" * (1 + len(columns)) + "|")
    lines.append("| mean accuracy | " + " | ".join(f"{statistics.mean(table[d][c] for d in complete):.4f}"
                                                  for c in columns) + " |")
    lines.append("| mean rank | " + " | ".join(f"{ranks[c]:.2f}" for c in columns) + " |")
    lines.append("")
    lines.append("Wins/ties/losses of the row against the column (mean accuracy over seeds):")
    lines.append("")
    lines.append("| | " + " | ".join(columns) + " |")
    lines.append("|---" * (1 + len(columns)) + "|")
    for m in models:
        cells = []
        for c in columns:
            if c == m:
                cells.append("")
                continue
            diffs = [table[d][m] - table[d][c] for d in complete]
            wins, ties = sum(x > TIE for x in diffs), sum(abs(x) <= TIE for x in diffs)
            cells.append(f"{wins}/{ties}/{len(diffs) - wins - ties}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| model | median fit CPU s | max fit CPU s "
                 "| fit-time ratio to mr_hydra (median of data sets; of totals) |")
    lines.append("|---|---|---|---|")
    for m in models:
        means = {d: statistics.mean(fit[(d, m)]) for d in complete}
        ratio = "—"
        if PEER in models and m != PEER:
            peer = {d: statistics.mean(fit[(d, PEER)]) for d in complete}
            per = statistics.median(means[d] / max(peer[d], 1e-9) for d in complete)
            ratio = f"{per:.2f}; {sum(means.values()) / max(sum(peer.values()), 1e-9):.2f}"
        lines.append(f"| {m} | {statistics.median(means.values()):.1f} | {max(means.values()):.1f} | {ratio} |")
    lines.append("")
    for m in models if not unpublished else ():
        gap = {d: table[d][m] - table[d]["InceptionTime"] for d in complete}
        worst = min(gap, key=gap.__getitem__)
        far = sum(g < -0.10 for g in gap.values())
        lines.append(f"- {m}: largest shortfall below InceptionTime {gap[worst]:+.3f} ({worst}); "
                     f"{far} data sets more than 0.10 below")
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a folder of the archive's layout")
    parser.add_argument("--datasets", nargs="+", help="names of data sets (default: every one in --data-dir)")
    parser.add_argument("--published-only", action="store_true",
                        help="only data sets with published InceptionTime and HC2 results in aeon")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="default, lstm, lstm_fcn, mr_hydra, or NAME:key=value,... (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="fits at once, one thread each (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("ucr_archive.csv"), help="results CSV (default: %(default)s)")
    parser.add_argument("--min-steps", type=int,
                        help="the training budget of seqclf's models trained by gradient (tiny: a smoke test)")
    parser.add_argument("--report", action="store_true", help="print the table of --out; fit nothing")
    args = parser.parse_args(argv)
    for flag in ("seeds", "jobs", "min_steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive int; got {value}")
    for spec in args.models:
        try:
            parse_model(spec)
        except ValueError as error:
            parser.error(str(error))
    try:
        available = dataset_names(args.data_dir)
    except FileNotFoundError as error:
        parser.error(str(error))
    datasets = args.datasets or available
    missing = [d for d in datasets if d not in available]
    if missing:
        parser.error(f"--datasets must name folders of {args.data_dir}; not there: {missing}")
    if args.published_only:
        datasets = [d for d in datasets if all(p in published(d) for p in PUBLISHED)]
    try:
        rows = read_rows(args.out)
    except ValueError as error:
        parser.error(str(error))
    budget = {m: args.min_steps if m != PEER and trained_by_gradient(parse_model(m)[0]) else None for m in args.models}
    tasks = [Task(str(args.data_dir), d, m, s, budget[m]) for d in datasets for m in args.models
             for s in range(args.seeds)]
    done = {(r["dataset"], r["model"], int(r["seed"])): r["options"] for r in rows}
    clashes = [t for t in tasks if done.get((t.dataset, t.model, t.seed), t.options) != t.options]
    if clashes:
        t = clashes[0]
        parser.error(f"--out {str(args.out)!r} holds {t.dataset}/{t.model}/seed {t.seed} run with options "
                     f"{done[(t.dataset, t.model, t.seed)]!r}; this run's are {t.options!r}: name another --out")
    todo = [t for t in tasks if (t.dataset, t.model, t.seed) not in done]
    failures = 0
    if not args.report:
        print(f"{len(tasks) - len(todo)} of {len(tasks)} fits already in {args.out}; {len(todo)} to run", flush=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            pending: dict[Future[dict[str, Any]], Task] = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < args.jobs:  # submit as slots free: a kill loses only running fits
                    task = queue.pop(0)
                    pending[pool.submit(run_task, task)] = task
                finished, _ = wait_for(pending, return_when="FIRST_COMPLETED")
                for future in finished:
                    task = pending.pop(future)
                    try:
                        row = future.result()
                    except Exception as error:  # one data set's failure is reported, the others still run
                        failures += 1
                        print(f"FAILED {task.dataset} {task.model} seed {task.seed}: {type(error).__name__}: {error}",
                              file=sys.stderr, flush=True)
                        continue
                    append_row(args.out, row)
                    rows.append({k: str(v) for k, v in row.items()})
                    print(f"  {row['dataset']:<30} {row['model']:<24} seed {row['seed']}  acc {row['accuracy']}  "
                          f"fit {row['fit_s']:>8}s (CPU {row['cpu_s']:>8}s)", flush=True)
    print()
    print(report(rows, datasets, args.models))
    if failures:
        print(f"\n{failures} fits failed (see above); they run again when this command is repeated", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

