"""The stored entry of a decorated call: the value and what it was computed under.

The header is memokit's, the value is the serializer's. An entry records:

- a format tag, which tells memokit's entries apart from anything else found at
  the key; a payload that is not an entry of this format counts as a miss (the
  entries of an older format too: a deploy that changes the format starts cold);
- its times (:class:`Times`): ``created``, the ``time.time()`` at which the
  value was computed; ``fresh_until``, when it stops being fresh;
  ``stale_until``, when its stale window ends and it stops being served
  (``inf``: never); and ``took``, how many seconds the computation took (what
  early recomputation weighs, see :mod:`memokit.freshness`);
- ``versions``, the tuple of version counters the value was computed under (the
  function's, then its tags', see :mod:`memokit.counters`); an entry whose
  versions differ from the current ones is invalid and counts as a miss;
- the value.

A store that serializes (Redis, memcached, SQLite, the filesystem) gets bytes:
a fixed binary header that memokit encodes itself, then the value as the cache's
serializer encodes it (:func:`memokit.framing.dumps_after`)::

    b"\\x80\\xe6"  format (1 byte, 3)  count (uint16)
    versions (count x int64)  created  fresh_until  stale_until  took (4 x float64)
    value payload

(little-endian). ``b"\\x80\\xe6"`` starts no pickle, no frame (``\\x80\\xe5``)
and no raw integer. Every serializer serves entries, since it only sees the
value (JSON could not give back the header's tuples). What a reader expects
comes first: an entry is current when it starts with the bytes of the current
versions (one ``startswith``, made once per versions), and only a current
entry's value is decoded, so a stale or foreign entry is never unpickled.
Under signed pickle the signature covers the header and the value, and is
checked before the value is decompressed or unpickled: a signed value cannot be
replayed under another header.

A store that keeps Python objects in this process (the memory backend,
``Capabilities.keeps_objects``) keeps the entry as a plain tuple
``(tag, times, versions, value)``, never serialized as a whole: the tag is
:data:`FORMAT` when the value is kept as it is (an immutable one), or
:data:`ENCODED` when the cache encoded it (``cache._encode``) and each read
decodes a copy. The hit path then costs a tuple unpacking and a comparison.

This module holds the rules every reader of entries follows, each stated once:
:func:`valid_value` (is a payload an entry valid under the current versions,
and which value does it hold), :func:`value_of` and :func:`plan_is_current`
(may a function's read plan, :class:`memokit.counters.ReadPlan`, still be used
with this cache). The hit path, the miss path, the single flight's waiters and
the counters call them rather than repeat them.
"""

from __future__ import annotations

import math
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

from .backends._primitives import ENTRY_MAGIC, UNREADABLE
from .backends.base import MISSING, BaseCache
from .exceptions import UnreadableEntry
from .framing import FramedSerializer, dumps_after
from .generated import define
from .serializers import describe

if TYPE_CHECKING:
    from .counters import ReadPlan

FORMAT: Final = "mk3"
"""Tag of an in-process entry whose value is kept as it is; bumped with the layout."""
ENCODED: Final = "mk3e"
"""Tag of an in-process entry whose value the cache encoded (``cache._encode``)."""
MAGIC: Final = ENTRY_MAGIC
"""The start of every stored (bytes) entry."""
FORMAT_NUMBER: Final = 3
"""The format byte of a stored entry; bumped with :data:`FORMAT`."""

_PREFIX: Final = struct.Struct("<2sBH")  # magic, format, number of versions
_TIMES: Final = struct.Struct("<dddd")  # created, fresh_until, stale_until, took
_NEVER: Final = math.inf
_MASK: Final = 2**64 - 1
_MAX_PREFIXES: Final = 1024

Versions: TypeAlias = tuple[int, ...]


class Times(NamedTuple):
    """When an entry was computed, until when it is fresh and served, and what it cost."""

    created: float
    """``time.time()`` when the value was computed."""
    fresh_until: float = _NEVER
    """``time.time()`` after which the entry is stale (``inf``: never)."""
    stale_until: float = _NEVER
    """``time.time()`` after which it is no longer served at all (``inf``: never)."""
    took: float = 0.0
    """Seconds the computation took."""


