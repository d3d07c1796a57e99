"""Settings and arguments a backend is given, checked once, each error naming the fix.

The settings every backend takes (``CommonSettings``), ``LOCK_TIMEOUT``,
``MAX_ENTRIES``/``CULL_FREQUENCY`` (and ``CullsByCount``, which keeps them
checked when changed later), unknown ``OPTIONS`` keys, and an ``incr`` delta.
"""

from __future__ import annotations

import difflib
import operator
import threading
from collections.abc import Iterable
from typing import SupportsIndex, TypedDict

from ..exceptions import ImproperlyConfigured
from ..keys import KeyFunc
from ..serializers import Serializer


class CommonSettings(TypedDict, total=False):
    """The settings every backend takes as keyword arguments."""

    timeout: float | None
    key_prefix: str
    version: int
    key_function: KeyFunc | str | None
    serializer: Serializer | str | None
    lock_timeout: float
    # The payload options (memokit.framing.build_serializer checks them).
    secret: str | bytes | None
    old_secrets: list[str | bytes] | tuple[str | bytes, ...] | None
    compressor: str | None
    compress_min_size: int | None
    compress_level: int | None


def check_delta(delta: object) -> int | float:
    """Return an ``incr``/``decr`` delta as an ``int`` or a ``float``; raise ``TypeError`` else.

    Every backend receives only these two types, so none of them can meet a number
    it cannot add in one step (a range check of a float scans the range).
    """
    cls = type(delta)
    if cls is int or cls is float:
        return delta  # type: ignore[return-value]  # one of the two, checked just above
    if not isinstance(delta, bool):  # incr(key, True) is a mistake, not a 1
        if isinstance(delta, float):
            return float(delta)  # a float subclass, such as numpy.float64
        if isinstance(delta, SupportsIndex):
            try:
                return operator.index(delta)  # numpy.int64 and other integer types
            except TypeError:
                pass  # numpy.bool_ has __index__ only to refuse it
    raise TypeError(
        f"incr/decr delta must be an int (or have __index__, as numpy integers do) or a "
        f"float, not {delta!r} of type {cls.__name__}; e.g. cache.incr(key, 1)"
    )


def check_lock_timeout(value: object) -> float:
    """Validate ``LOCK_TIMEOUT``: seconds a cross-process lock is waited for."""
    # threading.TIMEOUT_MAX bounds it: a longer wait cannot be given to a thread lock
    # (OverflowError at the first write, which decorated calls could not fail open on).
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= threading.TIMEOUT_MAX
    ):
        raise ImproperlyConfigured(
            f"LOCK_TIMEOUT must be a number of seconds > 0 and at most "
            f"{threading.TIMEOUT_MAX:.0f}, not {value!r}; for example OPTIONS={{'LOCK_TIMEOUT': 5}}"
        )
    return float(value)


def check_culling(max_entries: object, cull_frequency: object) -> tuple[int, int]:
    """Validate ``MAX_ENTRIES`` and ``CULL_FREQUENCY`` and return them as ints."""
    for name, value in (("MAX_ENTRIES", max_entries), ("CULL_FREQUENCY", cull_frequency)):
        if type(value) is not int:
            raise ImproperlyConfigured(
                f"{name} must be an int, not {value!r}; for example {name}=300"
            )
    if cull_frequency < 0:  # type: ignore[operator]  # checked to be an int just above
        raise ImproperlyConfigured(
            f"CULL_FREQUENCY must be 0 (clear everything) or a positive int "
            f"(cull 1/CULL_FREQUENCY of the entries), not {cull_frequency!r}"
        )
    return max_entries, cull_frequency  # type: ignore[return-value]  # both checked above


def unknown_options(
    cls_name: str,
    unknown: Iterable[object],
    known: Iterable[str],
    *,
    also: Iterable[str] = (),
    more: str = "",
) -> ImproperlyConfigured:
    """Return the error for ``OPTIONS`` keys a backend does not know, with the likely fix.

    ``known`` (listed in the message) and ``also`` (a client library's arguments,
    too many to list) are the names accepted; each unknown key gets the closest as
    a suggestion, matched without case as OPTIONS keys are.
    """
    known = list(known)
    by_lower = {name.lower(): name for name in [*also, *known]}
    parts = []
    for name in unknown:
        part = f"OPTIONS[{name!r}]"
        if isinstance(name, str):
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
            if close:
                part += f" (did you mean {by_lower[close[0]]!r}?)"
        parts.append(part)
    names = ", ".join(sorted(known, key=str.lower)) or "none"
    return ImproperlyConfigured(
        f"{cls_name} does not know {', '.join(parts)}; remove or rename it; "
        f"known keys: {names}{more}"
    )


class CullsByCount:
    """Mixin of the backends that cull by count (``capabilities.culls``).

    ``MAX_ENTRIES`` and ``CULL_FREQUENCY`` as public properties, read at every
    write, so a change (Django's own tests make some) applies at once. The Django
    adapter reads and writes them here, never the backend's private fields.
    """

    _max_entries: int
    _cull_frequency: int

    @property
    def max_entries(self) -> int:
        """``MAX_ENTRIES``: the entry count at which a write culls."""
        return self._max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        self._max_entries, _ = check_culling(value, self._cull_frequency)

    @property
    def cull_frequency(self) -> int:
        """``CULL_FREQUENCY``: a cull removes 1/CULL_FREQUENCY of the entries (0: all)."""
        return self._cull_frequency

    @cull_frequency.setter
    def cull_frequency(self, value: int) -> None:
        _, self._cull_frequency = check_culling(self._max_entries, value)
