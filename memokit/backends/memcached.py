"""The memcached backend, on pymemcache (``pip install memokit[memcached]``).

One server uses pymemcache's ``PooledClient`` (its plain ``Client`` is not
thread-safe); several use its ``HashClient`` with pooling, under memokit's own
failure policy (``_memcached_ring.py``): a key never moves to another server,
and a server that fails is skipped for the breaker window, raising
``NodeUnavailable`` for its keys only. Keys are checked
against memcached's own rules before any byte is sent: no space or control
character, at most 250 bytes once encoded as UTF-8 (non-ASCII is allowed).

Integers in ``[-2**62, 2**62)`` are stored as decimal text, offset by 2**63 so
that memcached's unsigned ``incr``/``decr`` can add to negative numbers too
without stopping at zero; other values are serialised. The async twins run the
blocking client in a worker thread.

Expiry: memcached counts whole seconds on a clock that ticks once a second,
so an entry given ``t`` seconds is sent ``ceil(t)`` (Django sends ``int(t)``,
which turns 0.5 into "expired") and lives between ``ceil(t) - 1`` and
``ceil(t) + 1`` seconds; more than 30 days is sent as a Unix time. memcached
holds that time in 32 bits: a timeout reaching past 2**31 seconds since the
epoch (``capabilities.latest_expiry``) is sent as 0, "never expires".

A value over the server's item size limit (``-I``, 1 MiB by default) is never
stored and never raises: ``set`` drops it (and removes the old value), ``add``
answers False, with a ``ValueNotStoredWarning`` once per key and window.
"""

from __future__ import annotations

import math
import pickle
import time
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar, Final, NoReturn, Unpack

# pymemcache ships no type hints (no py.typed): its names are Any here.
from pymemcache.client.base import (  # type: ignore[import-untyped]
    PooledClient,
    normalize_server_spec,
)
from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
from pymemcache.exceptions import (  # type: ignore[import-untyped]
    MemcacheClientError,
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)

from .._secrets import redact, redact_exception, secrets_in
from ..exceptions import (
    BackendError,
    BackendUnavailable,
    ImproperlyConfigured,
    InvalidCacheKey,
    NodeUnavailable,
    ValueTooLarge,
)
from ..framing import PAYLOAD_OPTIONS, raw_ints_safe
from ..keys import MEMCACHE_MAX_KEY_LENGTH, clean_keys_pass, key_is_clean, memcache_key_warnings
from ..serializers import (
    FRAME_MAGIC,
    PickleSerializer,
)
from ..timeouts import DEFAULT_TIMEOUT, Timeout
from . import _reports
from ._afterfork import renew_in_children
from ._deadline import DeadlineSocketModule
from ._memcached_meta import NoMeta, on_connection, stamped
from ._memcached_pool import FastPool
from ._memcached_ring import NodeDown, Ring
from ._remote import (
    check_flag,
    check_seconds,
    deserialised,
    parameter_names,
    refused_options,
    split_location,
    split_options,
    unreadable_payload,
)
from .base import MISSING, BaseCache, Capabilities, CommonSettings

DEFAULT_CONNECT_TIMEOUT: Final = 1.0
"""Seconds to wait for a TCP connection to a server."""
DEFAULT_TIMEOUT_SECONDS: Final = 2.0
"""Seconds to wait for a server's answer (pymemcache's ``timeout``)."""

THIRTY_DAYS: Final = 60 * 60 * 24 * 30
"""memcached reads an expiry above this as a Unix time, not as seconds from now."""

LATEST_EXPIRY: Final = 2**31 - 1
"""The latest Unix time memcached's 32-bit expiry holds."""

_loads = pickle.loads
_FLAG_INT = 1 << 4  # an integer stored as text, offset by _BIAS
_BIAS = 2**63
_RAW = range(-(2**62), 2**62)  # kept raw: any native incr by a delta in _RAW fits 64 bits

