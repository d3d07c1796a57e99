"""Tier one of a tiered cache: an LRU of encoded payloads in this process.

The store keeps what the second tier returned (encoded payloads, so the byte
bound counts what is held) and, per key, when that payload was last known to be
the second tier's: ``checked``, a ``time.monotonic()`` taken *before* the read
or write that produced it was sent. A slot is served while it is younger than
the coherence bound (or at any age if it was checked while ``assisted``, since
the tracking came up: every later change is pushed), and never past the expiry
this process gave it.

A fill is kept only if nothing changed the key since the read began: every
forget or local write moves the generation of the key's stripe (and
``forget_all`` the store's epoch), and a fill made under an older generation
is dropped. So a push of an invalidation (``forget``) that lands between a
second-tier read and its fill wins.

Every locked section is a few dict operations; nothing is decoded or encoded
under the lock.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any, Final

from ..exceptions import ImproperlyConfigured
from ._primitives import MISSING

__all__ = ["NOT_KEPT", "SAME", "Slot", "TierSettings", "TierStore", "same"]

_STRIPES: Final = 1024
_MASK: Final = _STRIPES - 1
DEFAULT_MAX_ENTRIES: Final = 10_000
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_BOUND: Final = 1.0
_NAMES: Final = ("MAX_ENTRIES", "MAX_BYTES", "BOUND")


class _NotKept:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_KEPT"


NOT_KEPT: Final = _NotKept()
"""A slot's ``kept`` before a decoded immutable value is kept beside its payload."""


class _Same:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SAME"


SAME: Final = _Same()
"""What a re-check answers for a key whose stored payload is still the one held
(a backend's ``_get_unchanged``): the slot is kept, its check time renewed."""


def same(read: dict[str, Any], held: Mapping[str, Any]) -> dict[str, Any]:
    """``read`` with ``SAME`` for each payload equal to the one held (a re-check that
    read the values: its slot is kept)."""
    for key, payload in read.items():
        if key in held and held[key] == payload:
            read[key] = SAME
    return read


@dataclass(frozen=True)
class TierSettings:
    """The ``TIER`` setting of one alias, checked."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    """Slots kept at most; the least recently used go first."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Bytes of payloads and keys kept at most; the least recently used go first."""
    bound: float = DEFAULT_BOUND
    """Seconds after which a slot is re-checked with the second tier."""

    @classmethod
    def parse(cls, tier: Any) -> TierSettings:
        """Check a ``TIER`` setting (a mapping, ``True`` for the defaults); raise naming the fix."""
        if tier is True:
            return cls()
        if not isinstance(tier, Mapping):
            raise ImproperlyConfigured(
                f"TIER must be a mapping such as {{'MAX_ENTRIES': 10000, 'MAX_BYTES': 64 << 20, "
                f"'BOUND': 1.0}} (or True for those defaults), not a {type(tier).__name__}"
            )
        unknown = [name for name in tier if not (isinstance(name, str) and name in _NAMES)]
        if unknown:
            raise ImproperlyConfigured(
                f"TIER has unknown option(s) {', '.join(map(repr, unknown))}; "
                f"known options: {', '.join(_NAMES)}"
            )
        max_entries = tier.get("MAX_ENTRIES", DEFAULT_MAX_ENTRIES)
        if type(max_entries) is not int or max_entries < 1:
            raise ImproperlyConfigured(
                f"TIER['MAX_ENTRIES'] must be an int >= 1 (slots kept in this process), "
                f"not {max_entries!r}; e.g. 10000"
            )
        max_bytes = tier.get("MAX_BYTES", DEFAULT_MAX_BYTES)
        if type(max_bytes) is not int or max_bytes < 1:
            raise ImproperlyConfigured(
                f"TIER['MAX_BYTES'] must be an int >= 1 (bytes of payloads kept in this "
                f"process), not {max_bytes!r}; e.g. 64 * 1024 * 1024"
            )
        bound = tier.get("BOUND", DEFAULT_BOUND)
        if type(bound) not in (int, float) or not math.isfinite(bound) or not 0 < bound <= 3600:
            raise ImproperlyConfigured(
                f"TIER['BOUND'] must be a number of seconds > 0 and <= 3600 (how stale tier "
                f"one may be), not {bound!r}; e.g. 1.0"
            )
        return cls(max_entries, max_bytes, float(bound))