Payload: TypeAlias = Any
"""What is stored: a tuple in a store that keeps objects, bytes in any other."""

_prefixes: dict[Versions, bytes] = {}
"""The leading bytes of a current entry, per versions: the hit path's whole check."""


def _prefix(versions: Versions) -> bytes:
    """What every entry computed under ``versions`` starts with."""
    prefix = _prefixes.get(versions)
    if prefix is None:
        count = len(versions)
        try:
            packed = struct.pack(f"<{count}q", *versions)
        except struct.error:
            # A counter set by hand outside 64 bits: stored modulo 2**64, which keeps
            # equal versions equal.
            packed = struct.pack(f"<{count}Q", *(v & _MASK for v in versions))
        prefix = _PREFIX.pack(MAGIC, FORMAT_NUMBER, count) + packed
        if len(_prefixes) >= _MAX_PREFIXES:
            _prefixes.clear()  # versions move on; a bound is all this needs
        _prefixes[versions] = prefix
    return prefix


def entry_header(
    created: float,
    versions: Versions,
    fresh_until: float = _NEVER,
    stale_until: float = _NEVER,
    took: float = 0.0,
) -> bytes:
    """The header of a stored entry computed at ``created`` under ``versions``."""
    return _prefix(versions) + _TIMES.pack(created, fresh_until, stale_until, took)


def encode_entry(
    cache: BaseCache, value: Any, versions: Versions = (), times: Times | float | None = None
) -> Payload:
    """Return what ``cache`` stores for ``value`` computed now (or with ``times``).

    ``times`` may be a bare ``created`` (fresh for ever). Raise what the
    serializer raises for a value it cannot encode (a ``pickle.PicklingError``).
    """
    if not isinstance(times, Times):
        times = Times(time.time() if times is None else times)
    if cache.capabilities.keeps_objects:
        encoded = cache._encode(value)
        return (FORMAT if encoded is value else ENCODED, times, versions, encoded)
    return dumps_after(cache.serializer, entry_header(times.created, versions, *times[1:]), value)


def _stored_value(data: Any, versions: Versions, cache: BaseCache) -> Any:
    """:func:`valid_value` of a payload that is not an in-process tuple."""
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            return MISSING  # a raw int, a SQLite REAL, something stored by hand
        data = bytes(data)
    prefix = _prefixes.get(versions)
    if prefix is None:
        prefix = _prefix(versions)
    if not data.startswith(prefix):
        # Other versions, an entry of another format (a bare pickle), or not an entry.
        return MISSING
    return _loads(cache, data, len(prefix) + _TIMES.size)


def _loads(cache: BaseCache, data: bytes, start: int) -> Any:
    serializer = cache.serializer
    try:
        if type(serializer) is FramedSerializer:
            return serializer.loads(data, start)  # the signature covers the header
        return serializer.loads(data[start:])
    except UNREADABLE:
        raise
    except Exception as exc:
        # A custom serializer's own error; the message names its type only, as
        # messages can quote the stored bytes.
        raise UnreadableEntry(f"cannot decode the stored value ({describe(exc)})") from None


def _header(data: bytes) -> tuple[Times, Versions, int] | None:
    """``(times, versions, start of the value)`` of a stored entry, or None."""
    if len(data) < _PREFIX.size:
        return None
    magic, number, count = _PREFIX.unpack_from(data)
    start = _PREFIX.size + 8 * count + _TIMES.size
    if magic != MAGIC or number != FORMAT_NUMBER or len(data) < start:
        return None
    versions = struct.unpack_from(f"<{count}q", data, _PREFIX.size)
    return Times._make(_TIMES.unpack_from(data, start - _TIMES.size)), versions, start


