"""The user docs: complete (every public name in the API reference), runnable, and free of
paths that exist only in this repository."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import seqclf

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"
USER_DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md"),
                    *(ROOT / "examples").rglob("*.py")])


def public_modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.iter_modules(seqclf.__path__) if not info.name.startswith("_")]
    return [seqclf, *(importlib.import_module(f"seqclf.{name}") for name in sorted(names))]


def resolve(dotted: str) -> Any:
    """The object a ``::: seqclf.x.y`` directive names."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


def test_every_public_name_is_in_the_api_reference() -> None:
    text = API.read_text()
    directives = re.findall(r"^::: ([\w.]+)", text, flags=re.M)
    documented = [resolve(target) for target in directives]  # a directive naming nothing fails here
    for target, obj in zip(list(directives), list(documented), strict=True):
        if inspect.ismodule(obj):  # a module's directive renders the members its __all__ names
            documented += [getattr(obj, name) for name in getattr(obj, "__all__", [])]
            directives += [f"{target}.{name}" for name in getattr(obj, "__all__", [])]
    sections = {target.rsplit(".", 1)[0] for target in directives}
    missing = []
    for module in public_modules():
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.ismodule(obj):  # a public submodule: it has a section of its own
                found = obj.__name__ in sections or f"`{obj.__name__}`" in text
            elif inspect.isclass(obj) or callable(obj):
                found = any(obj is other for other in documented)
            else:  # a constant: a directive of its own, or named in the text
                found = f"{module.__name__}.{name}" in directives or f"`{module.__name__}.{name}`" in text
            if not found:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"docs/api.md lacks {missing}: add a '::: name' directive for each"


MODULES = sorted(path.stem for path in Path(seqclf.__file__).parent.glob("*.py"))


def _module(stem: str) -> ModuleType:
    return importlib.import_module("seqclf" if stem == "__init__" else f"seqclf.{stem}")


@pytest.mark.parametrize("stem", MODULES)
def test_every_module_states_its_public_names(stem: str) -> None:
    module = _module(stem)
    names = getattr(module, "__all__", None)
    assert isinstance(names, list) and all(isinstance(n, str) for n in names), f"{module.__name__} has no __all__ list"
    assert not [n for n in names if not hasattr(module, n)], f"{module.__name__}.__all__ names what it lacks"


_NOT_YET_UNDERSCORED: dict[str, str] = {}


