"""benchmarks/ucr_archive.py on a tiny archive-layout folder written here: reading, running, resuming."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("aeon", reason="the archive harness reads the archive with aeon")
pytest.importorskip("sklearn", reason="the archive harness fits seqclf's scikit-learn estimator")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ucr_archive.py"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ucr_archive_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the worker processes unpickle its Task by module name
    spec.loader.exec_module(module)
    return module


def write_tsv(path: Path, labels: list[str], series: list[np.ndarray], width: int) -> None:
    with open(path, "w") as f:
        for label, s in zip(labels, series, strict=True):
            padded = np.full(width, np.nan)
            padded[: len(s)] = s
            f.write(label + "\t" + "\t".join("NaN" if np.isnan(v) else f"{v:.6f}" for v in padded) + "\n")


def tiny_set(root: Path, name: str, lengths_train: list[int], lengths_test: list[int]) -> None:
    """Two classes: a rising or a falling ramp with noise; NaN padding where lengths differ."""
    rng = np.random.default_rng(len(name))
    folder = root / name
    folder.mkdir(parents=True)
    width = max(lengths_train + lengths_test)
    for part, lengths in (("TRAIN", lengths_train), ("TEST", lengths_test)):
        labels = [str(1 + i % 2) for i in range(len(lengths))]
        series = [np.linspace(-1, 1, n) * (1 if label == "1" else -1) + 0.1 * rng.normal(size=n)
                  for label, n in zip(labels, lengths, strict=True)]
        write_tsv(folder / f"{name}_{part}.tsv", labels, series, width)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    tiny_set(root, "Equal", [16] * 12, [16] * 8)
    tiny_set(root, "Unequal", [10, 16, 12, 16, 9, 14, 16, 11, 13, 16], [16, 8, 12, 15, 10, 16])
    (root / "NotADataSet").mkdir()  # a folder without <Name>_TRAIN.tsv is not listed
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_reads_the_archive_layout_and_trims_the_nan_padding(harness: ModuleType, archive: Path) -> None:
    assert harness.dataset_names(archive) == ["Equal", "Unequal"]
    split = harness.load_split(archive, "Unequal")
    assert [s.shape for s in split.x_train[:3]] == [(1, 10), (1, 16), (1, 12)]
    assert [s.shape[-1] for s in split.x_test] == [16, 8, 12, 15, 10, 16]
    assert not any(np.isnan(s).any() for s in split.x_train + split.x_test)
    assert split.y_train.tolist()[:2] == [1, 2] and not split.equal_length and split.length == 16
    assert harness.load_split(archive, "Equal").equal_length


def test_a_gap_inside_a_series_is_refused_with_its_place(harness: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "Gappy"
    folder.mkdir()
    write_tsv(folder / "Gappy_TRAIN.tsv", ["1", "2"], [np.array([0.0, np.nan, 1.0]), np.ones(3)], 3)
    write_tsv(folder / "Gappy_TEST.tsv", ["1", "2"], [np.zeros(3), np.ones(3)], 3)
    with pytest.raises(ValueError, match=r"Gappy TRAIN series 0 must be NaN only as padding at its end.*got 1"):
        harness.load_split(tmp_path, "Gappy")


def test_published_results_come_from_aeons_files(harness: ModuleType) -> None:
    gunpoint = harness.published("GunPoint")
    assert set(gunpoint) == {"InceptionTime", "HC2"} and gunpoint["InceptionTime"] == 1.0
    assert harness.published("ArrowHead")["InceptionTime"] == pytest.approx(0.8628571428571429)
    assert harness.published("NoSuchDataSet") == {}


def test_ranks_share_ties(harness: ModuleType) -> None:
    assert harness._rank([0.9, 0.8, 0.9, 0.7]) == [1.5, 3.0, 1.5, 4.0]
    assert harness._rank([0.985423, 0.9854227405247813]) == [1.5, 1.5]  # 6 stored decimals against a published value


def test_model_specs_parse_and_bad_ones_are_refused(harness: ModuleType) -> None:
    assert harness.parse_model("default:min_steps=2000,lr=0.001,normalize=False") == (
        "default", {"min_steps": 2000, "lr": 0.001, "normalize": False})
    with pytest.raises(ValueError, match="NAME:key=value"):
        harness.parse_model("default:min_steps")
    with pytest.raises(ValueError, match="takes no overrides"):
        harness.parse_model("mr_hydra:n_kernels=4")


def test_runs_every_model_then_resumes_a_half_finished_csv(
    harness: ModuleType, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.csv"
    argv = ["--data-dir", str(archive), "--models", "default", "lstm", "mr_hydra", "--seeds", "2",
            "--min-steps", "5", "--out", str(out), "--jobs", "2"]
    assert harness.main(argv) == 0
    rows = read_csv(out)
    keys = sorted((r["dataset"], r["model"], r["seed"]) for r in rows)
    assert keys == sorted((d, m, s) for d in ("Equal", "Unequal") for m in ("default", "lstm", "mr_hydra")
                          for s in ("0", "1"))
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 and float(r["fit_s"]) > 0 and float(r["cpu_s"]) > 0 for r in rows)
    # the budget goes to models trained by gradient; the default (Rocket, closed form) has none
    assert {r["options"] for r in rows if r["model"] == "lstm"} == {"min_steps=5"}
    assert {r["options"] for r in rows if r["model"] in ("default", "mr_hydra")} == {""}
    unequal = next(r for r in rows if r["dataset"] == "Unequal")
    assert (unequal["n_train"], unequal["n_test"], unequal["length"], unequal["n_classes"]) == ("10", "6", "16", "2")
    # the ramps are easy: MR-Hydra and the defaults (even on a tiny budget) learn them
    assert all(float(r["accuracy"]) >= 0.75 for r in rows if r["model"] in ("default", "mr_hydra"))
    printed = capsys.readouterr().out
    assert "0 of 12 fits already in" in printed and "| Equal |" in printed and "mean rank" in printed

    # a run killed after three fits, the fourth cut mid-line
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:10])
    assert harness.main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 of 12 fits already in" in printed and "9 to run" in printed
    again = read_csv(out)
    assert again[:3] == rows[:3]  # what finished is kept, not rerun
    finished = [r for r in again if r["options"] is not None]
    assert sorted((r["dataset"], r["model"], r["seed"]) for r in finished) == keys

    assert harness.main([*argv, "--report"]) == 0  # fits nothing
    assert "12 of 12 fits already in" not in capsys.readouterr().out
    assert len(read_csv(out)) == len(again)


def test_a_csv_of_other_options_is_never_mixed_in(harness: ModuleType, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    out.write_text(",".join(harness.FIELDS) + "\nEqual,lstm,0,0.5,1.0,0.9,12,8,16,2,min_steps=5\n")
    with pytest.raises(SystemExit):
        harness.main(["--data-dir", str(archive), "--datasets", "Equal", "--models", "lstm", "--out", str(out)])
    assert out.read_text().count("\n") == 2  # untouched
    other = tmp_path / "other.csv"
    other.write_text("name,score\nx,1\n")
    with pytest.raises(SystemExit):
        harness.main(["--data-dir", str(archive), "--out", str(other)])


def test_the_report_counts_wins_ties_and_losses(harness: ModuleType) -> None:
    rows = [
        {"dataset": "GunPoint", "model": "a", "seed": "0", "accuracy": "1.0", "cpu_s": "10"},
        {"dataset": "GunPoint", "model": "mr_hydra", "seed": "0", "accuracy": "0.9", "cpu_s": "5"},
        {"dataset": "ArrowHead", "model": "a", "seed": "0", "accuracy": "0.7", "cpu_s": "30"},
        {"dataset": "ArrowHead", "model": "a", "seed": "1", "accuracy": "0.9", "cpu_s": "50"},
        {"dataset": "ArrowHead", "model": "mr_hydra", "seed": "0", "accuracy": "0.9", "cpu_s": "10"},
    ]
    text = harness.report(rows, ["GunPoint", "ArrowHead"], ["a", "mr_hydra"])
    assert "| ArrowHead | 0.800 ± 0.141 (2) | 0.900 (1) | 0.863 | 0.869 | 40.0 | 10.0 |" in text
    assert "| a |  | 1/0/1 | 0/1/1 | 0/1/1 |" in text  # vs mr_hydra, InceptionTime (1.0 on GunPoint), HC2
    assert "| a | 25.0 | 40.0 | 3.00; 3.33 |" in text  # ratios 2 and 4; totals 50 / 15
    assert "- a: largest shortfall below InceptionTime -0.063 (ArrowHead); 0 data sets more than 0.10 below" in text
