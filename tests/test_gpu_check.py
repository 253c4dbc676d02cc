"""benchmarks/gpu_check.py in its smoke mode: every GPU check runs on the CPU, so CI keeps the script working."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import seqclf

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_smoke_mode_runs_every_check_on_the_cpu_and_passes(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the pickle and generator checks fit the scikit-learn estimator")
    results = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(seqclf.__file__).parents[1])}
    env.pop("SEQCLF_DATA_DIR", None)  # the tutorial check then trains on random images of MNIST's shape
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(results)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(results.read_text())
    assert report["environment"]["mode"] == "smoke" and report["environment"]["device"] == "cpu"
    statuses = {result["name"]: result["status"] for result in report["results"]}
    assert statuses == {"padding": "PASS", "resume": "PASS", "bidirectional": "PASS", "pickle": "PASS",
                        "generators": "PASS", "tutorial": "TIME"}
    assert report["results"][0]["figures"]["max_difference"] < 1e-5
    lines = run.stdout.splitlines()
    assert lines[-1].startswith("6 of 6 checks passed or measured")
    # the results file is never overwritten
    again = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(results), "--checks", "generators"],
                           capture_output=True, text=True, env=env, timeout=600, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_failing_check_is_reported_and_sets_the_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)

    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    passing = {"name": "fine", "status": "PASS", "detail": "ok"}
    monkeypatch.setattr(module, "CHECKS", {"fine": lambda *args: module.Result(**passing), "broken": broken})
    assert module.main(["--smoke"]) == 1
    out = capsys.readouterr().out
    assert "PASS fine: ok" in out  # the other checks still run and report
    assert "FAIL broken: raised ZeroDivisionError: division by zero" in out
    assert out.splitlines()[-1].startswith("1 of 2 checks passed or measured") and out.endswith("failed: broken\n")