_OWNED = frozenset({"SERIALIZER", "LOCK_TIMEOUT", "IGNORE_EXC", *PAYLOAD_OPTIONS})
_REFUSED = {
    "serde": "memokit serialises values itself (use the SERIALIZER option)",
    "serializer": "memokit serialises values itself (use the SERIALIZER option)",
    "deserializer": "memokit serialises values itself (use the SERIALIZER option)",
    "allow_unicode_keys": "memokit always allows non-ASCII keys, as Django does",
    "default_noreply": "memokit needs every reply to report failures",
    "key_prefix": "use the KEY_PREFIX setting",
    **dict.fromkeys(
        ("retry_attempts", "retry_timeout", "dead_timeout"),
        "memokit never takes a server out of the ring, since its keys would move and old "
        "counters come back with it; a server that fails is skipped for the breaker window "
        "(memokit.configure_breaker(window=...)), then probed again",
    ),
}
_TIMEOUTS = {"connect_timeout": DEFAULT_CONNECT_TIMEOUT, "timeout": DEFAULT_TIMEOUT_SECONDS}


class _Serde:
    """pymemcache's hook: raw integers get a flag, everything else is bytes already."""

    def serialize(self, key: bytes, value: Any) -> tuple[bytes, int]:
        if type(value) is int:
            return str(value + _BIAS).encode("ascii"), _FLAG_INT
        return value, 0

    def deserialize(self, key: bytes, value: bytes, flags: int) -> Any:
        if flags & _FLAG_INT:
            try:
                return int(value) - _BIAS
            except ValueError:
                # Not memokit's: another client set the flag on other bytes. They
                # are read as any payload is (the serializer's rules: a miss,
                # reported), never raised from every read with the bytes quoted.
                pass
        return value


_STOCK_POOL = ("max_pool_size", "pool_idle_timeout", "lock_generator")
"""pymemcache options that only its own pool honours."""


def _expire(timeout: float | None) -> int:
    if timeout is None:
        return 0  # memcached's "never"
    seconds = math.ceil(timeout)
    if seconds > THIRTY_DAYS:
        seconds += int(time.time())
        if seconds > LATEST_EXPIRY:
            return 0  # memcached would wrap it into the past: "never" is the nearest it holds
    return seconds


def _too_large(exc: Exception) -> ValueTooLarge:
    reason = exc.args[0] if exc.args else b""
    if isinstance(reason, bytes):
        reason = reason.decode("ascii", "replace")
    return ValueTooLarge(f"memcached refused it ({reason or type(exc).__name__})")