def valid_value(payload: Payload, versions: Versions, cache: BaseCache) -> Any:
    """Return the value of ``payload`` if it is an entry valid under ``versions``, else MISSING.

    The one validity rule: an entry of this format whose versions equal
    ``versions``. Anything else (a miss, a foreign value, an entry of another
    format or of older versions) is a miss, and its value is never decoded. A
    valid entry whose value cannot be decoded (damaged, a moved class, a bad
    signature) raises ``UnreadableEntry`` (see ``memokit.backends._primitives.UNREADABLE``).
    """
    if type(payload) is tuple:
        # Unpacking is the cheapest test of the shape (this runs on every hit of
        # the memory backend).
        try:
            tag, _, stored_versions, value = payload
        except ValueError:
            return MISSING
        if stored_versions == versions:
            if tag == FORMAT:
                return value
            if tag == ENCODED:
                return cache._decode(value)
        return MISSING
    return _stored_value(payload, versions, cache)


def timed_value(payload: Payload, versions: Versions, cache: BaseCache) -> Any:
    """:func:`valid_value` with the entry's times: ``(value, times)``, or MISSING.

    The hit path of a function with a freshness policy (stale window, early
    recomputation) reads entries here; the others never look at the times.
    """
    if type(payload) is tuple:
        try:
            tag, times, stored_versions, value = payload
        except ValueError:
            return MISSING
        if stored_versions != versions or type(times) is not Times:
            return MISSING
        if tag == FORMAT:
            return value, times
        if tag == ENCODED:
            return cache._decode(value), times
        return MISSING
    if type(payload) is not bytes:
        if not isinstance(payload, bytearray | memoryview):
            return MISSING
        payload = bytes(payload)
    prefix = _prefixes.get(versions)
    if prefix is None:
        prefix = _prefix(versions)
    if not payload.startswith(prefix):
        return MISSING
    start = len(prefix)
    if len(payload) < start + _TIMES.size:
        return MISSING
    times = Times._make(_TIMES.unpack_from(payload, start))
    return _loads(cache, payload, start + _TIMES.size), times


def value_of(payload: Payload, cache: BaseCache) -> Any:
    """Return (a copy of) the value of the entry ``payload``, whose validity was checked."""
    if type(payload) is tuple:
        return cache._decode(payload[3]) if payload[0] == ENCODED else payload[3]
    header = _header(payload)
    if header is None:
        raise UnreadableEntry("the entry's header is damaged")
    return _loads(cache, payload, header[2])


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry, for code that inspects entries rather than serving them."""

    value: Any
    created: float
    versions: Versions = ()
    fresh_until: float = _NEVER
    """``time.time()`` after which the entry is stale (``inf``: never)."""
    stale_until: float = _NEVER
    """``time.time()`` after which it is no longer served (``inf``: never)."""
    took: float = 0.0
    """Seconds its computation took."""

    @property
    def times(self) -> Times:
        """The entry's times, as its header holds them."""
        return Times(self.created, self.fresh_until, self.stale_until, self.took)

    def to_payload(self, cache: BaseCache) -> Payload:
        """Return what ``cache`` stores for this entry (for ``cache._set``)."""
        return encode_entry(cache, self.value, self.versions, self.times)

    @classmethod
    def from_payload(cls, payload: Payload, cache: BaseCache) -> Entry | None:
        """Return the entry ``cache`` stored as ``payload``, or None when it is not one.

        A valid header whose value cannot be decoded raises ``UnreadableEntry``.
        """
        if type(payload) is tuple:
            if len(payload) == 4 and payload[0] in (FORMAT, ENCODED):
                return cls._of(value_of(payload, cache), payload[1], payload[2])
            return None
        header = _header(payload) if isinstance(payload, bytes) else None
        if header is None:
            return None
        times, versions, start = header
        return cls._of(_loads(cache, payload, start), times, versions)

    @classmethod
    def _of(cls, value: Any, times: Times, versions: Versions) -> Entry:
        created, fresh_until, stale_until, took = times
        return cls(value, created, versions, fresh_until, stale_until, took)

    @classmethod
    def read(cls, cache: BaseCache, key: str, version: int | None = None) -> Entry | None:
        """Return the entry stored at ``key`` (``f.key(...)``), or None when there is none.

        ``cache.get`` does not read entries: the header is memokit's, not the serializer's.
        """
        payload = cache._get(cache.make_and_validate_key(key, version))
        return None if payload is MISSING else cls.from_payload(payload, cache)


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
