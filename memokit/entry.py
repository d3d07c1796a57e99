"""The stored entry of a decorated call: the value and what it was computed under.

An entry is stored as a plain tuple ``(FORMAT, created, versions, value)``:

- ``FORMAT`` tells memokit's entries apart from anything else found at the key;
  a payload that is not an entry of this format counts as a miss;
- ``created`` is the ``time.time()`` at which the value was computed (what
  stale-while-revalidate needs to judge age);
- ``versions`` is the tuple of version counters the value was computed under
  (the function's, then its tags', see :mod:`memokit.counters`); an entry
  whose versions differ from the current ones is invalid and counts as a miss.

A plain tuple rather than a class: it pickles and unpickles faster, with no
class lookup, and the hit path pays for unpickling on every call.

This module holds the two rules every reader of entries follows, each stated
once: :func:`valid_value` (is a payload an entry valid under the current
versions, and which value does it hold) and :func:`plan_is_current` (may a
function's read plan, :class:`memokit.counters.ReadPlan`, still be used with
this cache). The hit path, the miss path, the single flight's waiters and the
counters call them rather than repeat them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .backends.base import MISSING, BaseCache
from .generated import define

if TYPE_CHECKING:
    from .counters import ReadPlan

FORMAT: Final = "mk1"
"""Format tag of an entry; bumped if the layout ever changes."""

Versions: TypeAlias = tuple[int, ...]
Payload: TypeAlias = tuple[str, float, Versions, Any]


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry, for code that inspects entries rather than serving them."""

    value: Any
    created: float
    versions: Versions = ()

    def to_payload(self) -> Payload:
        """Return the tuple that is stored."""
        return (FORMAT, self.created, self.versions, self.value)

    @classmethod
    def from_payload(cls, payload: Any) -> Entry | None:
        """Return the entry stored as ``payload``, or None when it is not one."""
        if type(payload) is tuple and len(payload) == 4 and payload[0] == FORMAT:
            return cls(value_of(payload), payload[1], payload[2])
        return None


def make_payload(value: Any, versions: Versions = (), created: float | None = None) -> Payload:
    """Return the stored form of ``value`` computed now (or at ``created``)."""
    return (FORMAT, time.time() if created is None else created, versions, value)


def valid_value(payload: Any, versions: Versions = ()) -> Any:
    """Return the value of ``payload`` if it is an entry valid under ``versions``, else MISSING.

    The one validity rule: a 4-tuple whose tag is :data:`FORMAT` and whose
    versions equal ``versions``. Anything else (a miss, a foreign value, an
    entry of another format or of older versions) is a miss.
    """
    try:
        # Unpacking is the cheapest test of the shape (this runs on every hit); a
        # miss (MISSING) or a foreign value fails it or the tag.
        tag, _, stored_versions, value = payload
    except (TypeError, ValueError):
        return MISSING
    if tag == FORMAT and stored_versions == versions and type(payload) is tuple:
        return value
    return MISSING


def value_of(payload: Payload) -> Any:
    """Return the value held by the entry ``payload`` (whose validity was checked)."""
    return payload[3]


_CURRENT: Final = (
    "plan.cache is cache and plan.key_prefix is cache.key_prefix"
    " and plan.version is cache.version and plan.key_func is cache.key_func"
)
"""The read plan's staleness check, stated once: ``plan`` was made for ``cache`` as it is now.

A plan holds made-key prefixes and bound primitives of one cache; another cache
(a switch, a reconfigured alias) or a changed ``key_prefix``, ``version`` or
``key_func`` needs a new one. Identity, not equality: this runs on every call. It is
compiled into the two functions below rather than called from one of them: on
the hit path of a local store a nested call costs about 4% of a hit.
"""

_SOURCE: Final = f"""\
def plan_is_current(plan, cache):
    return plan is not None and {_CURRENT}


def local_versions(plan, cache, epoch):
    if plan is None:
        return None
    seen = plan.seen  # one read: another thread may replace it meanwhile
    if seen is not None and seen[0] == epoch and plan.entry_prefix is not None and {_CURRENT}:
        return seen[1]
    return None
"""
_namespace: dict[str, Any] = {}
# Through memokit.generated, so that tracebacks and pdb show the generated lines.
define(_SOURCE, "plan_is_current", _namespace, "read plan checks", sys.modules[__name__])

plan_is_current: Callable[[ReadPlan | None, BaseCache], bool] = _namespace["plan_is_current"]
"""True while ``plan`` was made for ``cache`` as it is now (see :data:`_CURRENT`)."""
plan_is_current.__module__ = __name__

local_versions: Callable[[ReadPlan | None, BaseCache, int], Versions | None] = _namespace[
    "local_versions"
]
"""The versions a call may check the entry alone against, or None to read its counters.

A plan for a store only this process sees (``ReadPlan.local``) keeps the
counters it read, with the ``counters.epoch`` it read them at, until this
process moves one; with a made-key prefix, the entry's key is a concatenation.
Both hit paths (sync and async) ask here.
"""
local_versions.__module__ = __name__
