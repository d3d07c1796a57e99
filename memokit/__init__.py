"""memokit: memoisation and caching with Django's cache API, without Django.

>>> import memokit
>>> memokit.cache.set("greeting", "hello", timeout=60)
>>> memokit.cache.get("greeting")
'hello'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__
from .backends.base import MISSING, BaseCache, Capabilities
from .config import CacheHandler, caches, configure, create_cache
from .decorators import SAME_AS_TIMEOUT, cached
from .entry import Entry
from .exceptions import (
    ArgumentTypeWarning,
    BackendError,
    BackendUnavailable,
    CacheKeyWarning,
    CorruptEntryWarning,
    ImproperlyConfigured,
    InvalidCacheBackendError,
    InvalidCacheKey,
    MemokitError,
    NodeUnavailable,
    UnkeyableArgument,
    UnreadableEntry,
    UnsupportedValue,
    ValueFailure,
    ValueFailureWarning,
    ValueNotStoredWarning,
    ValueTooLarge,
)
from .invalidation import (
    Call,
    adecr_version,
    aget_version,
    aincr_version,
    ainvalidate,
    ainvalidate_all,
    ainvalidate_many,
    ainvalidate_tags,
    call,
    decr_version,
    get_version,
    incr_version,
    invalidate,
    invalidate_all,
    invalidate_many,
    invalidate_tags,
)
from .keyencoding import key_by_repr, register_key, unregister_key
from .keys import default_key_func
from .properties import CachedProperty, cached_property
from .resilience import CircuitBreaker, breaker_for, configure_breaker
from .serializers import PickleSerializer, Serializer
from .switches import caching_disabled
from .timeouts import DEFAULT_TIMEOUT, Timeout
from .wrappers import (
    AsyncCachedClassMethod,
    AsyncCachedFunction,
    CachedClassMethod,
    CachedFunction,
    CacheInfo,
    ErrorCounts,
)

if TYPE_CHECKING:
    from .backends.dummy import DummyCache
    from .backends.filesystem import FileSystemCache
    from .backends.memory import MemoryCache
    from .backends.sqlite import SQLiteCache

    cache: BaseCache
else:
    from .config import DefaultCacheProxy

    cache = DefaultCacheProxy()
    del DefaultCacheProxy

# A backend module is imported when it is configured or named, not by `import memokit`
# (the filesystem and SQLite backends alone took a fifth of the import time).
_LAZY: dict[str, str] = {
    "DummyCache": "memokit.backends.dummy",
    "FileSystemCache": "memokit.backends.filesystem",
    "MemoryCache": "memokit.backends.memory",
    "SQLiteCache": "memokit.backends.sqlite",
}


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all

    def __getattr__(name: str) -> object:
        """Import a backend class exported here on first use."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'memokit' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups are plain module attribute reads
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEFAULT_TIMEOUT",
    "MISSING",
    "SAME_AS_TIMEOUT",
    "ArgumentTypeWarning",
    "AsyncCachedClassMethod",
    "AsyncCachedFunction",
    "BackendError",
    "BackendUnavailable",
    "BaseCache",
    "CacheHandler",
    "CacheInfo",
    "CacheKeyWarning",
    "CachedClassMethod",
    "CachedFunction",
    "CachedProperty",
    "Call",
    "Capabilities",
    "CircuitBreaker",
    "CorruptEntryWarning",
    "DummyCache",
    "Entry",
    "ErrorCounts",
    "FileSystemCache",
    "ImproperlyConfigured",
    "InvalidCacheBackendError",
    "InvalidCacheKey",
    "MemokitError",
    "MemoryCache",
    "NodeUnavailable",
    "PickleSerializer",
    "SQLiteCache",
    "Serializer",
    "Timeout",
    "UnkeyableArgument",
    "UnreadableEntry",
    "UnsupportedValue",
    "ValueFailure",
    "ValueFailureWarning",
    "ValueNotStoredWarning",
    "ValueTooLarge",
    "__version__",
    "adecr_version",
    "aget_version",
    "aincr_version",
    "ainvalidate",
    "ainvalidate_all",
    "ainvalidate_many",
    "ainvalidate_tags",
    "breaker_for",
    "cache",
    "cached",
    "cached_property",
    "caches",
    "caching_disabled",
    "call",
    "configure",
    "configure_breaker",
    "create_cache",
    "decr_version",
    "default_key_func",
    "get_version",
    "incr_version",
    "invalidate",
    "invalidate_all",
    "invalidate_many",
    "invalidate_tags",
    "key_by_repr",
    "register_key",
    "unregister_key",
]
