"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml)."""

from __future__ import annotations

import re
from typing import Any

# Docstrings use Sphinx roles (:class:`Trainer`), which render literally in Markdown.
_SPHINX_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc):(?=<code)")


def on_post_page(output: str, **kwargs: Any) -> str:
    """Drop the role prefix and keep the code span."""
    return _SPHINX_ROLE.sub("", output)
