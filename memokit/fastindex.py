"""The fast index: a decorated call's hit without building its key.

A call whose arguments are all exact built-in scalars (``int``, ``str``,
``bytes``, ``bool``, ``None``, ``float``) is looked up by an *index key* made
of the argument values and their types (:func:`index_key`); it finds the made
key of the entry and the store's record that a string-key hit validated
earlier. The hit then checks that record and returns its value: no key
building, no key making, no store lock. Every other call (a method, whose
``self`` is no scalar; an ``int`` or ``str`` subclass; a NaN) takes the string
key, as before.

The index never merges calls that the key builder keeps apart: equal index
keys mean equal types and equal values (floats also of the same sign, NaNs
never), which the default key builder encodes alike. It may keep apart calls
that share a key (``f(7)`` and ``f(x=7)``): each learns its own item. It holds
the scalars, the made key and the record, never another object, so no
argument is kept alive by it.

The private protocol with an in-process store (the memory backend, and any
store that offers the same view, such as an in-process tier in front of
another backend) is :class:`IndexView`, returned by ``cache._index_view()``
(``BaseCache`` returns None: no index). A record is current while the store
still maps its made key to that very object and its expiry (``time.time()``
based, ``inf`` for never) has not passed: the store never changes a record in
place, it replaces or removes it (set, add, touch, incr, delete, expiry,
culling, clear), so identity is the whole liveness check. The versions the
record was validated under stay current while ``counters.epoch`` has not moved
(:func:`memokit.entry.local_versions`: only this process moves counters in a
store only it sees); an item remembers the epoch it was learnt at.
"""

from __future__ import annotations

import math
from time import monotonic
from time import time as _now
from typing import TYPE_CHECKING, Any, Final

from . import counters
from .backends._index import IndexView
from .backends.base import MISSING, UNREADABLE, BaseCache
from .entry import ENCODED, FORMAT, Versions, valid_value
from .singleflight import _immutable

if TYPE_CHECKING:
    from .fnstate import CachedState

__all__ = ["DECODE", "PLAIN", "SINGLE", "FastIndex", "IndexView", "index_key", "indexed", "learn"]

PLAIN: Final = frozenset({int, str, bytes, type(None)})
"""Scalars whose equality implies the same type and value: no tag needed."""
_TAGGED: Final = frozenset({bool, float})
"""Scalars equal to another type's values (``True == 1 == 1.0``) or of another sign
(``0.0 == -0.0``): tagged with their type (and sign) in an index key."""
_SCALARS: Final = PLAIN | _TAGGED
SINGLE: Final = frozenset({int, str, bytes})
"""A single argument of these types is its own index key (None is not: it means no key)."""

DECODE: Final = object()
"""An item's value slot for an entry the cache keeps encoded: each hit decodes a copy."""


class FastIndex:
    """One decorated function's index over one cache, as that cache is configured now."""

    __slots__ = (
        "cache",
        "items",
        "key_func",
        "key_prefix",
        "limit",
        "monotonic",
        "recent",
        "records",
        "tier",
        "version",
    )

    def __init__(self, cache: BaseCache, view: IndexView) -> None:
        # The cache's settings as the entry's made key saw them (memokit.entry._CURRENT):
        # another value of any of them means other made keys.
        self.cache = cache
        self.key_prefix = cache.key_prefix
        self.version = cache.version
        self.key_func = cache.key_func
        self.records = view.records
        self.recent = view.recent
        self.limit = max(1, view.limit)
        self.tier = view.tier
        """Hits are tier one's (``Stats.tier_hits``)."""
        self.monotonic = view.monotonic
        """Records end on ``time.monotonic()``, else on ``time.time()`` (``IndexView``)."""
        # index key -> (made key, record, epoch learnt at, value or DECODE)
        self.items: dict[Any, tuple[str, tuple[Any, ...], int, Any]] = {}

    def serves(self, cache: BaseCache) -> bool:
        """True while this index was made for ``cache`` as it is now."""
        return (
            cache is self.cache
            and cache.key_prefix is self.key_prefix
            and cache.version is self.version
            and cache.key_func is self.key_func
        )

    def learn(self, ikey: Any, made: str, payload: Any, epoch: int, kept: Any = MISSING) -> None:
        """Remember that ``made`` holds ``payload``, valid under the versions of ``epoch``.

        ``payload`` is what a string-key hit just validated (memokit.entry.valid_value);
        it is learnt only while the store still holds it under ``made``. A payload of
        bytes (tier one's) is learnt only with its immutable value ``kept``.
        """
        record = self.records.get(made)
        if record is None or record[0] is not payload:
            return
        if type(payload) is not tuple:
            if kept is MISSING:
                return
            value = kept
        elif payload[0] == FORMAT:
            value = payload[3]
        elif payload[0] == ENCODED:
            value = DECODE
        else:
            return
        items = self.items
        if len(items) >= self.limit:
            # Items of entries the store dropped would pile up: start again.
            items.clear()
        items[ikey] = (made, record, epoch, value)


