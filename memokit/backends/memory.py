"""The embedded default backend: an LRU dictionary per ``LOCATION``, in this process.

Every instance that names the same ``LOCATION`` shares one store and its lock,
as Django's locmem does. Values are kept serialised so that a caller who
mutates a returned object never changes the cache; values that cannot be
mutated (None, bool, int, float, complex, str, bytes, and tuples or frozensets
of those) are kept as they are,
which saves a pickle round trip on the hot path and changes nothing a caller
can observe. Serialising happens before the lock is taken, and the locked
sections are a few dictionary operations each.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import weakref
from collections import OrderedDict
from time import time as _now
from typing import Any, ClassVar, Unpack

from ..serializers import (
    PICKLING_ERRORS,
    UNPICKLING_ERRORS,
    PickleSerializer,
    after_failed_unpickling,
    pickling_failed,
)
from ._index import IndexView
from .base import (
    MISSING,
    BaseCache,
    Capabilities,
    CommonSettings,
    CullsByCount,
    check_culling,
)

_Entry = tuple[Any, float]  # (payload, absolute expiry; math.inf for never)

_IMMUTABLE = frozenset({type(None), bool, int, float, complex, str, bytes})


def _is_immutable(value: Any, depth: int = 0) -> bool:
    """True for an immutable scalar, or a tuple/frozenset of such (a few levels deep).

    ``@cached`` keeps its entries here as tuples around the value this returns
    (see ``memokit.entry``), so an immutable result skips pickling on its hits too.
    """
    cls = type(value)
    if cls in _IMMUTABLE:
        return True
    if (cls is tuple or cls is frozenset) and depth < 3:
        return all(_is_immutable(item, depth + 1) for item in value)
    return False


def _serialized(data: bytes) -> list[bytes]:
    """A serialised payload: a one-item list, which no value kept as it is can be.

    (A list costs a quarter of an instance of a class of its own to make, on every
    ``set`` of a mutable value.)
    """
    return [data]


class _Store:
    __slots__ = ("data", "lock")

    def __init__(self) -> None:
        self.data: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self.lock = threading.Lock()


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()
_instances: weakref.WeakSet[MemoryCache] = weakref.WeakSet()


def _reset_locks_after_fork() -> None:
    # A lock held by another thread at fork time stays held forever in the child,
    # whose copy of that thread does not exist: give the child fresh locks.
    global _stores_lock
    _stores_lock = threading.Lock()
    for store in _stores.values():
        store.lock = threading.Lock()
    for cache in list(_instances):
        cache._lock = cache._shared.lock


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _store_for(location: str) -> _Store:
    with _stores_lock:
        store = _stores.get(location)
        if store is None:
            store = _stores[location] = _Store()
        return store


def forget_location(location: str) -> None:
    """Drop the data set of ``location``; instances still naming it keep their copy.

    For throwaway locations (:func:`memokit.testing.isolated_cache`), which would
    otherwise stay in the process for its life.
    """
    with _stores_lock:  # read at each call: a fork replaces the lock
        _stores.pop(location, None)


class MemoryCache(CullsByCount, BaseCache):
    """In-process, thread-safe LRU cache; one data set per ``LOCATION``."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        culls=True, lru=True, atomic_incr=True, keeps_objects=True, blocking_io=False
    )
    option_names: ClassVar[frozenset[str]] = BaseCache.option_names | {
        "MAX_ENTRIES",
        "CULL_FREQUENCY",
    }

    def __init__(
        self,
        location: str = "",
        *,
        max_entries: int = 300,
        cull_frequency: int = 3,
        **settings: Unpack[CommonSettings],
    ) -> None:
        super().__init__(location, **settings)
        self._max_entries, self._cull_frequency = check_culling(max_entries, cull_frequency)
        self._shared = store = _store_for(location)
        self._data = store.data
        self._lock = store.lock  # a copy of the reference, for the hot path
        _instances.add(self)
        self._keep_immutables = type(self.serializer) is PickleSerializer
        self._protocol = getattr(self.serializer, "protocol", pickle.HIGHEST_PROTOCOL)

    def _encode(self, value: Any) -> Any:
        if self._keep_immutables:  # plain pickle: pickle.dumps called directly
            cls = type(value)
            if cls in _IMMUTABLE or ((cls is tuple or cls is frozenset) and _is_immutable(value)):
                return value
            try:
                return [pickle.dumps(value, self._protocol)]  # _serialized, written out
            except pickle.PickleError:
                raise
            except PICKLING_ERRORS as exc:
                # As PickleSerializer.dumps says it, without pickling the value again
                # (its __reduce__ would run twice).
                raise pickling_failed(value, exc) from exc
        return [self.serializer.dumps(value)]

    def _decode(self, payload: Any) -> Any:
        if type(payload) is list:  # _serialized
            if self._keep_immutables:
                try:
                    return pickle.loads(payload[0])  # noqa: S301 - as PickleSerializer does
                except UNPICKLING_ERRORS as exc:
                    # As PickleSerializer.loads goes on, without unpickling the payload
                    # again (its reconstructors would run twice).
                    return after_failed_unpickling(payload[0], exc)
            return self.serializer.loads(payload[0])
        return payload

    @staticmethod
    def _expiry(timeout: float | None) -> float:
        return math.inf if timeout is None else _now() + timeout

    def _insert(self, key: str, entry: _Entry) -> None:
        # The caller holds the lock. Django culls before every insert, overwrites too
        # (_set has this written out).
        data = self._data
        if len(data) >= self._max_entries:
            self._cull()
        data[key] = entry
        data.move_to_end(key)

    def _cull(self) -> None:
        # The caller holds the lock.
        data = self._data
        if self._cull_frequency == 0:
            data.clear()
        else:
            for _ in range(len(data) // self._cull_frequency):
                data.popitem(last=False)

    def _live(self, key: str, now: float) -> _Entry | None:
        # The caller holds the lock. An expired entry is dropped on the way.
        entry = self._data.get(key)
        if entry is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _index_view(self) -> IndexView | None:
        # The fast index's view (memokit.fastindex): every change below replaces or
        # removes a record, never mutates one, and move_to_end is one C call the
        # GIL keeps whole, so a reader may call it without the lock. Not where _get
        # is another (a subclass or a test counting reads): index hits skip it.
        if type(self)._get is not MemoryCache._get or "_get" in self.__dict__:
            return None
        return IndexView(self._data, self._data.move_to_end, self._max_entries)

    def _get(self, key: str) -> Any:
        # The hit path of get and of @cached: no lock. A record is an immutable
        # tuple that every change replaces, a dict read is one C call, and so is
        # move_to_end (a KeyError: removed meanwhile, after this read). Only
        # dropping an expired entry takes the lock, and checks it is the same one.
        entry = self._data.get(key)
        if entry is None:
            return MISSING
        if entry[1] <= _now():
            with self._lock:
                if self._data.get(key) is entry:
                    del self._data[key]
            return MISSING
        try:  # noqa: SIM105 - a suppress() costs a fifth of a get
            self._data.move_to_end(key)
        except KeyError:
            pass
        return entry[0]

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        now = _now()
        found = {}
        data = self._data
        with self._lock:
            for key in keys:
                entry = data.get(key)
                if entry is None:
                    continue
                if entry[1] <= now:
                    del data[key]
                    continue
                data.move_to_end(key)
                found[key] = entry[0]
        return found

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        entry = (payload, math.inf if timeout is None else _now() + timeout)
        data = self._data
        with self._lock:
            if len(data) >= self._max_entries:
                self._cull()
            data[key] = entry
            data.move_to_end(key)

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        expiry = self._expiry(timeout)
        with self._lock:
            for key, payload in items.items():
                self._insert(key, (payload, expiry))
        return []

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        entry = (payload, self._expiry(timeout))
        now = _now()
        with self._lock:
            current = self._data.get(key)
            if current is not None and current[1] > now:
                return False
            self._insert(key, entry)
            return True

    def _touch(self, key: str, timeout: float | None) -> bool:
        now = _now()
        expiry = self._expiry(timeout)
        with self._lock:
            entry = self._live(key, now)
            if entry is None:
                return False
            self._data[key] = (entry[0], expiry)
            return True

    def _delete(self, key: str) -> bool:
        now = _now()
        with self._lock:
            entry = self._data.pop(key, None)
        return entry is not None and entry[1] > now

    def _delete_many(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def _has_key(self, key: str) -> bool:
        now = _now()
        with self._lock:
            return self._live(key, now) is not None

    def _incr(self, key: str, delta: int | float) -> Any:
        # Optimistic: read, compute and encode outside the lock, then swap only if
        # nobody replaced the entry meanwhile. Decoding may run user code
        # (unpickling), which must never run under the store's lock.
        while True:
            now = _now()
            with self._lock:
                entry = self._data.get(key)
            if entry is None or entry[1] <= now:
                return MISSING
            value = self._decode(entry[0]) + delta
            payload = self._encode(value)
            with self._lock:
                if self._data.get(key) is entry:
                    self._data[key] = (payload, entry[1])
                    self._data.move_to_end(key)
                    return value

    def _clear(self) -> None:
        with self._lock:
            self._data.clear()

    def _count(self) -> int:
        with self._lock:
            return len(self._data)
