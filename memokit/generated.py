"""Generated code that tracebacks and pdb can show.

Key builders and binders are generated as source for one signature (the way
``dataclasses`` generates ``__init__``); :func:`define` compiles such source under
a pseudo-filename registered in :mod:`linecache`.
"""

from __future__ import annotations

import itertools
import linecache
import weakref
from typing import Any

_generated = itertools.count(1)


def define(source: str, name: str, namespace: dict[str, Any], what: str, func: object) -> Any:
    """Run generated ``source`` in ``namespace`` and return the function ``name`` it defines.

    The source is registered in :mod:`linecache` under a pseudo-filename unique to
    this function (``<memokit key builder 7 for shop.price>``), so tracebacks and
    pdb show the generated lines rather than ``<string>``; the entry goes when the
    generated function does.
    """
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "?")
    filename = f"<memokit {what} {next(_generated)} for {qualname}>"
    code = compile(source, filename, "exec")
    # mtime None: linecache.checkcache() keeps the entry (there is no file to check).
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(code, namespace)  # noqa: S102 - source generated here from a signature and indexes
    made = namespace[name]
    weakref.finalize(made, linecache.cache.pop, filename, None)
    return made