class MemcachedCache(BaseCache):
    """A cache on one or several memcached servers."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        local_clock=False,
        sub_second_expiry=False,
        atomic_incr=True,
        cross_process=True,
        persistent=True,
        strict_keys=True,
        blocking_io=True,
        latest_expiry=LATEST_EXPIRY,
    )
    option_names: ClassVar[frozenset[str]] = _OWNED

    def __init__(
        self,
        location: str | list[str] = "127.0.0.1:11211",
        *,
        ignore_exc: bool = False,
        client_options: Mapping[str, Any] | None = None,
        **settings: Unpack[CommonSettings],
    ) -> None:
        servers = split_location(location)
        # memcached has no credentials, but a LOCATION may still carry some by mistake.
        self._secrets = tuple(secrets_in({"LOCATION": servers, "OPTIONS": client_options}))
        shown = [redact(server, self._secrets) for server in servers]
        super().__init__(";".join(shown), **settings)
        self._ignore_exc = check_flag(ignore_exc, "IGNORE_EXC")
        options = self._check_client_options(client_options or {})
        self._native_incr = raw_ints_safe(self.serializer)
        self._no_meta = False  # set once a server refuses meta commands (memcached < 1.6)
        # Bare pickles (the default): _decode reads them without the serializer's call.
        self._bare_pickles = type(self.serializer) is PickleSerializer
        common: dict[str, Any] = {
            "serde": _Serde(),
            "allow_unicode_keys": True,
            "default_noreply": False,
            "no_delay": True,
            # The timeout bounds a whole reply, not each read (_deadline.py).
            "socket_module": DeadlineSocketModule(),
            **options,
        }
        # Every server first: a ';' or ',' in credentials splits them, and the piece
        # before the one with the "@" holds part of them (it must not be quoted).
        for server in servers:
            if "@" in server:
                raise ImproperlyConfigured(
                    f"LOCATION names a server {redact(server, self._secrets)!r} with credentials; "
                    f"memcached "
                    f"(pymemcache) has none: give 'host:port' (for example '127.0.0.1:11211') "
                    f"or 'unix:/path/to/socket', and keep the server on a trusted network"
                )
        specs = []
        for server in servers:
            try:
                specs.append(normalize_server_spec(server))
            except ValueError as exc:
                raise ImproperlyConfigured(
                    f"LOCATION names a server {redact(server, self._secrets)!r} that pymemcache "
                    f"cannot read "
                    f"({redact(str(exc), self._secrets)}); "
                    f"give 'host:port' (for example '127.0.0.1:11211') or 'unix:/path/to/socket'"
                ) from None
        self._specs = specs
        self._common = common
        try:
            # pymemcache reads the options only when it first connects; build
            # the client and one connection object now (no I/O) so a typo raises here.
            self._client: Any = self._make_client()
            pool = self._client if len(specs) == 1 else next(iter(self._client.clients.values()))
            pool._create_client()
        except TypeError as exc:
            accepted = parameter_names([PooledClient.__init__, HashClient.__init__])
            raise refused_options(
                type(self).__name__, "pymemcache", options, _OWNED, accepted, exc
            ) from None
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"OPTIONS for memcached {self.location}: pymemcache refused them "
                f"({redact(str(exc), self._secrets)})"
            ) from None
        renew_in_children(self)

    def _make_client(self) -> Any:
        if len(self._specs) == 1:
            if any(self._common.get(name) for name in _STOCK_POOL):
                return PooledClient(self._specs[0], **self._common)
            return FastPool(self._specs[0], **self._common)
        cache = weakref.ref(self)  # the ring lives as long as the cache: no cycle

        def window() -> float:
            found = cache()
            return _reports.window(found) if found is not None else 5.0

        return Ring(
            self._specs,
            window=window,
            partial_reads=self._ignore_exc,
            name=self.location,
            **self._common,
        )

    def _renew_clients(self) -> None:
        # In a child after fork: never talk on the parent's sockets (two readers of
        # one stream get each other's replies), and never close them either, which
        # takes the pool's lock a parent thread may have held (_afterfork.py).
        self._client = self._make_client()

    @classmethod
    def options_to_kwargs(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """memokit's own OPTIONS become arguments; the rest go to pymemcache's client."""
        own, client = split_options(cls.__name__, options, _OWNED)
        own["client_options"] = client
        return own

    @staticmethod
    def _check_client_options(options: Mapping[str, Any]) -> dict[str, Any]:
        checked = dict(options)
        # Django settings often say use_pooling=True; memokit always pools.
        if checked.get("use_pooling", True) is not True:
            raise ImproperlyConfigured(
                "OPTIONS['use_pooling'] must be True (or left out): memokit always pools "
                "connections, because pymemcache's plain client is not thread-safe"
            )
        checked.pop("use_pooling", None)
        for name in checked:
            if name.lower() in _REFUSED:
                raise ImproperlyConfigured(
                    f"OPTIONS[{name!r}] is not accepted by the memcached backend: "
                    f"{_REFUSED[name.lower()]}"
                )
        for name, default in _TIMEOUTS.items():
            checked[name] = check_seconds(checked.get(name, default), name)
        return checked

    # -- keys and timeouts -----------------------------------------------------

    @clean_keys_pass  # a clean ASCII key passes: @cached may skip calling this
    def validate_key(self, key: str) -> None:
        """Raise ``InvalidCacheKey`` for a key memcached cannot store (checked in bytes)."""
        if key_is_clean(key) and (key.isascii() or len(key.encode()) <= MEMCACHE_MAX_KEY_LENGTH):
            return
        problems = memcache_key_warnings(key)
        if not problems:
            problems = [
                f"Cache key will cause errors if used with memcached: {key!r} "
                f"(longer than {MEMCACHE_MAX_KEY_LENGTH} bytes once encoded as UTF-8)"
            ]
        raise InvalidCacheKey(problems[0])

    def get_backend_timeout(self, timeout: Timeout = DEFAULT_TIMEOUT) -> float | None:
        """Return the expiry sent to memcached: seconds, a Unix time past 30 days, -1 for now.

        None (never expire) is sent as 0, and so is a timeout past ``LATEST_EXPIRY``.
        """
        seconds = self._seconds(timeout)
        if seconds is not None and seconds <= 0:
            return -1
        expire = None if seconds is None else _expire(seconds)
        return expire or None

    # -- encoding ------------------------------------------------------------------

    def _encode(self, value: Any) -> Any:
        if type(value) is int and value in _RAW:
            return value
        return self.serializer.dumps(value)

    def _decode(self, payload: Any) -> Any:
        if self._bare_pickles and type(payload) is bytes:
            # PickleSerializer.loads inlined (the hot read).
            try:
                return _loads(payload)  # pickle trusts the store (docs/security.md)
            except Exception as exc:
                if payload[:2] != FRAME_MAGIC:
                    raise unreadable_payload(exc, f"memcached {self.location}") from None
                # A frame: pickle refused its first opcode, nothing ran; read it below.
        return self._decode_slowly(payload)

    def _decode_slowly(self, payload: Any) -> Any:
        if type(payload) is int:
            return payload
        return deserialised(self.serializer.loads, payload, f"memcached {self.location}")

    def _fail(self, exc: Exception) -> NoReturn:
        if isinstance(exc, NodeDown):
            # One server of several: the ring skips it for a window, the others serve on.
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise NodeUnavailable(
                f"memcached {self.location}: {redact(str(exc), self._secrets)}"
            ) from redact_exception(cause, self._secrets)
        if isinstance(exc, OSError | MemcacheUnexpectedCloseError) or type(exc) is MemcacheError:
            raise BackendUnavailable(
                f"memcached {self.location} is unavailable: {redact(str(exc), self._secrets)}"
            ) from redact_exception(exc, self._secrets)
        raise BackendError(
            f"memcached {self.location} failed: {redact(str(exc), self._secrets)}"
        ) from redact_exception(exc, self._secrets)

    # -- primitives ----------------------------------------------------------------

    def _get(self, key: str) -> Any:
        try:
            payload = self._client.get(key)
        except (OSError, MemcacheError) as exc:
            if self._ignore_exc:
                return MISSING
            self._fail(exc)
        return MISSING if payload is None else payload

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        try:
            return dict(self._client.get_many(keys))
        except (OSError, MemcacheError) as exc:
            if self._ignore_exc:
                return {}
            self._fail(exc)

    def _get_stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tier one's re-check (``memokit.backends.tiered``): ``(found, cas tokens seen)``.

        ``SAME`` for a key whose cas token is still the one in ``stamps``, read
        without its value; see ``_memcached_meta``. A server without meta commands
        (before 1.6) is sent the values, which tier one compares.
        """
        if self._no_meta:
            return self._get_many(keys), {}
        try:
            client = self._client
            if isinstance(client, Ring):
                return client.stamped(keys, stamps)
            return on_connection(client, stamped, keys, stamps)
        except NoMeta:
            self._no_meta = True
            return self._get_many(keys), {}
        except (OSError, MemcacheError) as exc:
            if self._ignore_exc:
                return {}, {}
            self._fail(exc)

    async def _aget_stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The async ``_get_stamped`` (in a worker thread)."""
        return await self._run(self._get_stamped, keys, stamps)

    def _has_key(self, key: str) -> bool:
        return self._get(key) is not MISSING

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        refused = None
        try:
            stored = self._client.set(key, payload, _expire(timeout))
        except MemcacheServerError as exc:
            if isinstance(exc, MemcacheUnexpectedCloseError):
                self._fail(exc)
            stored = False  # "object too large for cache", or out of memory
            refused = exc
        except (OSError, MemcacheError) as exc:
            self._fail(exc)
        if not stored:
            # As Django: never leave the previous value behind a failed set.
            self._delete(key)
        if refused is not None:
            raise _too_large(refused) from None

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        expire = _expire(timeout)
        try:
            failed = list(self._client.set_many(items, expire))
        except MemcacheServerError as exc:
            if isinstance(exc, MemcacheUnexpectedCloseError):
                self._fail(exc)
            # One item was refused and the batch's other replies are lost with
            # the connection: store them one by one to know which failed.
            failed = []
            for key, payload in items.items():
                try:
                    ok = self._client.set(key, payload, expire)
                except MemcacheServerError as one:
                    if isinstance(one, MemcacheUnexpectedCloseError):
                        self._fail(one)
                    ok = False
                except (OSError, MemcacheError) as one:
                    self._fail(one)
                if not ok:
                    failed.append(key)
        except (OSError, MemcacheError) as exc:
            self._fail(exc)
        if failed:
            self._delete_many(failed)
        return failed

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        try:
            return bool(self._client.add(key, payload, _expire(timeout)))
        except MemcacheServerError as exc:
            if isinstance(exc, MemcacheUnexpectedCloseError):
                self._fail(exc)
            raise _too_large(exc) from None
        except (OSError, MemcacheError) as exc:
            self._fail(exc)

    def _touch(self, key: str, timeout: float | None) -> bool:
        try:
            return bool(self._client.touch(key, _expire(timeout)))
        except (OSError, MemcacheError) as exc:
            self._fail(exc)

    def _delete(self, key: str) -> bool:
        try:
            return bool(self._client.delete(key))
        except (OSError, MemcacheError) as exc:
            self._fail(exc)

    def _delete_many(self, keys: list[str]) -> None:
        try:
            self._client.delete_many(keys)
        except (OSError, MemcacheError) as exc:
            self._fail(exc)

    def _clear(self) -> None:
        try:
            self._client.flush_all()
        except (OSError, MemcacheError) as exc:
            self._fail(exc)

    def _incr(self, key: str, delta: int | float) -> Any:
        try:
            # Exact ints only: `x in range` scans the whole range for any other type.
            if self._native_incr and type(delta) is int and delta in _RAW:
                try:
                    if delta >= 0:
                        result = self._client.incr(key, delta)
                    else:
                        result = self._client.decr(key, -delta)
                except MemcacheClientError:
                    # A serialised value (None, a float, a big int ...): add in Python.
                    return self._incr_with_cas(key, delta)
                if result is None or result is False:
                    return MISSING
                value = int(result) - _BIAS
                if value not in _RAW:
                    self._store_out_of_range(key)
                return value
            return self._incr_with_cas(key, delta)
        except (OSError, MemcacheError) as exc:
            self._fail(exc)

    def _incr_with_cas(self, key: str, delta: int | float) -> Any:
        # gets/cas: a concurrent change makes cas fail and we read again, so no
        # update is lost. memcached cannot report an entry's remaining life, so
        # the new value gets the default timeout (as Django's base incr does).
        while True:
            found = self._client.gets(key)
            payload, token = found if found is not None else (None, None)
            if payload is None:
                return MISSING
            value = self._decode(payload) + delta
            stored = self._client.cas(
                key, self._encode(value), token, _expire(self.default_timeout)
            )
            if stored is None:
                return MISSING  # deleted meanwhile
            if stored:
                return value

    def _store_out_of_range(self, key: str) -> None:
        # A native incr left a raw value outside _RAW, where the next one could
        # wrap around 2**64: store it serialised instead (same value).
        while True:
            payload, token = self._client.gets(key)
            if type(payload) is not int or payload in _RAW:
                return
            stored = self._client.cas(
                key, self.serializer.dumps(payload), token, _expire(self.default_timeout)
            )
            if stored is None or stored:
                return

    def close(self, **kwargs: Any) -> None:
        """Close the pooled connections (Django calls ``disconnect_all``)."""
        self._client.close()
