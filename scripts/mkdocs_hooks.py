"""MkDocs hooks for the documentation site (``hooks:`` in mkdocs.yml)."""

from __future__ import annotations

import re
from typing import Any

# memokit's docstrings use Sphinx's roles (:func:`cached`); Markdown shows the role's
# name before the code. The code alone reads right.
_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop the Sphinx role names left before inline code in the generated reference."""
    return _ROLE.sub("", html)
