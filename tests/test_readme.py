"""The README's API example must run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys: object) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    history = namespace["history"]
    assert history.series("val_accuracy")[-1] > 0.9  # type: ignore[attr-defined]  # held-out data; seeds 0-2 measured 1.0
