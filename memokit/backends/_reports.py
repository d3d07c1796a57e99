"""Where a backend reports a value failure: the reporter :mod:`memokit.resilience` installs.

A value failure (an unreadable entry, a value the store refused) is reported once
per key and window, through the cache's circuit breaker, which lives in
:mod:`memokit.resilience`, a module that builds on the backends. So that the
backends never import it (imports run one way, see docs/architecture.md),
resilience installs its reporter here when it is imported, which importing the
``memokit`` package always does before any cache exists.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ._keycheck import _caller_stacklevel

Reporter = Callable[[Any, str, str, type[Warning]], bool]
"""``(cache, made key, problem, warning class) -> whether a warning was issued``."""
WindowOf = Callable[[Any], float]
"""``cache -> seconds between two reports of one condition`` (the breaker's window)."""

_FALLBACK_WINDOW = 60.0


def _warn_always(cache: Any, key: str, problem: str, category: type[Warning]) -> bool:
    # Only before memokit.resilience is imported, which `import memokit` does first.
    warnings.warn(f"{key!r} in {cache!r} {problem}", category, stacklevel=_caller_stacklevel())
    return True


_installed: tuple[Reporter, WindowOf] = (_warn_always, lambda cache: _FALLBACK_WINDOW)


def install(reporter: Reporter, window_of: WindowOf) -> None:
    """Route every value-failure report (and report window) through these functions."""
    global _installed
    _installed = (reporter, window_of)


def report(cache: Any, key: str, problem: str, category: type[Warning]) -> bool:
    """Report a value failure of ``key`` (a made key) with the installed reporter."""
    return _installed[0](cache, key, problem, category)


def window(cache: Any) -> float:
    """Seconds between two reports of one condition for ``cache``."""
    return _installed[1](cache)
