"""The cache contract, stated once.

``BaseCache`` owns everything that is the same on every backend: key making and
validation, timeout normalisation, serialisation, and every public method of
Django's ``BaseCache`` with its ``a``-prefixed async twin. A backend implements
only the primitives below (the ``_``-prefixed methods). They take keys that are
already made and validated, payloads that are already encoded, and timeouts
that are already normalised to a positive number of seconds or ``None``; they
never see ``DEFAULT_TIMEOUT`` or a timeout of zero or less.

Required primitives: ``_get``, ``_set``, ``_add``, ``_touch``, ``_delete``,
``_incr`` (which keeps the entry's expiry) and ``_clear``. Batch primitives
(``_get_many``, ``_set_many``, ``_delete_many``, ``_has_key``, ``_add_or_get``) loop over those
by default; a backend overrides them with one query or one round trip. Each
primitive has an async form (``_aget`` ...) that runs the sync one in a worker
thread when the backend does blocking I/O, inline otherwise; a backend with a
native asyncio client overrides them.
"""

from __future__ import annotations

import abc
import asyncio
import difflib
import enum
import functools
import operator
import os
import pickle
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, SupportsIndex, TypedDict, TypeVar

from ..exceptions import (
    CacheKeyWarning,
    ImproperlyConfigured,
    InvalidCacheKey,
    ValueNotStoredWarning,
    ValueTooLarge,
)
from ..framing import PAYLOAD_OPTIONS, build_serializer
from ..keys import (
    KeyFunc,
    get_key_func,
    key_is_clean,
    memcache_key_warnings,
    refuse_surrogates,
)
from ..serializers import Serializer, describe
from ..timeouts import DEFAULT_TIMEOUT, Timeout, check_timeout

if TYPE_CHECKING:
    from ..resilience import CircuitBreaker  # it imports this module

T = TypeVar("T")


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside memokit."""
    # Key validation is reached through different depths (get, get_many, the async
    # twins, a decorator); walk out of the package rather than guess a number.
    frame = sys._getframe(1)
    level = 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR)
        or frame.f_code.co_filename.startswith("<frozen")
        or "asyncio" in frame.f_code.co_filename
    ):
        frame = frame.f_back  # type: ignore[assignment]  # None ends the loop
        level += 1
    return level


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""What a primitive returns for a key that is absent or expired."""

UNREADABLE: Final[tuple[type[Exception], ...]] = (pickle.UnpicklingError, EOFError)
"""What ``_decode`` raises for a payload it cannot read (``UnreadableEntry`` is one)."""


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


