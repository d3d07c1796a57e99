"""memokit: memoisation and caching with Django's cache API, without Django.

>>> import memokit
>>> memokit.cache.set("greeting", "hello", timeout=60)
>>> memokit.cache.get("greeting")
'hello'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .backends.base import MISSING, BaseCache, Capabilities
from .backends.dummy import DummyCache
from .backends.filesystem import FileSystemCache
from .backends.memory import MemoryCache
from .backends.sqlite import SQLiteCache
from .config import CacheHandler, caches, configure, create_cache
from .exceptions import (
    BackendError,
    BackendUnavailable,
    CacheKeyWarning,
    CorruptEntryWarning,
    ImproperlyConfigured,
    InvalidCacheBackendError,
    InvalidCacheKey,
    MemokitError,
)
from .keys import default_key_func
from .serializers import PickleSerializer, Serializer
from .timeouts import DEFAULT_TIMEOUT, Timeout

if TYPE_CHECKING:
    cache: BaseCache
else:
    from .config import DefaultCacheProxy

    cache = DefaultCacheProxy()
    del DefaultCacheProxy

__all__ = [
    "DEFAULT_TIMEOUT",
    "MISSING",
    "BackendError",
    "BackendUnavailable",
    "BaseCache",
    "CacheHandler",
    "CacheKeyWarning",
    "Capabilities",
    "CorruptEntryWarning",
    "DummyCache",
    "FileSystemCache",
    "ImproperlyConfigured",
    "InvalidCacheBackendError",
    "InvalidCacheKey",
    "MemokitError",
    "MemoryCache",
    "PickleSerializer",
    "SQLiteCache",
    "Serializer",
    "Timeout",
    "__version__",
    "cache",
    "caches",
    "configure",
    "create_cache",
    "default_key_func",
]
