"""A third-party memokit backend, as small as one can be: entries in a dict per LOCATION.

docs/backends.md ("Writing a backend") walks through it; conftest.py beside it
declares it to memokit's conformance kit, which then runs the whole cache
contract over it: ``pytest -p memokit.testing.contract`` in this directory.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, ClassVar

from memokit import BaseCache
from memokit.backends import MISSING, Capabilities

_stores: dict[str, dict[str, tuple[bytes, float]]] = {}
_lock = threading.Lock()  # one lock for every store: simple, and enough for an example


class DictCache(BaseCache):
    """Entries (serialised bytes, expiry time) in a module-level dict, one per LOCATION."""

    # Expiry is computed from this process's time.time() (the kit freezes it with
    # freezegun), nothing blocks on I/O (the async twins run inline), and
    # instances naming one LOCATION share their entries.
    capabilities: ClassVar[Capabilities] = Capabilities(local_clock=True, blocking_io=False)

    def __init__(self, location: str = "", **kwargs: Any) -> None:
        super().__init__(location, **kwargs)
        with _lock:
            self._data = _stores.setdefault(location, {})

    @staticmethod
    def _expiry(timeout: float | None) -> float:
        return math.inf if timeout is None else time.time() + timeout

    def _live(self, key: str) -> tuple[bytes, float] | None:
        # The caller holds the lock; an expired entry is dropped on the way.
        entry = self._data.get(key)
        if entry is not None and entry[1] <= time.time():
            del self._data[key]
            return None
        return entry

    def _get(self, key: str) -> Any:
        with _lock:
            entry = self._live(key)
        return MISSING if entry is None else entry[0]

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        with _lock:
            self._data[key] = (payload, self._expiry(timeout))

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        with _lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (payload, self._expiry(timeout))
            return True

    def _touch(self, key: str, timeout: float | None) -> bool:
        with _lock:
            entry = self._live(key)
            if entry is None:
                return False
            self._data[key] = (entry[0], self._expiry(timeout))
            return True

    def _delete(self, key: str) -> bool:
        with _lock:
            return self._live(key) is not None and self._data.pop(key, None) is not None

    def _incr(self, key: str, delta: int | float) -> Any:
        with _lock:
            entry = self._live(key)
            if entry is None:
                return MISSING
            # Decoding runs the serializer (user code for pickle); an example may do
            # it under its lock, a backend shared by many threads had better not.
            value = self._decode(entry[0]) + delta
            self._data[key] = (self._encode(value), entry[1])
            return value

    def _clear(self) -> None:
        with _lock:
            self._data.clear()

    def _count(self) -> int:
        with _lock:
            return len(self._data)