def index_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The index key of a call, or None when it takes the string key.

    A single ``int``, ``str`` or ``bytes`` argument is its own index key; any
    other call of scalars is the pair ``(args, kwargs items)``, each ``bool`` or
    ``float`` replaced by a tagged tuple. A scalar is never equal to a tuple, a
    tagged tuple never to a plain scalar.
    """
    # Loops rather than PLAIN.issuperset(map(type, ...)): calls have few arguments.
    for value in args:
        if type(value) not in PLAIN:
            return _tagged_key(args, kwargs)
    if not kwargs:
        if len(args) == 1 and type(args[0]) in SINGLE:
            return args[0]
        return (args, ())
    for value in kwargs.values():
        if type(value) not in PLAIN:
            return _tagged_key(args, kwargs)
    return (args, tuple(kwargs.items()))


def _tagged_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """:func:`index_key` of a call with a bool, a float or another object."""
    values = kwargs.values()
    if not (_SCALARS.issuperset(map(type, args)) and _SCALARS.issuperset(map(type, values))):
        return None
    positional = _tagged(args)
    named = _tagged(values)
    if positional is None or named is None:
        return None
    return (positional, tuple(zip(kwargs, named, strict=True)))


def _tagged(values: Any) -> tuple[Any, ...] | None:
    """``values`` with each bool and float tagged; None when one is a NaN."""
    out: list[Any] = []
    for value in values:
        t = type(value)
        if t is bool:
            out.append((bool, value))
        elif t is float:
            if value != value:
                return None  # the key builder writes NaNs by bit pattern: the string key
            # Equal floats of one sign have one bit pattern (0.0 and -0.0 differ in sign).
            out.append((float, value, math.copysign(1.0, value)))
        else:
            out.append(value)
    return tuple(out)


def indexed(
    index: FastIndex, cache: BaseCache, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The value a call finds through ``index`` in ``cache``, or MISSING: take the string key.

    The whole hit check: the index was made for ``cache`` as it is, the call's
    item was learnt at the current ``counters.epoch`` (no counter moved since), the
    store still holds the very record, unexpired. A hit marks the entry recently
    used. ``CachedFunction.__call__`` has this written out.
    """
    if not (
        cache is index.cache
        and cache.key_prefix is index.key_prefix
        and cache.version is index.version
        and cache.key_func is index.key_func
    ):
        return MISSING
    ikey = index_key(args, kwargs)
    item = None if ikey is None else index.items.get(ikey)
    if item is None:
        return MISSING
    made, record, at, found = item
    now = monotonic() if index.monotonic else _now()  # the records' clock (IndexView)
    if at != counters.epoch or index.records.get(made) is not record or record[1] <= now:
        return MISSING
    recent = index.recent
    if recent is not None:
        try:  # noqa: SIM105 - a suppress() costs a fifth of a hit
            recent(made)
        except KeyError:
            pass  # removed meanwhile: this hit read it before that
    if found is DECODE:
        try:
            return cache._decode(record[0][3])
        except UNREADABLE:
            return MISSING  # the string key reports it
    return found


def learn(
    state: CachedState,
    cache: BaseCache,
    key: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    payload: Any,
    versions: Versions,
) -> None:
    """After a string-key hit: let the next call with these arguments use the index.

    Only where the versions came from a local read plan that keeps them until
    this process moves a counter (``plan.seen``, ``counters.epoch``), the made
    key is a concatenation, and the cache offers an :class:`IndexView`.
    """
    ikey = index_key(args, kwargs)
    if ikey is None:
        return
    plan = state.fast
    if plan is None or plan.entry_prefix is None:
        return
    # Tier one (memokit.backends.tiered): the versions its read found, with the epoch
    # before that read; its records expire with the bound.
    seen = plan.seen if plan.local else plan.tier_seen
    if seen is None or seen[1] is not versions:
        return
    kept = MISSING
    if type(payload) is not tuple:
        try:
            kept = valid_value(payload, versions, cache)
        except UNREADABLE:
            return
        if not _immutable(kept):
            return  # each hit decodes a copy: the string key does that as well
    index = state.index
    if index is None or not index.serves(cache):
        view = cache._index_view()
        if view is None:
            return
        index = state.index = FastIndex(cache, view)
    index.learn(ikey, plan.entry_prefix + key, payload, seen[0], kept)
