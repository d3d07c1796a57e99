"""memokit behind Django's ``CACHES``: any memokit backend as a Django cache backend.

    CACHES = {
        "default": {
            "BACKEND": "memokit.contrib.django.MemokitCache",
            "LOCATION": "/var/cache/myapp",
            "OPTIONS": {"BACKEND": "filesystem", "MAX_ENTRIES": 10_000},
        }
    }

``OPTIONS["BACKEND"]`` names the memokit backend (a short name such as
``"memory"`` or a dotted path; ``"memory"`` when absent), ``OPTIONS["TIER"]``
an in-process tier one in front of it (docs/tiers.md); the other ``OPTIONS``
keys are that backend's own. ``TIMEOUT``, ``KEY_PREFIX``, ``VERSION`` and
``KEY_FUNCTION`` mean what they mean in Django.

Every public method of Django's ``BaseCache``, async twins included, is
forwarded to the memokit cache, so memokit's own logic answers each call rather
than Django's defaults (Django's ``aincr`` would be a non-atomic get and set, for
example). Key problems surface as Django's own ``CacheKeyWarning`` and
``InvalidCacheKey``, and configuration mistakes as Django's
``ImproperlyConfigured``, so code written against Django keeps catching what it
caught before.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from django.core.cache.backends.base import DEFAULT_TIMEOUT as DJANGO_DEFAULT_TIMEOUT
    from django.core.cache.backends.base import BaseCache as DjangoBaseCache
    from django.core.cache.backends.base import CacheKeyWarning as DjangoCacheKeyWarning
    from django.core.cache.backends.base import (
        InvalidCacheBackendError as DjangoInvalidCacheBackendError,
    )
    from django.core.cache.backends.base import InvalidCacheKey as DjangoInvalidCacheKey
    from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured
except ImportError as exc:  # pragma: no cover - exercised only without Django installed
    raise ImportError(
        "memokit.contrib.django needs Django; install it with: pip install 'memokit[django]'"
    ) from exc

from .._secrets import redact, redact_exception, secrets_in
from ..backends.base import BaseCache, CullsByCount
from ..config import get_backend_class
from ..exceptions import ImproperlyConfigured, InvalidCacheBackendError, InvalidCacheKey
from ..keys import KeyFunc, accepts_clean_keys, clean_keys_pass, key_is_clean, memcache_key_warnings
from ..timeouts import DEFAULT_TIMEOUT, Timeout

__all__ = ["MemokitCache", "build_memokit_cache"]

DEFAULT_BACKEND = "memory"
"""The memokit backend used when ``OPTIONS`` names none (Django's default is locmem)."""

_SETTINGS = {"TIMEOUT": "timeout", "KEY_PREFIX": "key_prefix", "VERSION": "version"}
_KNOWN = {*_SETTINGS, "KEY_FUNCTION", "OPTIONS"}


def _timeout(timeout: Any) -> Timeout:
    # Django's DEFAULT_TIMEOUT is its own sentinel object; memokit has another.
    return DEFAULT_TIMEOUT if timeout is DJANGO_DEFAULT_TIMEOUT else timeout


@functools.cache
def _with_django_key_errors(cls: type[BaseCache]) -> type[BaseCache]:
    """Return a subclass of ``cls`` that reports key problems with Django's classes.

    A backend that keeps memokit's key rules gets them with Django's warning and
    error classes. A backend with rules of its own (memcached counts bytes) keeps
    them, and the ``InvalidCacheKey`` they raise becomes Django's.
    """
    own_rules = cls.validate_key

    if own_rules is BaseCache.validate_key:

        def validate_key(self: BaseCache, key: str) -> None:
            if key_is_clean(key):
                return
            for message in memcache_key_warnings(key):
                if self.capabilities.strict_keys:
                    raise DjangoInvalidCacheKey(message)
                # user code -> adapter -> memokit method -> make_and_validate_key -> here
                warnings.warn(message, DjangoCacheKeyWarning, stacklevel=5)

    else:

        def validate_key(self: BaseCache, key: str) -> None:
            try:
                own_rules(self, key)
            except InvalidCacheKey as exc:
                raise DjangoInvalidCacheKey(str(exc)) from exc

    validate_key.__doc__ = own_rules.__doc__
    if own_rules is BaseCache.validate_key or accepts_clean_keys(own_rules):
        clean_keys_pass(validate_key)  # the same keys pass as before, only the classes differ
    return type(
        cls.__name__,
        (cls,),
        {
            "validate_key": validate_key,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )


def build_memokit_cache(location: Any, params: Mapping[str, Any]) -> BaseCache:
    """Build the memokit cache that a Django ``CACHES`` entry describes.

    Raise Django's ``InvalidCacheBackendError`` for an unknown memokit backend and
    Django's ``ImproperlyConfigured`` for any other bad setting.
    """
    # Django does not tell a backend its alias: the message names what the settings say.
    secrets = secrets_in({**params, "LOCATION": location})
    shown = repr(redact(location, secrets)) if isinstance(location, str) else redact(location)
    where = f"memokit.contrib.django.MemokitCache (LOCATION {shown})"
    unknown = sorted(set(params) - _KNOWN, key=str)
    if unknown:
        raise DjangoImproperlyConfigured(
            f"{where}: unknown setting(s) {', '.join(map(repr, unknown))}; known settings: "
            f"BACKEND, LOCATION, {', '.join(sorted(_KNOWN))} (backend options go in OPTIONS)"
        )
    options = params.get("OPTIONS") or {}
    if not isinstance(options, Mapping):
        raise DjangoImproperlyConfigured(
            f"{where}: OPTIONS must be a mapping, not a {type(options).__name__}"
        )
    options = dict(options)
    backend = options.pop("BACKEND", DEFAULT_BACKEND)
    tier = options.pop("TIER", None)
    where += f" with OPTIONS['BACKEND'] {backend!r}"
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    try:
        cls = _with_django_key_errors(get_backend_class(backend))
        kwargs = cls.options_to_kwargs(options)
        for name, kwarg in _SETTINGS.items():
            if name in params:
                kwargs[kwarg] = params[name]
        if "KEY_FUNCTION" in params:
            kwargs["key_function"] = params["KEY_FUNCTION"]
        if tier is not None and tier is not False:
            from ..backends.tiered import TierSettings, tiered

            TierSettings.parse(tier)  # a bad TIER raises before a connection is made
            return tiered(cls(location, **kwargs), tier)
        return cls(location, **kwargs)
    except InvalidCacheBackendError as exc:
        redact_exception(exc, secrets)
        raise DjangoInvalidCacheBackendError(
            f"{where}: {exc}; name a memokit backend with OPTIONS['BACKEND']"
        ) from exc
    except ImproperlyConfigured as exc:
        redact_exception(exc, secrets)
        raise DjangoImproperlyConfigured(f"{where}: {exc}") from exc


class MemokitCache(DjangoBaseCache):  # type: ignore[misc]  # Django ships no type information
    """A Django cache backend that forwards every call to a memokit cache.

    ``self.memokit`` is that cache. Django's own ``BaseCache.__init__`` is not
    called: every setting it would parse is parsed by memokit, and the attributes
    Django's code reads (``key_func``, ``default_timeout``, ``_max_entries`` ...)
    are views of the memokit cache's, writable, so a change is seen by both.
    """

    def __init__(self, location: Any, params: Mapping[str, Any]) -> None:
        self.memokit = build_memokit_cache(location, params)

    def __repr__(self) -> str:
        return f"<MemokitCache over {self.memokit!r}>"

    # -- the attributes Django's BaseCache sets, as views of memokit's ----------

    @property
    def key_func(self) -> KeyFunc:
        """The key function in use (``KEY_FUNCTION``); assigning it changes memokit's."""
        return self.memokit.key_func

    @key_func.setter
    def key_func(self, value: KeyFunc) -> None:
        self.memokit.key_func = value

    @property
    def key_prefix(self) -> str:
        """``KEY_PREFIX``."""
        return self.memokit.key_prefix

    @key_prefix.setter
    def key_prefix(self, value: str) -> None:
        self.memokit.key_prefix = value

    @property
    def version(self) -> int:
        """``VERSION``, the default version of every key."""
        return self.memokit.version

    @version.setter
    def version(self, value: int) -> None:
        self.memokit.version = value

    @property
    def default_timeout(self) -> float | None:
        """``TIMEOUT`` in seconds, or None for never."""
        return self.memokit.default_timeout

    @default_timeout.setter
    def default_timeout(self, value: float | None) -> None:
        self.memokit.default_timeout = value

    # Django's own tests read and write these private names on the cache; they map
    # to the public properties of a backend that culls by count.
    @property
    def _max_entries(self) -> int:
        return self._culling("_max_entries").max_entries

    @_max_entries.setter
    def _max_entries(self, value: int) -> None:
        self._culling("_max_entries").max_entries = value

    @property
    def _cull_frequency(self) -> int:
        return self._culling("_cull_frequency").cull_frequency

    @_cull_frequency.setter
    def _cull_frequency(self, value: int) -> None:
        self._culling("_cull_frequency").cull_frequency = value

    def _culling(self, name: str) -> CullsByCount:
        cache = self.memokit
        if not isinstance(cache, CullsByCount):
            raise AttributeError(
                f"{type(cache).__name__} does not cull by count, so it has no {name}"
            )
        return cache

    # -- keys and timeouts --------------------------------------------------------

    def make_key(self, key: Any, version: int | None = None) -> str:
        """Return the final key: ``KEY_FUNCTION(key, KEY_PREFIX, version)``."""
        return self.memokit.make_key(key, version)

    def validate_key(self, key: str) -> None:
        """Warn with Django's ``CacheKeyWarning`` (or raise ``InvalidCacheKey``) for a bad key."""
        self.memokit.validate_key(key)

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str:
        """Return the final key after validating it."""
        return self.memokit.make_and_validate_key(key, version)

    def get_backend_timeout(self, timeout: Any = DJANGO_DEFAULT_TIMEOUT) -> float | None:
        """Return what the memokit backend makes of ``timeout`` (see its docs)."""
        return self.memokit.get_backend_timeout(_timeout(timeout))

    # -- sync -------------------------------------------------------------------------

    def add(
        self,
        key: Any,
        value: Any,
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """Store ``value`` only if ``key`` is absent; return True if stored."""
        return self.memokit.add(key, value, _timeout(timeout), version)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value at ``key``, or ``default``."""
        return self.memokit.get(key, default, version)

    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        """Store ``value`` at ``key``."""
        self.memokit.set(key, value, _timeout(timeout), version)

    def touch(
        self, key: Any, timeout: Any = DJANGO_DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Give ``key`` a new timeout; return False when it is missing."""
        return self.memokit.touch(key, _timeout(timeout), version)

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Remove ``key``; return True when a live entry was removed."""
        return self.memokit.delete(key, version)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys that are present."""
        return self.memokit.get_many(keys, version)

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Return the value at ``key``; on a miss store ``default`` (called if callable)."""
        return self.memokit.get_or_set(key, default, _timeout(timeout), version)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Return True when ``key`` holds a live entry."""
        return self.memokit.has_key(key, version)

    def __contains__(self, key: Any) -> bool:
        """``key in cache``."""
        return self.memokit.has_key(key)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value at ``key``, keeping its expiry."""
        return self.memokit.incr(key, delta, version)

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Subtract ``delta`` from the value at ``key``."""
        return self.memokit.decr(key, delta, version)

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Store every item; return the keys that could not be stored."""
        return self.memokit.set_many(data, _timeout(timeout), version)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Remove every key in ``keys``."""
        self.memokit.delete_many(keys, version)

    def clear(self) -> None:
        """Remove every entry of the store, whatever its prefix or version."""
        self.memokit.clear()

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move the value at ``key`` to version ``version + delta``."""
        return self.memokit.incr_version(key, delta, version)

    def decr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move the value at ``key`` to version ``version - delta``."""
        return self.memokit.decr_version(key, delta, version)

    def close(self, **kwargs: Any) -> None:
        """Release the backend's connections or handles (Django calls it after each request)."""
        self.memokit.close(**kwargs)

    # -- async -------------------------------------------------------------------------

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """Async ``add``."""
        return await self.memokit.aadd(key, value, _timeout(timeout), version)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async ``get``."""
        return await self.memokit.aget(key, default, version)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        """Async ``set``."""
        await self.memokit.aset(key, value, _timeout(timeout), version)

    async def atouch(
        self, key: Any, timeout: Any = DJANGO_DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async ``touch``."""
        return await self.memokit.atouch(key, _timeout(timeout), version)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """Async ``delete``."""
        return await self.memokit.adelete(key, version)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Async ``get_many``."""
        return await self.memokit.aget_many(keys, version)

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Async ``get_or_set``."""
        return await self.memokit.aget_or_set(key, default, _timeout(timeout), version)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """Async ``has_key``."""
        return await self.memokit.ahas_key(key, version)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Async ``incr``: atomic where ``incr`` is, and it keeps the expiry (Django's does not)."""
        return await self.memokit.aincr(key, delta, version)

    async def adecr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Async ``decr``."""
        return await self.memokit.adecr(key, delta, version)

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DJANGO_DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Async ``set_many``."""
        return await self.memokit.aset_many(data, _timeout(timeout), version)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Async ``delete_many``."""
        await self.memokit.adelete_many(keys, version)

    async def aclear(self) -> None:
        """Async ``clear``."""
        await self.memokit.aclear()

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async ``incr_version``."""
        return await self.memokit.aincr_version(key, delta, version)

    async def adecr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async ``decr_version``."""
        return await self.memokit.adecr_version(key, delta, version)

    async def aclose(self, **kwargs: Any) -> None:
        """Async ``close`` (Django 5.2's does nothing; memokit's closes)."""
        await self.memokit.aclose(**kwargs)
