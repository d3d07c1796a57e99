"""The view an in-process store offers the fast index of ``@cached`` (``memokit.fastindex``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = ["IndexView"]


class IndexView(NamedTuple):
    """What an in-process store offers the fast index (``cache._index_view()``).

    ``records`` maps a made key to the store's record for it: a tuple whose item 0 is the
    payload (what ``_get`` returns) and item 1 the absolute time it ends (``math.inf`` for
    never) on the clock ``monotonic`` names: ``time.time()``, as an in-process store's expiry,
    or with ``monotonic`` true ``time.monotonic()``, as tier one's bound, which a wall-clock
    step must never extend. Both hit checks (``fastindex.indexed`` and the one written out in
    ``CachedFunction.__call__``) read the clock from here. The store never mutates a
    record: every change (set, add, touch, incr, delete, expiry, culling, clear) replaces or
    removes it, so ``records.get(made) is record`` tells that nothing happened to the entry
    since the record was read. ``recent(made)`` marks the entry recently used without the
    store's lock (one C call that the GIL keeps whole), or is None for a store without recency;
    it may raise ``KeyError`` when the key went away meanwhile. ``limit`` bounds the items one
    function's index keeps for this store (its entry bound, say). ``tier``: the store is tier
    one in front of another backend (its hits are tier hits).
    """

    records: Mapping[str, tuple[Any, ...]]
    recent: Callable[[str], object] | None
    limit: int
    tier: bool = False
    monotonic: bool = False
