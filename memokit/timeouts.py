"""The ``DEFAULT_TIMEOUT`` sentinel and the normalisation of timeouts.

A timeout is ``DEFAULT_TIMEOUT`` (use the cache's ``TIMEOUT``), ``None`` (never
expire) or a number of seconds; zero or less means "expire at once".
"""

from __future__ import annotations

import enum
import math
import numbers
from typing import Final, Literal, TypeAlias


class _Default(enum.Enum):
    # An enum member rather than ``object()`` so that mypy can narrow it away.
    DEFAULT_TIMEOUT = "DEFAULT_TIMEOUT"

    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


DEFAULT_TIMEOUT: Final = _Default.DEFAULT_TIMEOUT
"""Use the cache's configured ``TIMEOUT``. ``None`` already means "forever"."""

DefaultTimeout: TypeAlias = Literal[_Default.DEFAULT_TIMEOUT]
Timeout: TypeAlias = float | DefaultTimeout | None
"""What every ``timeout=`` parameter accepts."""


def check_timeout(
    timeout: object, name: str = "timeout", error: type[Exception] = TypeError
) -> float | None:
    """Return ``timeout`` as seconds (or ``None``), or raise ``error`` naming it."""
    if timeout is None:
        return None
    cls = type(timeout)
    if cls is int:
        return timeout  # type: ignore[return-value]  # narrowed by the exact type check
    if cls is float or (cls is not bool and isinstance(timeout, numbers.Real)):
        seconds = float(timeout)  # type: ignore[arg-type]  # a Real, checked above
        if math.isnan(seconds):
            raise error(f"{name} must be a number of seconds or None, not NaN")
        return None if seconds == math.inf else seconds  # infinitely long: never expire
    raise error(
        f"{name} must be a number of seconds, None (never expire) or DEFAULT_TIMEOUT, "
        f"not {timeout!r} ({cls.__name__}); pass for example {name}=300"
    )
