"""The package's import graph: no cycles, and the layers import only downwards.

The graph is read from the source (every import outside ``if TYPE_CHECKING:``, those inside
functions included), and each module is also imported alone, first, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import seqclf

PACKAGE = Path(seqclf.__file__).parent
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def imports_of(module: str) -> set[str]:
    """The seqclf modules ``module`` imports at run time (anywhere but under ``if TYPE_CHECKING:``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seqclf."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("seqclf."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found & set(MODULES)


def reachable(module: str) -> set[str]:
    seen: set[str] = set()
    stack = [module]
    while stack:
        for name in imports_of(stack.pop()):
            if name not in seen:
                seen.add(name)
                stack.append(name)
    return seen


def test_no_module_imports_itself_through_others() -> None:
    cycles = sorted(module for module in MODULES if module in reachable(module))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_the_layers_import_only_downwards() -> None:
    assert not {"checkpoint", "trainer", "callbacks", "progress", "recipes", "data", "batching"} & reachable("model")
    assert not {"data", "batching", "trainer"} & reachable("normalization")
    assert not {"data", "batching", "trainer", "callbacks"} & (reachable("encoders") | reachable("registry") | {"encoders", "registry"})
    assert not {"model", "trainer", "callbacks", "progress", "recipes", "data"} & reachable("checkpoint")


def test_each_module_imports_alone_in_a_fresh_interpreter() -> None:
    """torch is imported once; then each seqclf module is imported first, with no seqclf module loaded."""
    script = "\n".join([
        "import importlib, sys, torch",
        f"for name in {MODULES!r}:",
        "    for loaded in [m for m in sys.modules if m == 'seqclf' or m.startswith('seqclf.')]:",
        "        del sys.modules[loaded]",
        "    importlib.import_module('seqclf.' + name)",
        "print('ok')",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_model_layer_does_not_load_the_data_layer() -> None:
    """``import seqclf.model`` (or any model module) in a fresh interpreter leaves ``seqclf.data`` unloaded."""
    script = "\n".join([
        "import sys",
        "import seqclf.model, seqclf.lstm_fcn, seqclf.inception_time, seqclf.encoders, seqclf.registry",
        "print(sorted(m for m in sys.modules if m in ('seqclf.data', 'seqclf.trainer', 'seqclf.callbacks')))",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_package_still_serves_the_data_layer_names() -> None:
    """Names imported on first use are the modules' own objects, and ``from seqclf import *`` gets them all."""
    from seqclf.data import pad_sequences
    from seqclf.trainer import Trainer

    assert seqclf.Trainer is Trainer and seqclf.pad_sequences is pad_sequences
    namespace: dict[str, object] = {}
    exec("from seqclf import *", namespace)
    assert set(seqclf.__all__) <= set(namespace)
