"""The ```python examples in README.md and docs/*.md run, top to bottom, per file.

A block fenced as ```py is shown but not run (it needs a server, for example).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import memokit
from memokit.config import DEFAULT_CACHES

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(autouse=True)
def fresh_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    memokit.configure(DEFAULT_CACHES)
    memokit.cache.clear()
    yield
    memokit.configure(DEFAULT_CACHES)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": f"docs_{document.stem}"}
    for number, match in enumerate(BLOCK.finditer(text), start=1):
        line = text.count("\n", 0, match.start(1)) + 1
        code = compile(match.group(1), f"{document.name}:{line} (block {number})", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point
