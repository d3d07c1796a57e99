"""The cache contract, stated once.

``BaseCache`` owns everything that is the same on every backend: key making and
validation, timeout normalisation, serialisation, and every public method of
Django's ``BaseCache`` with its ``a``-prefixed async twin. A backend implements
only the primitives (the ``_``-prefixed methods of ``_primitives.Primitives``).

The layer, one job per module, each importing only those before it:
``_capabilities`` (what a backend declares it can do), ``_primitives`` (the
primitives, their defaults and async forms, ``MISSING``), ``_keycheck`` (how an
unsafe key is reported), ``_checks`` (settings and arguments checked once),
``_steps`` (each public method's algorithm, written once for both twins) and this
module, which puts them together; every name stays importable from here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..exceptions import (
    CorruptEntryWarning,
    ImproperlyConfigured,
    ValueNotStoredWarning,
    ValueTooLarge,
)
from ..framing import PAYLOAD_OPTIONS, build_serializer
from ..keys import (
    KeyFunc,
    accepts_clean_keys,
    default_key_func,
    get_key_func,
    key_is_clean,
    made_key_prefix,
    refuse_surrogates,
)
from ..serializers import Serializer, describe
from ..timeouts import DEFAULT_TIMEOUT, Timeout, check_timeout
from . import _reports, _steps
from ._capabilities import Capabilities
from ._checks import (
    CommonSettings,
    CullsByCount,
    check_culling,
    check_delta,
    check_lock_timeout,
    unknown_options,
)
from ._index import IndexView
from ._keycheck import _caller_stacklevel, report_key
from ._primitives import MISSING, UNREADABLE, Primitives, arun, run

if TYPE_CHECKING:
    from ..resilience import CircuitBreaker  # it imports this module

_MEMO_KEYS = 4096  # made keys a cache remembers for get and set (_remember), then anew

__all__ = [
    "MISSING",
    "UNREADABLE",
    "BaseCache",
    "Capabilities",
    "CommonSettings",
    "CullsByCount",
    "_caller_stacklevel",
    "check_culling",
    "check_delta",
    "check_lock_timeout",
    "unknown_options",
]


class BaseCache(Primitives):
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
      ``_adelete``, ``_aincr``, ``_add_or_get``, ``_aadd_or_get``, ``_incr_counter``,
      ``_aincr_counter``
    - payloads and timeouts: ``_encode``, ``_decode``, ``_seconds``
    - value-failure reports: ``_unreadable``, ``_not_stored``
    - made keys: ``_plain_key_prefix`` (the prefix made keys are a concatenation of)
    - the fast index of ``@cached`` (``memokit.fastindex``): ``_index_view`` or None
    - the command line's ``info`` and ``clear`` (``memokit.cli``): ``_count``,
      ``_clear_some`` (optional), ``_clear``
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
        # Made keys of clean str keys (_remember), with the settings they were made under:
        # the common get and set skip key making and validation (a fifth of a memory get).
        self._keys: tuple[str, int, KeyFunc, dict[str, str]] = (
            key_prefix,
            version,
            self.key_func,
            {},
        )
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
        if not key_is_clean(key):
            report_key(key, self.capabilities.strict_keys)

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str:
        """Return the final key (``make_key``) after validating it (``validate_key``)."""
        made = self.make_key(key, version)
        if not made.isascii():
            refuse_surrogates(made)  # the same answer on every backend
        self.validate_key(made)
        return made

    def _remember(self, key: Any, version: int | None, made: str) -> None:
        """Remember ``made``, the made key of ``key``, for ``get`` and ``set`` (``_keys``).

        Only a clean made key of a str at the default version, where keys are made
        and validated as ``BaseCache`` does (a key that warns warns at each call);
        the memo holds while ``key_prefix``, ``version`` and ``key_func`` stay the
        same objects.
        """
        cls = type(self)
        if (
            version is None
            and type(key) is str
            and cls.make_key is BaseCache.make_key
            and cls.make_and_validate_key is BaseCache.make_and_validate_key
            and (cls.validate_key is BaseCache.validate_key or accepts_clean_keys(cls.validate_key))
            and not {"make_key", "make_and_validate_key", "validate_key"} & self.__dict__.keys()
            and key_is_clean(made)
        ):
            memo = self._keys
            if len(memo[3]) >= _MEMO_KEYS or not (
                memo[0] is self.key_prefix and memo[1] is self.version and memo[2] is self.key_func
            ):
                memo = self._keys = (self.key_prefix, self.version, self.key_func, {})
            memo[3][key] = made

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

    # -- made keys by concatenation (for the decorator layer) -----------------

    def _plain_key_prefix(self, version: int, longest: int) -> str | None:
        """Return the prefix ``p`` with ``make_and_validate_key(key, version) == p + key``
        for every key of at most ``longest`` printable ASCII characters without spaces
        (the keys ``@cached`` and its counters make), so such a key needs no key making
        or validation; None when this cache cannot promise that.

        It can with Django's key function, this class's own ``make_key`` and
        ``make_and_validate_key``, a ``validate_key`` that passes every clean key
        (``keys.accepts_clean_keys``), and an ASCII prefix that memcached could store
        with ``longest`` more characters. Anything else (a ``KEY_FUNCTION``, an
        overriding subclass, a long or odd ``KEY_PREFIX``) takes the public path.
        """
        cls = type(self)
        if (
            self.key_func is not default_key_func
            or cls.make_key is not BaseCache.make_key
            or cls.make_and_validate_key is not BaseCache.make_and_validate_key
            or not (
                cls.validate_key is BaseCache.validate_key or accepts_clean_keys(cls.validate_key)
            )
            or not isinstance(self.key_prefix, str)
        ):
            return None
        prefix = made_key_prefix(self.key_prefix, version)
        if prefix.isascii() and key_is_clean(prefix + "k" * longest):
            return prefix
        return None

    def _index_view(self) -> IndexView | None:
        """The ``IndexView`` of an in-process store for ``@cached``'s fast index, or None."""
        return None

    # -- encoding (backends may keep some values as they are) ---------------

    def _encode(self, value: Any) -> Any:
        return self.serializer.dumps(value)

    def _decode(self, payload: Any) -> Any:
        return self.serializer.loads(payload)

    # -- the public API ---------------------------------------------------------
    # Each method's algorithm beyond its common case is in _steps, run here over the
    # sync primitives and in the async twin over the async ones. The common case is
    # one primitive call and stays written out in both twins (driving a generator
    # costs about as much as a whole memory get); a timeout of zero or less never
    # reaches a primitive.

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value at ``key``, or ``default`` when it is missing or expired.

        An entry that cannot be read is a miss: it is removed, with a
        ``CorruptEntryWarning`` once per key and window.
        """
        memo = self._keys  # made keys remembered (_remember)
        made = memo[3].get(key) if version is None and type(key) is str else None
        if made is None or not (
            memo[0] is self.key_prefix and memo[1] is self.version and memo[2] is self.key_func
        ):
            made = self.make_and_validate_key(key, version)  # here: warnings' stack depth
            self._remember(key, version, made)
        payload = self._get(made)
        if payload is MISSING:
            return default
        try:
            return self._decode(payload)
        except UNREADABLE as exc:
            return run(self, _steps.unreadable(self, made, exc, default, payload))

    def set(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` at ``key``; a timeout of 0 or less removes the key instead."""
        memo = self._keys  # made keys remembered (_remember)
        made = memo[3].get(key) if version is None and type(key) is str else None
        if made is None or not (
            memo[0] is self.key_prefix and memo[1] is self.version and memo[2] is self.key_func
        ):
            made = self.make_and_validate_key(key, version)  # here: warnings' stack depth
            self._remember(key, version, made)
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
        unread = None
        if payload is not MISSING:
            try:
                return self._decode(payload)
            except UNREADABLE as exc:
                unread = exc
        return run(self, _steps.fill(self, made, default, seconds, unread, payload))

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
        return run(self, _steps.get_many(self, keys, version))

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Store every item of ``data``; return the keys that could not be stored."""
        return run(self, _steps.set_many(self, data, timeout, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Remove every key in ``keys``."""
        run(self, _steps.delete_many(self, keys, version))

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
        return run(self, _steps.incr_version(self, key, delta, version))

    def decr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move the value at ``key`` to version ``version - delta``."""
        return self.incr_version(key, -delta, version)

    def clear(self) -> None:
        """Remove every entry of the store, whatever its prefix or version (as Django)."""
        self._clear()

    def close(self, **kwargs: Any) -> None:
        """Release connections or handles; the cache can still be used afterwards."""

    # -- value failures: one key's problem, never the backend's (backends/_reports.py) --

    def _unreadable(
        self, made: str, exc: BaseException, then: str = "it counts as a miss and is removed"
    ) -> None:
        _reports.report(
            self, made, f"cannot be read ({describe(exc)}); {then}", CorruptEntryWarning
        )

    def _report_window(self) -> float:
        """Seconds between two reports of one condition: the breaker's window."""
        return _reports.window(self)

    def _not_stored(self, made: str, exc: BaseException | str) -> None:
        _reports.report(
            self,
            made,
            f"was not stored: {exc}; nothing is raised, as a cache may drop any entry",
            ValueNotStoredWarning,
        )

    def _failed_keys(self, originals: Mapping[str, Any], failed: list[str]) -> list[Any]:
        """The caller's keys for the made keys ``_set_many`` could not store, each reported."""
        for m in failed:
            self._not_stored(m, "the backend refused it; set_many lists its key")
        return [originals[m] for m in failed]

    # -- the async twins: the same steps over the async primitives -------------

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async ``get``."""
        made = self.make_and_validate_key(key, version)
        payload = await self._aget(made)
        if payload is MISSING:
            return default
        try:
            return self._decode(payload)
        except UNREADABLE as exc:
            return await arun(self, _steps.unreadable(self, made, exc, default, payload))

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
        unread = None
        if payload is not MISSING:
            try:
                return self._decode(payload)
            except UNREADABLE as exc:
                unread = exc
        return await arun(self, _steps.fill(self, made, default, seconds, unread, payload))

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
        return await arun(self, _steps.get_many(self, keys, version))

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Async ``set_many``."""
        return await arun(self, _steps.set_many(self, data, timeout, version))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Async ``delete_many``."""
        await arun(self, _steps.delete_many(self, keys, version))

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
        return await arun(self, _steps.incr_version(self, key, delta, version))

    async def adecr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async ``decr_version``."""
        return await self.aincr_version(key, -delta, version)

    async def aclear(self) -> None:
        """Async ``clear``."""
        await self._aclear()

    async def aclose(self, **kwargs: Any) -> None:
        """Async ``close``: it calls ``close()`` (Django 5.2 does nothing here)."""
        await self._run(functools.partial(self.close, **kwargs))