@pytest.mark.parametrize(
    "stem",
    [pytest.param(stem, marks=pytest.mark.xfail(strict=True, reason=_NOT_YET_UNDERSCORED[stem]))
     if stem in _NOT_YET_UNDERSCORED else stem for stem in MODULES],
)
def test_functions_and_classes_outside_all_are_underscored(stem: str) -> None:
    module = _module(stem)
    tree = ast.parse((Path(seqclf.__file__).parent / f"{stem}.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    unlisted = sorted(n for n in defined - set(getattr(module, "__all__", [])) if not n.startswith("_"))
    assert not unlisted, f"{module.__name__} defines {unlisted} outside __all__: list them, or underscore private helpers"


def test_the_api_reference_documents_only_public_names() -> None:
    public = {id(getattr(module, name)) for module in public_modules() for name in getattr(module, "__all__", [])}
    public |= {id(module) for module in public_modules()}
    directives = re.findall(r"^::: ([\w.]+)", API.read_text(), flags=re.M)
    private = [target for target in directives if id(resolve(target)) not in public]
    assert not private, f"docs/api.md documents names no module lists in __all__: {private}"


def test_public_modules_named_in_seqclf_declare_their_public_names() -> None:
    for name in seqclf.__all__:
        obj = getattr(seqclf, name)
        if inspect.ismodule(obj):
            assert isinstance(getattr(obj, "__all__", None), list), f"seqclf.{name} has no __all__"


# Paths that exist only in this repository's CI or on its developers' machines, and words
# about how the project is worked on: the docs speak to users about the project only.
FORBIDDEN = [
    (re.compile(r"\.\./shared|shared/data|/work/|/tmp/pytest"), "a path users do not have"),
    (re.compile(r"\bthis session\b|\bagents?\b|\bthe lead\b|\bthe issue\b|\bissue \d+", re.I),
     "talk about how the project was worked on"),
]


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_user_docs_have_no_repository_internal_paths_or_process_talk(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for pattern, what in FORBIDDEN:
            match = pattern.search(line)
            assert match is None, f"{path.relative_to(ROOT)}:{number} has {what}: {match.group(0)!r}"


def test_readme_links_work_on_pypi() -> None:
    # the README is the package's PyPI page, where relative links lead nowhere
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links, "the README links to its docs"
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert not relative, f"README.md links must be absolute URLs; got {relative}"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_quickstart_learns_the_task_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python_blocks(ROOT / "docs" / "quickstart.md")[0], "quickstart.md", "exec"), namespace)
    # measured after the 6th epoch: 1.0 with seed 0 (the page's), 1.0, 0.957, 0.997 with seeds 1-3
    assert namespace["history"].series("val_accuracy")[-1] > 0.9
    assert len(capsys.readouterr().out.splitlines()) == 4  # the three prints the page shows (one on two lines)


@pytest.fixture(scope="module")
def api_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The API reference page as ``mkdocs build --strict`` renders it."""
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material"):
        pytest.importorskip(module, reason=f"building the docs needs the docs extra ({module}): pip install -e '.[docs]'")
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(Path(seqclf.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return (site / "api" / "index.html").read_text()


def test_api_reference_renders_examples_as_code(api_page: str) -> None:
    assert "doctest" not in api_page  # the `# doctest: +SKIP` markers are not shown
    assert '<details class="example"' not in api_page  # an `Example:` admonition runs the code together as prose
    prompts = re.findall(r'<div class="highlight"><pre><span></span><code><span class="gp">&gt;&gt;&gt; </span>', api_page)
    assert len(prompts) >= 10, "every docstring example is a highlighted code block"
    assert not re.search(r"<p>&gt;&gt;&gt;|<blockquote>\s*<blockquote>", api_page)


def test_api_reference_links_its_cross_references(api_page: str) -> None:
    text = re.sub(r"<[^>]+>", "", api_page)
    assert "~seqclf." not in text and not re.search(r":(class|func|meth|attr|data|exc|mod):", text)
    estimator = api_page[api_page.index('id="seqclf.sklearn.SequenceClassifierEstimator"'):]
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#seqclf\.LSTMFCN"><code>LSTMFCN</code></a>', estimator)
    for target in ("seqclf.Trainer", "seqclf.recipes.SMALL_DATA", "seqclf.callbacks.Checkpoint", "seqclf.checkpoint.load_checkpoint"):
        assert f'href="#{target}"' in api_page, f"no link to {target}"


def test_api_reference_shows_default_values_not_names(api_page: str) -> None:
    from seqclf.recipes import SMALL_DATA

    estimator = api_page[api_page.index('id="seqclf.sklearn.SequenceClassifierEstimator"'):]
    signature = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", estimator[: estimator.index("Bases:")]))
    for name in ("min_steps", "batch_size", "lr", "val_fraction"):
        assert f"{name}: {'int' if name in ('min_steps', 'batch_size') else 'float'} = {getattr(SMALL_DATA, name)!r}," in signature, signature
    assert "SMALL_DATA" not in signature


def test_install_hints_work_before_the_release() -> None:
    # seqclf is not on PyPI yet: installing it by name fails; a hint names what works from a clone
    published = re.compile(r"""pip install (["']?)seqclf\b""")
    files = [*USER_DOCS, *sorted((ROOT / "src" / "seqclf").glob("*.py")), *sorted((ROOT / "tests").glob("*.py"))]
    wrong = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if published.search(line) and "release" not in line and path.name != "CHANGELOG.md":
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not wrong, "install hints must work from a clone until the release:\n" + "\n".join(wrong)