class BaseCache(abc.ABC):
    """A cache with Django's low-level API; subclasses implement the primitives.

    Primitives used by the decorator layer
    --------------------------------------
    ``@cached``, ``@cached_property`` and the invalidation counters store entries
    and counters they make themselves (keys already made and safe, payloads of
    their own format), so they skip the public API's key making and validation
    and call these members directly. They are the whole list: outside
    ``memokit/backends/``, no other private member of a cache is touched
    (``tests/test_house_rules.py`` checks it).

    - reads: ``_get``, ``_get_many``, ``_aget``, ``_aget_many``
    - writes: ``_set``, ``_add``, ``_delete``, ``_incr``, ``_aset``, ``_aadd``,
      ``_adelete``, ``_aincr``
    - payloads and timeouts: ``_encode``, ``_decode``, ``_seconds``
    - value-failure reports: ``_unreadable``, ``_not_stored``
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    breaker: CircuitBreaker | None = None
    """This instance's circuit breaker once :func:`memokit.breaker_for` made it (a decorated
    call's failure or ``configure_breaker(cache=...)``); None before. Set there only."""
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"SERIALIZER", "LOCK_TIMEOUT", *PAYLOAD_OPTIONS}
    )
    """The ``OPTIONS`` keys this backend owns; each maps to a lower-case keyword argument."""

    def __init__(
        self,
        location: str = "",
        *,
        timeout: float | None = 300,
        key_prefix: str = "",
        version: int = 1,
        key_function: KeyFunc | str | None = None,
        serializer: Serializer | str | None = None,
        lock_timeout: float = 5.0,
        secret: str | bytes | None = None,
        old_secrets: list[str | bytes] | tuple[str | bytes, ...] | None = None,
        compressor: str | None = None,
        compress_min_size: int | None = None,
        compress_level: int | None = None,
    ) -> None:
        if not isinstance(location, str):
            raise ImproperlyConfigured(
                f"LOCATION must be a str for {type(self).__name__}, not {location!r}"
            )
        self.location = location
        self.default_timeout = check_timeout(timeout, "TIMEOUT", ImproperlyConfigured)
        if not isinstance(key_prefix, str):
            raise ImproperlyConfigured(f"KEY_PREFIX must be a str, not {key_prefix!r}")
        self.key_prefix = key_prefix
        if type(version) is not int:
            # incr_version adds to it; Django accepts anything and fails there, later.
            raise ImproperlyConfigured(f"VERSION must be an int, not {version!r}; e.g. VERSION=1")
        self.version = version
        self.key_func = get_key_func(key_function)
        # Signed by default where other processes can write the store (docs/security.md).
        self.serializer = build_serializer(
            serializer,
            secret=secret,
            old_secrets=old_secrets,
            compressor=compressor,
            compress_min_size=compress_min_size,
            compress_level=compress_level,
            sign_by_default=self.capabilities.cross_process,
        )
        self.lock_timeout = check_lock_timeout(lock_timeout)
        """Seconds a wait for a cross-process lock lasts at most (``OPTIONS['LOCK_TIMEOUT']``):
        the filesystem backend's ``flock`` and the ``lock_lease=`` lock of ``@cached``."""

    @classmethod
    def options_to_kwargs(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Turn an ``OPTIONS`` mapping into constructor keyword arguments."""
        if not isinstance(options, Mapping):
            raise ImproperlyConfigured(f"OPTIONS must be a mapping, not {options!r}")
        kwargs: dict[str, Any] = {}
        unknown = []
        for name, value in options.items():
            if isinstance(name, str) and name.upper() in cls.option_names:
                if name.lower() in kwargs:
                    raise ImproperlyConfigured(
                        f"OPTIONS gives {name.upper()} twice, in two spellings; keep one"
                    )
                kwargs[name.lower()] = value
            else:
                unknown.append(name)
        if unknown:
            raise unknown_options(cls.__name__, unknown, cls.option_names)
        return kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={self.location!r})"

    # -- keys and timeouts --------------------------------------------------

    def make_key(self, key: Any, version: int | None = None) -> str:
        """Return the final key: ``KEY_FUNCTION(key, KEY_PREFIX, version)``."""
        if version is None:
            version = self.version
        return self.key_func(key, self.key_prefix, version)

    def validate_key(self, key: str) -> None:
        """Warn (or, on a strict backend, raise) when memcached could not store ``key``."""
        if key_is_clean(key):
            return
        for message in memcache_key_warnings(key):
            if self.capabilities.strict_keys:
                raise InvalidCacheKey(message)
            warnings.warn(message, CacheKeyWarning, stacklevel=_caller_stacklevel())

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str:
        """Return the final key (``make_key``) after validating it (``validate_key``)."""
        made = self.make_key(key, version)
        if not made.isascii():
            refuse_surrogates(made)  # the same answer on every backend
        self.validate_key(made)
        return made

    def get_backend_timeout(self, timeout: Timeout = DEFAULT_TIMEOUT) -> float | None:
        """Return the absolute expiry time (``time.time()`` based) for ``timeout``, or None.

        As in Django, zero means one second in the past. Backends whose server takes
        relative timeouts override this to show what they send.
        """
        seconds = self._seconds(timeout)
        if seconds is None:
            return None
        return time.time() + (seconds if seconds != 0 else -1)

    def _seconds(self, timeout: Timeout) -> float | None:
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout
        return check_timeout(timeout)

    # -- encoding (backends may keep some values as they are) ---------------

    def _encode(self, value: Any) -> Any:
        return self.serializer.dumps(value)

    def _decode(self, payload: Any) -> Any:
        return self.serializer.loads(payload)

    # -- primitives -----------------------------------------------------------

    @abc.abstractmethod
    def _get(self, key: str) -> Any:
        """Return the payload stored at ``key``, or ``MISSING``.

        Whatever ``_get`` returns, ``_set`` must accept: ``incr_version`` moves
        payloads between keys without decoding them.
        """

    @abc.abstractmethod
    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        """Store ``payload`` for ``timeout`` seconds (None: forever)."""

    @abc.abstractmethod
    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        """Store ``payload`` only when ``key`` holds no live entry; return whether it did."""

    @abc.abstractmethod
    def _touch(self, key: str, timeout: float | None) -> bool:
        """Give a live entry a new expiry; return False when there is none."""

    @abc.abstractmethod
    def _delete(self, key: str) -> bool:
        """Remove ``key``; return whether a live entry was there."""

    @abc.abstractmethod
    def _incr(self, key: str, delta: int | float) -> Any:
        """Add ``delta`` to a live entry, keeping its expiry; return the result or ``MISSING``.

        A value that cannot be added to raises ``TypeError``, whatever the store says.
        """

    @abc.abstractmethod
    def _clear(self) -> None:
        """Remove every entry of the store, whatever its prefix or version."""

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        found = {}
        for key in keys:
            payload = self._get(key)
            if payload is not MISSING:
                found[key] = payload
        return found

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        """Store every item; return the keys that failed."""
        for key, payload in items.items():
            self._set(key, payload, timeout)
        return []

    def _delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self._delete(key)

    def _has_key(self, key: str) -> bool:
        return self._get(key) is not MISSING

    def _add_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        """``_add``; when a live entry was there, return its payload (else ``MISSING``).

        ``get_or_set`` uses it on a miss; a server backend does both in one round trip.
        """
        if self._add(key, payload, timeout):
            return MISSING
        return self._get(key)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self.capabilities.blocking_io:
            return await asyncio.to_thread(func, *args)
        return func(*args)

    async def _aget(self, key: str) -> Any:
        return await self._run(self._get, key)

    async def _aset(self, key: str, payload: Any, timeout: float | None) -> None:
        await self._run(self._set, key, payload, timeout)

    async def _aadd(self, key: str, payload: Any, timeout: float | None) -> bool:
        return await self._run(self._add, key, payload, timeout)

    async def _atouch(self, key: str, timeout: float | None) -> bool:
        return await self._run(self._touch, key, timeout)

    async def _adelete(self, key: str) -> bool:
        return await self._run(self._delete, key)

    async def _aincr(self, key: str, delta: int | float) -> Any:
        return await self._run(self._incr, key, delta)

    async def _aclear(self) -> None:
        await self._run(self._clear)

    async def _aget_many(self, keys: list[str]) -> dict[str, Any]:
        return await self._run(self._get_many, keys)

    async def _aset_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        return await self._run(self._set_many, items, timeout)

    async def _adelete_many(self, keys: list[str]) -> None:
        await self._run(self._delete_many, keys)

    async def _ahas_key(self, key: str) -> bool:
        return await self._run(self._has_key, key)

    async def _aadd_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        if await self._aadd(key, payload, timeout):
            return MISSING
        return await self._aget(key)

    # -- the public API ---------------------------------------------------------
    # Each method does its key, timeout and encoding work here and leaves only
    # storage to the primitives; a timeout of zero or less never reaches them.

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value at ``key``, or ``default`` when it is missing or expired.

        An entry that cannot be read is a miss: it is removed, with a
        ``CorruptEntryWarning`` once per key and window.
        """
        made = self.make_and_validate_key(key, version)
        payload = self._get(made)
        if payload is MISSING:
            return default
        try:
            return self._decode(payload)
        except UNREADABLE as exc:
            self._unreadable(made, exc)
            self._delete(made)
            return default

    def set(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` at ``key``; a timeout of 0 or less removes the key instead."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        payload = self._encode(value)
        if seconds is not None and seconds <= 0:
            self._delete(made)
            return
        try:
            self._set(made, payload, seconds)
        except ValueTooLarge as exc:
            self._not_stored(made, exc)

    def add(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent; return True if stored (or timeout <= 0)."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        payload = self._encode(value)
        if seconds is not None and seconds <= 0:
            # Django's answer: True when nothing live is there, and nothing is stored.
            return not self._has_key(made)
        try:
            return self._add(made, payload, seconds)
        except ValueTooLarge as exc:
            self._not_stored(made, exc)
            return False

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Return the value at ``key``; on a miss store ``default`` (called if callable)."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        payload = self._get(made)
        if payload is not MISSING:
            try:
                return self._decode(payload)
            except UNREADABLE as exc:
                self._unreadable(made, exc)
                self._delete(made)
        value = default() if callable(default) else default
        encoded = self._encode(value)
        if seconds is not None and seconds <= 0:
            return self._decode(encoded)
        # If another caller stored a value between our read and our add, theirs wins.
        # Either way the caller gets the stored form: what a later hit returns, also
        # with a lossy serializer.
        try:
            found = self._add_or_get(made, encoded, seconds)
        except ValueTooLarge as exc:
            self._not_stored(made, exc)
            found = MISSING
        if found is not MISSING:
            try:
                return self._decode(found)
            except UNREADABLE as exc:
                self._unreadable(made, exc)  # theirs cannot be read; ours is returned
        return self._decode(encoded)

    def touch(
        self, key: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Give ``key`` a new timeout; return False when it is missing."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        if seconds is not None and seconds <= 0:
            return self._delete(made)
        return self._touch(made, seconds)

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Remove ``key``; return True when a live entry was removed."""
        return self._delete(self.make_and_validate_key(key, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys that are present; missing keys are left out.

        Entries that cannot be read are left out and removed, as ``get`` does.
        """
        made = {self.make_and_validate_key(key, version): key for key in keys}
        found = self._get_many(list(made))
        values, unreadable = self._decode_many(made, found)
        if unreadable:
            self._delete_many(unreadable)
        return values

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Store every item of ``data``; return the keys that could not be stored."""
        seconds = self._seconds(timeout)
        originals, items = self._encode_many(data, version)
        if not items:
            return []
        if seconds is not None and seconds <= 0:
            self._delete_many(list(items))
            return []
        return self._failed_keys(originals, self._set_many(items, seconds))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Remove every key in ``keys``."""
        made = [self.make_and_validate_key(key, version) for key in keys]
        if made:
            self._delete_many(made)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Return True when ``key`` holds a live entry (a stored None counts)."""
        return self._has_key(self.make_and_validate_key(key, version))

    def __contains__(self, key: Any) -> bool:
        """``key in cache`` is ``cache.has_key(key)``."""
        return self.has_key(key)

    def incr(self, key: Any, delta: int | float = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value at ``key``, keeping its expiry; return the result.

        Raise ``ValueError`` when the key is missing, and ``TypeError`` (before any I/O)
        when ``delta`` is not an int, an integer type with ``__index__`` or a float.
        """
        delta = check_delta(delta)
        result = self._incr(self.make_and_validate_key(key, version), delta)
        if result is MISSING:
            raise ValueError(f"Key '{key}' not found")
        return result

    def decr(self, key: Any, delta: int | float = 1, version: int | None = None) -> Any:
        """Subtract ``delta`` from the value at ``key``; ``incr(key, -delta)``."""
        return self.incr(key, -check_delta(delta), version)

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move the value at ``key`` to version ``version + delta``; return the new version.

        As in Django, the moved entry gets the default timeout, and a value already
        stored at the new version is overwritten. Raise ``ValueError`` when missing.
        """
        if version is None:
            version = self.version
        old = self.make_and_validate_key(key, version)
        payload = self._get(old)
        if payload is MISSING:
            raise ValueError(f"Key '{key}' not found")
        if delta == 0:
            return version  # nothing to move (Django would delete the value here)
        new = self.make_and_validate_key(key, version + delta)
        self._store(new, payload, self.default_timeout)
        self._delete(old)
        return version + delta

    def decr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move the value at ``key`` to version ``version - delta``."""
        return self.incr_version(key, -delta, version)

    def clear(self) -> None:
        """Remove every entry of the store, whatever its prefix or version (as Django)."""
        self._clear()

    def close(self, **kwargs: Any) -> None:  # noqa: B027 - a no-op is right for most backends
        """Release connections or handles; the cache can still be used afterwards."""

    def _store(self, made: str, payload: Any, seconds: float | None) -> None:
        if seconds is not None and seconds <= 0:
            self._delete(made)
        else:
            self._set(made, payload, seconds)

    # -- value failures: one key's problem, never the backend's (memokit.resilience) --

    def _unreadable(
        self, made: str, exc: BaseException, then: str = "it counts as a miss and is removed"
    ) -> None:
        from ..resilience import report_value_failure  # it imports this module

        report_value_failure(self, made, f"cannot be read ({describe(exc)}); {then}")

    def _report_window(self) -> float:
        """Seconds between two reports of one condition: the breaker's window."""
        from ..resilience import breaker_for

        return breaker_for(self).settings.window

    def _not_stored(self, made: str, exc: BaseException | str) -> None:
        from ..resilience import report_value_failure

        report_value_failure(
            self,
            made,
            f"was not stored: {exc}; nothing is raised, as a cache may drop any entry",
            ValueNotStoredWarning,
        )

    def _decode_many(
        self, made: Mapping[str, Any], found: Mapping[str, Any]
    ) -> tuple[dict[Any, Any], list[str]]:
        values: dict[Any, Any] = {}
        unreadable: list[str] = []
        for m in made:
            if m in found:
                try:
                    values[made[m]] = self._decode(found[m])
                except UNREADABLE as exc:
                    self._unreadable(m, exc)
                    unreadable.append(m)
        return values, unreadable

    def _failed_keys(self, originals: Mapping[str, Any], failed: list[str]) -> list[Any]:
        for m in failed:
            self._not_stored(m, "the backend refused it; set_many lists its key")
        return [originals[m] for m in failed]

    def _encode_many(
        self, data: Mapping[Any, Any], version: int | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # Every key is validated and every value encoded before anything is stored,
        # so an unpicklable value leaves the store untouched.
        originals: dict[str, Any] = {}
        items: dict[str, Any] = {}
        for key, value in data.items():
            made = self.make_and_validate_key(key, version)
            originals[made] = key
            items[made] = self._encode(value)
        return originals, items

    # -- the async twins: the same logic over the async primitives -------------

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async ``get``."""
        made = self.make_and_validate_key(key, version)
        payload = await self._aget(made)
        if payload is MISSING:
            return default
        try:
            return self._decode(payload)
        except UNREADABLE as exc:
            self._unreadable(made, exc)
            await self._adelete(made)
            return default

    async def aset(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Async ``set``."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        payload = self._encode(value)
        if seconds is not None and seconds <= 0:
            await self._adelete(made)
            return
        try:
            await self._aset(made, payload, seconds)
        except ValueTooLarge as exc:
            self._not_stored(made, exc)

    async def aadd(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async ``add``."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        payload = self._encode(value)
        if seconds is not None and seconds <= 0:
            return not await self._ahas_key(made)
        try:
            return await self._aadd(made, payload, seconds)
        except ValueTooLarge as exc:
            self._not_stored(made, exc)
            return False

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Async ``get_or_set``; a callable ``default`` is called, not awaited."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        payload = await self._aget(made)
        if payload is not MISSING:
            try:
                return self._decode(payload)
            except UNREADABLE as exc:
                self._unreadable(made, exc)
                await self._adelete(made)
        value = default() if callable(default) else default
        encoded = self._encode(value)
        if seconds is not None and seconds <= 0:
            return self._decode(encoded)
        try:
            found = await self._aadd_or_get(made, encoded, seconds)
        except ValueTooLarge as exc:
            self._not_stored(made, exc)
            found = MISSING
        if found is not MISSING:
            try:
                return self._decode(found)
            except UNREADABLE as exc:
                self._unreadable(made, exc)
        return self._decode(encoded)

    async def atouch(
        self, key: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async ``touch``."""
        made = self.make_and_validate_key(key, version)
        seconds = self._seconds(timeout)
        if seconds is not None and seconds <= 0:
            return await self._adelete(made)
        return await self._atouch(made, seconds)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """Async ``delete``."""
        return await self._adelete(self.make_and_validate_key(key, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Async ``get_many``."""
        made = {self.make_and_validate_key(key, version): key for key in keys}
        found = await self._aget_many(list(made))
        values, unreadable = self._decode_many(made, found)
        if unreadable:
            await self._adelete_many(unreadable)
        return values

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Async ``set_many``."""
        seconds = self._seconds(timeout)
        originals, items = self._encode_many(data, version)
        if not items:
            return []
        if seconds is not None and seconds <= 0:
            await self._adelete_many(list(items))
            return []
        return self._failed_keys(originals, await self._aset_many(items, seconds))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Async ``delete_many``."""
        made = [self.make_and_validate_key(key, version) for key in keys]
        if made:
            await self._adelete_many(made)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """Async ``has_key``."""
        return await self._ahas_key(self.make_and_validate_key(key, version))

    async def aincr(self, key: Any, delta: int | float = 1, version: int | None = None) -> Any:
        """Async ``incr``: atomic where ``incr`` is, and it keeps the expiry too."""
        delta = check_delta(delta)
        result = await self._aincr(self.make_and_validate_key(key, version), delta)
        if result is MISSING:
            raise ValueError(f"Key '{key}' not found")
        return result

    async def adecr(self, key: Any, delta: int | float = 1, version: int | None = None) -> Any:
        """Async ``decr``."""
        return await self.aincr(key, -check_delta(delta), version)

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async ``incr_version``."""
        if version is None:
            version = self.version
        old = self.make_and_validate_key(key, version)
        payload = await self._aget(old)
        if payload is MISSING:
            raise ValueError(f"Key '{key}' not found")
        if delta == 0:
            return version
        new = self.make_and_validate_key(key, version + delta)
        seconds = self.default_timeout
        if seconds is not None and seconds <= 0:
            await self._adelete(new)
        else:
            await self._aset(new, payload, seconds)
        await self._adelete(old)
        return version + delta

    async def adecr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async ``decr_version``."""
        return await self.aincr_version(key, -delta, version)

    async def aclear(self) -> None:
        """Async ``clear``."""
        await self._aclear()

    async def aclose(self, **kwargs: Any) -> None:
        """Async ``close``: it calls ``close()`` (Django 5.2 does nothing here)."""
        await self._run(functools.partial(self.close, **kwargs))