class Slot:
    """One key's payload in tier one."""

    __slots__ = ("checked", "expires", "kept", "payload", "size", "stamp")

    def __init__(self, payload: Any, checked: float, expires: float, size: int) -> None:
        self.payload = payload
        self.checked = checked
        """``monotonic()`` before the read or write that showed the payload current."""
        self.expires = expires
        """``monotonic()`` when this process's own write said it expires, or, read while
        invalidations are tracked, when the backend's copy expires at the earliest
        (its time to live, read with it, from before the read was sent); inf: unknown."""
        self.size = size
        self.kept: Any = NOT_KEPT
        """The decoded value when it is immutable (read without decoding again)."""
        self.stamp: Any = None
        """What identifies the stored write this payload came from, for a re-check that
        reads stamps, not values (a backend's ``_get_stamped``); None: unknown."""


def _size(key: str, payload: Any) -> int:
    if isinstance(payload, bytes | bytearray | memoryview):
        return len(key) + len(payload)
    return len(key) + sys.getsizeof(payload)


_stores: weakref.WeakSet[TierStore] = weakref.WeakSet()


class TierStore:
    """An LRU of slots bounded by count and bytes, with fills guarded by generations."""

    def __init__(self, settings: TierSettings) -> None:
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self.bound = settings.bound
        self.data: OrderedDict[str, Slot] = OrderedDict()  # least recently used first
        self.bytes = 0
        self.lock = threading.Lock()
        self.epoch = 0
        self.stripes = [0] * _STRIPES
        self._assisted = False
        self._since = math.inf
        self.records: dict[str, tuple[Any, float, float]] = {}
        """The fast index's view (``memokit.fastindex``): made key -> ``(payload, its end
        on time.monotonic(), the same end)``. A record is replaced,
        never changed; its expiry is the oldest check of the batch it was served in,
        plus the bound, so an index hit is never older than the bound either."""
        self.hits = 0
        """Reads answered here, without a second-tier round trip (this process)."""
        _stores.add(self)

    @property
    def assisted(self) -> bool:
        """While True every change is pushed (``forget``): no slot needs a re-check."""
        return self._assisted

    @assisted.setter
    def assisted(self, value: bool) -> None:
        # No lock: a tracker sets it in a forked child too. The start of this
        # assistance is stored before the flag, which readers read first. Records of
        # slots it vouches for never expire: they go when the assistance does.
        if value and not self._assisted:
            self._since = monotonic()
        self._assisted = value
        if not value:
            self.records.clear()

    def vouched_since(self) -> float:
        """The check time from which a slot needs no re-check (inf: none).

        While ``assisted``, every change made after the tracking came up is pushed,
        so a slot read (checked) since then stays current until a push drops it; a
        slot read before keeps the bound. So a tracker that comes back need not
        empty tier one (Django closes its caches after every request, which stops
        the tracking until the next read revives it).
        """
        return self._since if self._assisted else math.inf

    # -- reads ---------------------------------------------------------------------

    def lookup(self, key: str) -> Slot | None:
        """The slot of ``key`` if it may be served now (marked recently used), else None."""
        now = monotonic()
        with self.lock:
            slot = self.data.get(key)
            if slot is None:
                return None
            if now >= slot.expires:
                self._drop(key)
                return None
            if slot.checked < self.vouched_since() and now - slot.checked >= self.bound:
                return None
            self.data.move_to_end(key)
            self.hits += 1
            return slot

    def split(self, keys: list[str]) -> dict[str, Any] | None:
        """The payloads of ``keys`` if every one may be served here, else None.

        All or nothing: a batch is an entry and its counters, and when one of them
        must be read again, all are read in that round trip. So an entry is never
        checked later than the counters it is served with were, and a hit's answer
        is never older than the bound.
        """
        found: dict[str, Any] = {}
        now = monotonic()
        data = self.data
        since = self.vouched_since()
        bound = self.bound
        ends = math.inf
        with self.lock:
            for key in keys:
                slot = data.get(key)
                if slot is None:
                    return None
                checked = slot.checked
                if now >= slot.expires or (checked < since and now - checked >= bound):
                    return None
                found[key] = slot.payload
                end = slot.expires if checked >= since else min(checked + bound, slot.expires)
                if end < ends:
                    ends = end
            for key in found:
                data.move_to_end(key)
            self.hits += 1
            first = keys[0]
            record = self.records.get(first)
            if record is None or record[2] != ends or record[0] is not found[first]:
                # Its end on the monotonic clock, as the bound (memokit.fastindex).
                self.records[first] = (found[first], ends, ends)
                if self.vouched_since() != since:
                    # The assistance was lost or renewed meanwhile (the setter takes no
                    # lock and clears the records): this record may rest on it.
                    self.records.pop(first, None)
        return found

    # -- the generation guard -----------------------------------------------------

    def token(self, key: str) -> tuple[int, int]:
        """What a fill of ``key`` must still find to be kept; take it before the read."""
        return self.epoch, self.stripes[hash(key) & _MASK]

    def fill(self, key: str, payload: Any, started: float, token: tuple[int, int]) -> None:
        """Keep ``payload`` read from the second tier (read sent at ``started``), unless
        ``key`` changed since ``token`` was taken; a missing payload drops the slot."""
        with self.lock:
            if token[0] != self.epoch or token[1] != self.stripes[hash(key) & _MASK]:
                return
            if payload is MISSING:
                self._drop(key)
            else:
                self._insert(key, Slot(payload, started, math.inf, _size(key, payload)))

    def held(self, keys: list[str]) -> tuple[dict[str, Any], list[tuple[int, int]]]:
        """``(payloads held for keys, tokens)``: :meth:`held_stamped` without the stamps."""
        held, _, tokens = self.held_stamped(keys)
        return held, tokens

    def held_stamped(
        self, keys: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[int, int]]]:
        """``(payloads held for keys, their known stamps, tokens)`` before a re-check."""
        held = {}
        stamps = {}
        with self.lock:
            data = self.data
            epoch = self.epoch
            stripes = self.stripes
            tokens = [(epoch, stripes[hash(key) & _MASK]) for key in keys]
            for key in keys:
                slot = data.get(key)
                if slot is not None:
                    held[key] = slot.payload
                    if slot.stamp is not None:
                        stamps[key] = slot.stamp
        return held, stamps, tokens

    def fill_many(
        self,
        found: Mapping[str, Any],
        keys: list[str],
        started: float,
        tokens: list[tuple[int, int]],
        held: Mapping[str, Any] | None = None,
        stamps: Mapping[str, Any] | None = None,
        ttls: Mapping[str, float] | None = None,
    ) -> None:
        """:meth:`fill` of each of ``keys`` with what ``found`` holds for it; a key
        found ``SAME`` as ``held`` keeps its slot (and the value decoded beside it),
        checked anew. ``stamps``: what the read saw of each key's stored write.
        ``ttls``: the seconds each key found had left when read (absent: no expiry),
        so its slot expires at ``started`` plus that, never later than the backend's
        copy; None when the read did not tell (a slot then expires only as this
        process's own write said)."""
        if stamps is None:
            stamps = {}
        with self.lock:
            epoch = self.epoch
            stripes = self.stripes
            data = self.data
            for key, token in zip(keys, tokens, strict=True):
                if token[0] != epoch or token[1] != stripes[hash(key) & _MASK]:
                    continue
                payload = found.get(key, MISSING)
                if payload is MISSING:
                    self._drop(key)
                elif payload is SAME:
                    slot = data.get(key)
                    # Another read's fill may have replaced the slot meanwhile.
                    if slot is not None and held is not None and slot.payload is held[key]:
                        slot.checked = started  # its record is remade by the next split
                        slot.stamp = stamps.get(key, slot.stamp)
                        if ttls is not None:
                            expires = started + ttls[key] if key in ttls else math.inf
                            if expires != slot.expires:
                                slot.expires = expires
                                self.records.pop(key, None)  # it ended at the old expiry
                else:
                    expires = math.inf
                    if ttls is not None and key in ttls:
                        expires = started + ttls[key]
                    slot = Slot(payload, started, expires, _size(key, payload))
                    slot.stamp = stamps.get(key)
                    self._insert(key, slot)

    # -- changes ------------------------------------------------------------------

    def forget(self, key: str) -> tuple[int, int]:
        """Drop ``key`` and move its generation; return the token a :meth:`put` needs."""
        with self.lock:
            stripe = hash(key) & _MASK
            self.stripes[stripe] += 1
            self._forget_records(key)
            self._drop(key)
            return self.epoch, self.stripes[stripe]

    def forget_many(self, keys: Iterable[str]) -> None:
        """:meth:`forget` each key."""
        with self.lock:
            stripes = self.stripes
            for key in keys:
                stripes[hash(key) & _MASK] += 1
                self._forget_records(key)
                self._drop(key)

    def forget_all(self) -> None:
        """Drop every slot and move the epoch (fills under way are not kept)."""
        with self.lock:
            self.epoch += 1
            self.data.clear()
            self.records.clear()
            self.bytes = 0

    def put(
        self,
        key: str,
        payload: Any,
        started: float,
        timeout: float | None,
        token: tuple[int, int],
    ) -> None:
        """Keep what this process just wrote, if nothing else changed ``key`` since its
        :meth:`forget` gave ``token``; otherwise the key stays out (read again)."""
        expires = math.inf if timeout is None else started + timeout
        with self.lock:
            stripe = hash(key) & _MASK
            if token[0] != self.epoch or token[1] != self.stripes[stripe]:
                self.stripes[stripe] += 1
                self._drop(key)
                return
            self.stripes[stripe] += 1  # a read begun before this write keeps nothing
            self._insert(key, Slot(payload, started, expires, _size(key, payload)))

    # -- under the lock -----------------------------------------------------------

    def _forget_records(self, key: str) -> None:
        # The caller holds the lock. A record is keyed by the first key of its batch
        # (an entry) but vouches for the others too (its counters): a record that
        # never expires (assisted) must not outlive a push of one of its counters.
        # A forgotten key that is no record's own may be such a counter: every record
        # goes (the next call of each function remakes its record from tier one).
        if key not in self.records:
            self.records.clear()

    def _drop(self, key: str) -> None:
        slot = self.data.pop(key, None)
        if slot is not None:
            self.bytes -= slot.size
            self.records.pop(key, None)

    def _insert(self, key: str, slot: Slot) -> None:
        self._drop(key)
        if slot.size > self.max_bytes:
            return
        data = self.data
        data[key] = slot
        self.bytes += slot.size
        while len(data) > self.max_entries or self.bytes > self.max_bytes:
            key, old = data.popitem(last=False)
            self.bytes -= old.size
            self.records.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)


def _after_fork_in_child() -> None:
    # A lock another thread held at the fork stays held in the child: new locks.
    # The slots stay (each is still within its bound of when it was checked), but
    # the push connection belongs to the parent: the bound applies again.
    for store in list(_stores):
        store.lock = threading.Lock()
        store.assisted = False
        store.epoch += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
