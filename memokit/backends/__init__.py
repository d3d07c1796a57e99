"""Backends by short name; ``BACKEND`` may also be any dotted path to a ``BaseCache``."""

from __future__ import annotations

from .base import MISSING, BaseCache, Capabilities

BACKENDS: dict[str, str] = {
    "dummy": "memokit.backends.dummy.DummyCache",
    "filesystem": "memokit.backends.filesystem.FileSystemCache",
    "memcached": "memokit.backends.memcached.MemcachedCache",
    "memory": "memokit.backends.memory.MemoryCache",
    "redis": "memokit.backends.redis.RedisCache",
    "redis-cluster": "memokit.backends.rediscluster.RedisClusterCache",
    "redis-sentinel": "memokit.backends.redissentinel.RedisSentinelCache",
    "sqlite": "memokit.backends.sqlite.SQLiteCache",
}
"""Short names accepted as ``BACKEND``, mapped to the class they name."""

OPTIONAL_PACKAGES: dict[str, str] = {
    "redis": "redis",
    "hiredis": "hiredis",
    "pymemcache": "memcached",
}
"""Client libraries a backend imports, mapped to the extra that installs them."""

__all__ = ["BACKENDS", "MISSING", "OPTIONAL_PACKAGES", "BaseCache", "Capabilities"]
