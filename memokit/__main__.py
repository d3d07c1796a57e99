"""``python -m memokit``: the command line (:mod:`memokit.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
