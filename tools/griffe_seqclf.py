"""A griffe extension for the API reference (``extensions:`` in mkdocs.yml).

seqclf's docstrings are written to read well in ``help()`` and in an editor; this turns
them into what mkdocstrings renders well:

- Sphinx roles (:class:`~seqclf.LSTMFCN`, :func:`seqclf.checkpoint.load_checkpoint`) become
  cross-references: links where the target is on the site, plain code elsewhere
  (``torch.nn.Module``). A ``~`` keeps the last part of the name only, as in Sphinx.
- ``# doctest: ...`` directives are dropped from examples.
- A parameter default written as a name (``min_steps: int = SMALL_DATA.min_steps``) shows
  its value (``600``).
"""

from __future__ import annotations

import ast
import html
import importlib
import inspect
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([\w.]+)(\(\))?`")
_DOCTEST_DIRECTIVE = re.compile(r"\s*#\s*doctest:[^\n]*")
_LITERAL = (bool, int, float, str, type(None))


class SeqclfDocs(griffe.Extension):
    """Rewrite seqclf's docstrings and defaults for the rendered reference."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "seqclf":
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj)
            if isinstance(obj, griffe.Function):
                _literal_defaults(obj)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object it defines (not the names it imports)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += _walk(member)  # type: ignore[arg-type]
    return found


def _rewrite(text: str, scope: griffe.Object) -> str:
    text = _DOCTEST_DIRECTIVE.sub("", text)

    def link(match: re.Match[str]) -> str:
        short, name, call = match.group(1), match.group(2), match.group(3) or ""
        title = (name.rsplit(".", 1)[-1] if short else name) + call
        identifier = _resolve(name, scope)
        return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(title)}</code></autoref>'

    return _ROLE.sub(link, text)


def _resolve(name: str, scope: griffe.Object) -> str:
    """The full path of ``name`` as seen from ``scope`` (``Trainer`` -> ``seqclf.trainer.Trainer``)."""
    if "." in name and name.split(".", 1)[0] in ("seqclf", "torch", "numpy", "sklearn"):
        return name
    head, _, rest = name.partition(".")
    current: griffe.Object | None = scope
    while current is not None:
        try:
            resolved = current.resolve(head)
        except griffe.NameResolutionError:
            current = current.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return name


def _literal_defaults(function: griffe.Function) -> None:
    """Show a default written as a name by its value, when the value is a plain literal."""
    runtime: Any = None
    for parameter in function.parameters:
        default = parameter.default
        if default is None or _is_literal(str(default)):
            continue
        if runtime is None:
            runtime = _runtime_signature(function)
            if runtime is None:
                return
        value = runtime.parameters.get(parameter.name)
        if value is not None and isinstance(value.default, _LITERAL):
            parameter.default = repr(value.default)


def _is_literal(source: str) -> bool:
    try:
        ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return False
    return True


def _runtime_signature(function: griffe.Function) -> inspect.Signature | None:
    parts = function.path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
            return inspect.signature(obj)
        except (AttributeError, TypeError, ValueError):
            return None
    return None
