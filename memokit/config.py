"""Configuration: a Django-style ``CACHES`` mapping turned into cache instances.

``configure(CACHES)`` validates and builds every alias at once, so a mistake
raises at start-up rather than at the first cache call. ``caches[alias]`` is one
thread-safe instance per alias per process (Django keeps one per thread; memokit's
backends are thread-safe, so sharing saves connections). ``cache`` is the
``"default"`` alias, looked up at each use, so configuring after import works.
With no configuration, the default alias is a memory cache.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ._secrets import redact_exception, secrets_in
from .backends import BACKENDS, OPTIONAL_PACKAGES, BaseCache
from .exceptions import ImproperlyConfigured, InvalidCacheBackendError, _MissingPackage
from .keys import import_string

DEFAULT_CACHE_ALIAS = "default"
DEFAULT_CACHES: dict[str, dict[str, Any]] = {DEFAULT_CACHE_ALIAS: {"BACKEND": "memory"}}

_SETTINGS = {
    "TIMEOUT": "timeout",
    "KEY_PREFIX": "key_prefix",
    "VERSION": "version",
    "KEY_FUNCTION": "key_function",
}
_KNOWN = {"BACKEND", "LOCATION", "OPTIONS", "TIER", *_SETTINGS}


def get_backend_class(backend: str | type[BaseCache]) -> type[BaseCache]:
    """Return the backend class for a short name (``"memory"``), a dotted path or a class."""
    if isinstance(backend, type):
        cls: object = backend
    elif not isinstance(backend, str):
        raise InvalidCacheBackendError(f"BACKEND must be a name or a dotted path, not {backend!r}")
    elif backend in BACKENDS:
        cls = _import_backend(BACKENDS[backend], backend)
    elif "." in backend:
        try:
            cls = _import_backend(backend, backend)
        except _MissingPackage:
            raise
        except ImproperlyConfigured as exc:
            raise InvalidCacheBackendError(f"Could not find backend {backend!r}: {exc}") from exc
    else:
        close = difflib.get_close_matches(backend.lower(), list(BACKENDS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidCacheBackendError(
            f"Unknown BACKEND {backend!r}; {hint}use one of {', '.join(sorted(BACKENDS))} "
            f"or the dotted path of a memokit.BaseCache subclass"
        )
    if not (isinstance(cls, type) and issubclass(cls, BaseCache)):
        raise InvalidCacheBackendError(f"BACKEND {backend!r} is not a memokit.BaseCache subclass")
    return cls


def _import_backend(dotted_path: str, backend: str) -> object:
    try:
        return import_string(dotted_path, "BACKEND")
    except ImproperlyConfigured as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            missing = cause.name.partition(".")[0]
            extra = OPTIONAL_PACKAGES.get(missing)
            if extra is not None:
                raise _MissingPackage(
                    f"BACKEND {backend!r} needs the {missing!r} package, which is not "
                    f"installed; install it with: pip install 'memokit[{extra}]'"
                ) from cause
        raise


def _kind(value: object) -> str:
    # The type alone: the value itself may hold a password (shown masked or not at all).
    return f"a {type(value).__name__}"


def create_cache(settings: Mapping[str, Any], alias: str = DEFAULT_CACHE_ALIAS) -> BaseCache:
    """Build one cache from a ``CACHES`` entry (``BACKEND``, ``LOCATION``, ``OPTIONS`` ...)."""
    if not isinstance(settings, Mapping):
        raise ImproperlyConfigured(f"CACHES[{alias!r}] must be a mapping, not {_kind(settings)}")
    unknown = sorted(set(settings) - _KNOWN, key=str)
    if unknown:
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}] has unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(sorted(_KNOWN))} (backend options go in OPTIONS)"
        )
    if "BACKEND" not in settings:
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}] has no BACKEND; add for example 'BACKEND': 'memory'"
        )
    try:
        cls = get_backend_class(settings["BACKEND"])
        kwargs = cls.options_to_kwargs(settings.get("OPTIONS") or {})
        for name, kwarg in _SETTINGS.items():
            if name in settings:
                kwargs[kwarg] = settings[name]
        tier = settings.get("TIER")
        if tier is not None and tier is not False:
            from .backends.tiered import TierSettings, tiered  # imports the memory backend

            TierSettings.parse(tier)  # a bad TIER raises before a connection is made
            return tiered(cls(settings.get("LOCATION", ""), **kwargs), tier)
        return cls(settings.get("LOCATION", ""), **kwargs)
    except ImproperlyConfigured as exc:
        # Every message says which alias to fix; the class stays (not a private one).
        # Whatever a backend's message quotes, the settings' secrets are masked in it.
        redact_exception(exc, secrets_in(settings))
        kind = ImproperlyConfigured if isinstance(exc, _MissingPackage) else type(exc)
        raise kind(f"CACHES[{alias!r}]: {exc}") from exc


class CacheHandler:
    """Maps aliases to cache instances: ``caches["default"]``."""

    def __init__(self) -> None:
        self._settings: dict[str, dict[str, Any]] = dict(DEFAULT_CACHES)
        self._instances: dict[str, BaseCache] = {}
        self._lock = threading.Lock()

    def configure(self, caches: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the configuration; every alias is built now, and old instances closed."""
        if not isinstance(caches, Mapping):
            raise ImproperlyConfigured(
                f"CACHES must be a mapping of alias to settings, not {_kind(caches)}"
            )
        if DEFAULT_CACHE_ALIAS not in caches:
            raise ImproperlyConfigured(
                f"CACHES must define a {DEFAULT_CACHE_ALIAS!r} alias; "
                f"add for example {{'default': {{'BACKEND': 'memory'}}}}"
            )
        instances = {alias: create_cache(settings, alias) for alias, settings in caches.items()}
        with self._lock:
            old = self._instances
            self._settings = {alias: dict(settings) for alias, settings in caches.items()}
            self._instances = instances
        for cache in old.values():
            cache.close()

    def __getitem__(self, alias: str) -> BaseCache:
        try:
            return self._instances[alias]
        except KeyError:
            pass
        with self._lock:
            if alias not in self._instances:
                if alias not in self._settings:
                    raise InvalidCacheBackendError(
                        f"The cache alias {alias!r} is not configured; configured aliases: "
                        f"{', '.join(sorted(self._settings))}. Add it to memokit.configure()."
                    )
                self._instances[alias] = create_cache(self._settings[alias], alias)
            return self._instances[alias]

    def __contains__(self, alias: object) -> bool:
        return alias in self._settings

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._settings))

    def all(self, initialized_only: bool = False) -> list[BaseCache]:
        """Return the cache of every alias (only those already built, if asked)."""
        if initialized_only:
            return list(self._instances.values())
        return [self[alias] for alias in self]

    def close_all(self) -> None:
        """Call ``close()`` on every cache built so far."""
        for cache in list(self._instances.values()):
            cache.close()


caches = CacheHandler()


def configure(caches_setting: Mapping[str, Mapping[str, Any]]) -> None:
    """Configure memokit from a Django-style ``CACHES`` mapping."""
    caches.configure(caches_setting)


class DefaultCacheProxy:
    """Forwards every attribute to ``caches["default"]``, looked up at each use."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(caches[DEFAULT_CACHE_ALIAS], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(caches[DEFAULT_CACHE_ALIAS], name, value)

    def __delattr__(self, name: str) -> None:
        delattr(caches[DEFAULT_CACHE_ALIAS], name)

    def __contains__(self, key: Any) -> bool:
        return key in caches[DEFAULT_CACHE_ALIAS]

    def __eq__(self, other: object) -> bool:
        return caches[DEFAULT_CACHE_ALIAS] == other

    def __hash__(self) -> int:
        return hash(caches[DEFAULT_CACHE_ALIAS])

    def __repr__(self) -> str:
        return f"<default cache: {caches[DEFAULT_CACHE_ALIAS]!r}>"


# isinstance(memokit.cache, BaseCache) holds, as its declared type says.
BaseCache.register(DefaultCacheProxy)
