"""What the command line prints: rich tables in a terminal, JSON with ``--json``.

Every string printed goes through :func:`memokit._secrets.redact` with the
secrets of the settings in use, so no password or signing secret reaches the
screen, a log or a pipe.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from memokit._secrets import MASK, is_secret_name, redact

MAX_VALUE = 2000
"""Characters of a value's repr shown; the rest is cut, saying how long it was."""


class Output:
    """Prints for one command: tables or JSON, secrets masked."""

    def __init__(self, as_json: bool, secrets: Sequence[str] = ()) -> None:
        self.as_json = as_json
        self.secrets = list(secrets)
        # Keys, values and messages are shown as they are: rich would read ":memo:" in
        # a key as an emoji and "[/b]" in a value as markup (a stray one raises).
        plain: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False}
        self.console = Console(soft_wrap=False, **plain)
        self.errors = Console(stderr=True, **plain)

    def show(self, value: object) -> str:
        """``value`` as text, secrets masked."""
        return redact(value, self.secrets)

    def masked(self, value: Any) -> Any:
        """``value`` (JSON-like) with every string masked, and secret-named items hidden."""
        if isinstance(value, dict):
            return {
                str(k): (MASK if is_secret_name(k) else self.masked(v)) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.masked(item) for item in value]
        if isinstance(value, str):
            return self.show(value)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def json(self, document: Any) -> None:
        """Print ``document`` as one JSON object."""
        text = json.dumps(self.masked(document), indent=2, default=self.show)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def line(self, text: str, style: str | None = None) -> None:
        """Print one line of text (never in JSON mode's output)."""
        if not self.as_json:
            self.console.print(self.show(text), markup=False, style=style, soft_wrap=True)

    def error(self, text: str) -> None:
        """Print an error to stderr, prefixed ``memokit: error:``."""
        self.errors.print(f"memokit: error: {self.show(text)}", markup=False, soft_wrap=True)

    def table(self, title: str | None, columns: Sequence[str], rows: list[list[Any]]) -> None:
        """Print a table (in a terminal, rich draws it; in a pipe it is the same text)."""
        table = Table(title=self.show(title) if title else None, title_justify="left")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(self.show(cell) if cell is not None else "-" for cell in row))
        self.console.print(table)

    def pairs(self, title: str | None, rows: list[tuple[str, Any]]) -> None:
        """Print a two-column table of names and values."""
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in rows:
            table.add_row(name, self.show(value) if value is not None else "-")
        self.console.print(table)


def value_text(value: Any) -> str:
    """A value's repr, cut at :data:`MAX_VALUE` characters."""
    text = repr(value)
    if len(text) > MAX_VALUE:
        return f"{text[:MAX_VALUE]}... ({len(text):,} characters in all)"
    return text
