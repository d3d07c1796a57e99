"""What a backend can do, declared once per class (``BaseCache.capabilities``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the conformance suite reads these, never backend names."""

    stores: bool = True
    """Keeps what it is given (False only for the dummy backend)."""
    culls: bool = False
    """Honours ``MAX_ENTRIES``/``CULL_FREQUENCY`` with Django's arithmetic."""
    cull_rule: Literal["count >= MAX_ENTRIES", "count > MAX_ENTRIES"] = "count >= MAX_ENTRIES"
    """When a cull starts: Django's locmem/filebased rule or its db rule (``count > ...``)."""
    lru: bool = False
    """Culls the least recently used entries (``get``, ``set`` and ``incr`` refresh)."""
    local_clock: bool = True
    """Expiry is computed from this process's ``time.time()`` (freezegun controls it)."""
    sub_second_expiry: bool = True
    """Timeouts keep fractions of a second (memcached counts whole seconds)."""
    atomic_incr: bool = False
    """``incr``/``decr`` are atomic for every user of the store, threads and processes."""
    keeps_objects: bool = False
    """Keeps payloads as Python objects in this process, never as bytes only: a
    decorated call's entry stays a tuple there (see ``memokit.entry``)."""
    cross_process: bool = False
    """Processes that name the same ``LOCATION`` share the data."""
    persistent: bool = False
    """Data survives a restart of the process."""
    strict_keys: bool = False
    """A key memcached cannot store raises ``InvalidCacheKey`` instead of warning."""
    blocking_io: bool = True
    """Primitives block on I/O, so the async twins run them in a worker thread."""
    latest_expiry: float | None = None
    """The latest expiry the store can represent (seconds since the epoch); a timeout
    reaching past it is stored as "never expires". None: no limit."""
