"""The ```python examples in docs/decorators.md run, top to bottom.

(The project-wide documentation test runs every document the same way; this
one keeps the decorator page checked on its own.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import memokit
from memokit.config import DEFAULT_CACHES

DOCUMENT = Path(__file__).resolve().parent.parent.parent / "docs" / "decorators.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(autouse=True)
def fresh_configuration() -> Iterator[None]:
    memokit.configure(DEFAULT_CACHES)
    memokit.cache.clear()
    yield
    memokit.configure(DEFAULT_CACHES)


def test_decorator_examples_run() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": "docs_decorators"}
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) >= 8
    for number, match in enumerate(blocks, start=1):
        line = text.count("\n", 0, match.start(1)) + 1
        code = compile(match.group(1), f"{DOCUMENT.name}:{line} (block {number})", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point
