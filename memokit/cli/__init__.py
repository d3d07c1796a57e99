"""The ``memokit`` command line: ``memokit`` (a console script) and ``python -m memokit``.

It needs the ``cli`` extra (click and rich); without it, :func:`main` prints the
install line and exits with 2. The command line may import any memokit module;
no memokit module imports it (docs/architecture.md).
"""

from __future__ import annotations

import sys

INSTALL_HINT = "pip install 'memokit[cli]'"
_NEEDED = ("click", "rich")


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit 0 on success, 1 when the operation failed, 2 on bad usage."""
    try:
        from ._app import cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _NEEDED:
            raise
        print(
            f"memokit: the command line needs the 'cli' extra ({exc.name} is not installed); "
            f"install it with: {INSTALL_HINT}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli.main(args=argv, prog_name="memokit")
