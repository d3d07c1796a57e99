"""Raw-operation candidates per backend: memokit, Django's match, the peers, the floor.

A ``Store`` names a statement per operation (``c`` is the client, ``K`` a key
that is set, ``M`` one that is not, ``N`` an integer key, ``V`` the value,
``KS<n>`` / ``D<n>`` the keys and mapping of a batch of ``n``, ``fresh`` an
iterator of keys that the runner prepares untimed). An operation a candidate
cannot do is simply left out of its ``ops``. To add a backend, write one
function that returns its stores and list it in ``BUILDERS``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VALUE = {"id": 7, "name": "value-7", "tags": [1, 2, 3]}
RAW = pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL)  # raw clients store these 57 bytes
SIZES = (10, 100, 1000)
OPS = (
    "get_hit",
    "get_miss",
    "set",
    "add",
    "incr",
    "delete",
    *(f"get_many_{n}" for n in SIZES),
    *(f"set_many_{n}" for n in SIZES),
)
TIMEOUT = 300

DJANGO_API = {
    "get_hit": "c.get(K)",
    "get_miss": "c.get(M)",
    "set": "c.set(K, V)",
    "add": "c.add(next(fresh), V)",
    "incr": "c.incr(N)",
    "delete": "c.delete(next(fresh))",
    **{f"get_many_{n}": f"c.get_many(KS{n})" for n in SIZES},
    **{f"set_many_{n}": f"c.set_many(D{n})" for n in SIZES},
}
"""The statements of anything with Django's cache API (memokit, Django, and close peers)."""


@dataclass
class Store:
    """One candidate of a backend's table."""

    name: str
    role: str
    client: Any
    ops: dict[str, str]
    value: Any
    fill: Callable[[list[Any], Any], object]
    """Store ``value`` under each of these refs (untimed set-up)."""
    drop: Callable[[list[Any]], object]
    """Delete these refs (untimed clean-up)."""
    ref: Callable[[str], Any] = str
    """What the statements use for a key (a path for the raw file floor)."""
    helpers: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def api_store(name: str, role: str, cache: Any, value: Any = VALUE, **over: str) -> Store:
    """A store for an object with Django's cache API; ``over`` replaces some statements."""
    return Store(
        name,
        role,
        cache,
        {**DJANGO_API, **over},
        value,
        fill=lambda refs, v: cache.set_many(dict.fromkeys(refs, v)),
        drop=lambda refs: cache.delete_many(refs),
        close=getattr(cache, "close", lambda: None),
    )


CACHELIB = {"incr": "c.inc(N)", **{f"get_many_{n}": f"c.get_many(*KS{n})" for n in SIZES}}
"""Where cachelib's API differs from Django's: ``inc``, and keys as separate arguments."""


def cachelib_store(name: str, cache: Any) -> Store:
    """A cachelib cache: Django's API but for ``inc`` and ``*keys``."""
    return Store(
        name,
        "peer",
        cache,
        {**DJANGO_API, **CACHELIB},
        VALUE,
        fill=lambda refs, v: cache.set_many(dict.fromkeys(refs, v)),
        drop=lambda refs: cache.delete_many(*refs),
        close=getattr(cache, "close", lambda: None),
    )


def memokit_store(backend: str, location: str, **options: Any) -> Store:
    """memokit's own backend, built the way a user configures it."""
    import memokit

    cache = memokit.create_cache(
        {"BACKEND": backend, "LOCATION": location, "TIMEOUT": TIMEOUT, "OPTIONS": options}
    )
    return api_store(f"memokit {backend}", "memokit", cache)


def _each(fn: Callable[[Any], object]) -> Callable[[list[Any]], None]:
    def run(refs: list[Any]) -> None:
        for ref in refs:
            fn(ref)

    return run


# --- memory ---------------------------------------------------------------------------


def _locked(lock: threading.Lock, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        with lock:
            return fn(*args)

    return call


def _ttl_incr(t: Any, k: str) -> None:
    t[k] = t[k] + 1


def _each_set(cache: Any) -> Callable[[list[Any], Any], None]:
    def fill(refs: list[Any], value: Any) -> None:
        for ref in refs:
            cache.set(ref, value)

    return fill


MAPPING_OPS = {
    "get_hit": "c.get(K)",
    "get_miss": "c.get(M)",
    "set": "c[K] = V",
    "add": "c.setdefault(next(fresh), V)",
    "delete": "c.pop(next(fresh), None)",
    **{f"set_many_{n}": f"c.update(D{n})" for n in SIZES},
}
"""The statements of anything with a dict's methods (a dict, cachebox)."""


def mapping_store(name: str, role: str, mapping: Any, **more: str) -> Store:
    """A store for a mapping with a dict's methods; ``more`` adds statements."""
    return Store(
        name,
        role,
        mapping,
        {**MAPPING_OPS, **more},
        VALUE,
        fill=lambda refs, v: mapping.update(dict.fromkeys(refs, v)),
        drop=_each(lambda r: mapping.pop(r, None)),
    )


def memory_stores(workdir: Path, server: Any) -> list[Store]:
    import cachebox
    import cachelib
    import cachetools
    import moka_py

    from .env import django_cache

    d: dict[str, Any] = {}
    dict_floor = mapping_store(
        "dict",
        "floor",
        d,
        incr="c[N] += 1",
        **{f"get_many_{n}": f"{{k: c[k] for k in KS{n} if k in c}}" for n in SIZES},
    )
    ttl = cachetools.TTLCache(maxsize=1_000_000, ttl=TIMEOUT)
    lock = threading.Lock()
    ct = Store(
        "cachetools TTLCache+Lock",
        "peer",
        ttl,
        {
            "get_hit": "get(K)",
            "get_miss": "get(M)",
            "set": "put(K, V)",
            "add": "add(next(fresh), V)",
            "incr": "incr(c, N)",
            "delete": "pop(next(fresh), None)",
            **{f"get_many_{n}": f"many(KS{n})" for n in SIZES},
            **{f"set_many_{n}": f"update(D{n})" for n in SIZES},
        },
        VALUE,
        fill=lambda refs, v: ttl.update(dict.fromkeys(refs, v)),
        drop=_each(lambda r: ttl.pop(r, None)),
        helpers={
            "get": _locked(lock, ttl.get),
            "put": _locked(lock, ttl.__setitem__),
            "add": _locked(lock, ttl.setdefault),
            "incr": _locked(lock, _ttl_incr),
            "pop": _locked(lock, ttl.pop),
            "many": _locked(lock, lambda ks: {k: ttl[k] for k in ks if k in ttl}),
            "update": _locked(lock, ttl.update),
        },
    )
    simple = cachelib.SimpleCache(threshold=1_000_000, default_timeout=TIMEOUT)
    cl = cachelib_store("cachelib SimpleCache", simple)
    # Thread-safe per call; no incr and no get_many of its own.
    cb = mapping_store("cachebox TTLCache", "peer", cachebox.TTLCache(1_000_000, TIMEOUT))
    moka = moka_py.Moka(1_000_000, ttl=TIMEOUT)
    mk = Store(  # get, set and remove only
        "moka-py Moka",
        "peer",
        moka,
        {
            "get_hit": "c.get(K)",
            "get_miss": "c.get(M)",
            "set": "c.set(K, V)",
            "delete": "c.remove(next(fresh))",
        },
        VALUE,
        fill=_each_set(moka),
        drop=_each(moka.remove),
    )
    locmem = django_cache(
        "django.core.cache.backends.locmem.LocMemCache", "bench", MAX_ENTRIES=1_000_000
    )
    return [
        memokit_store("memory", "bench-memory", MAX_ENTRIES=1_000_000),
        api_store("Django LocMemCache", "django", locmem),
        ct,
        cl,
        cb,
        mk,
        dict_floor,
    ]


# --- filesystem -----------------------------------------------------------------------


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_many(paths: list[str]) -> dict[str, bytes]:
    found = {}
    for p in paths:
        data = _read(p)
        if data is not None:
            found[p] = data
    return found


def _write_many(mapping: dict[str, bytes]) -> None:
    for path, data in mapping.items():
        _write(path, data)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def filesystem_stores(workdir: Path, server: Any) -> list[Store]:
    import cachelib

    from .env import django_cache

    raw_dir = workdir / "files-raw"
    raw_dir.mkdir()
    files = Store(
        "raw files (read; temp file + os.replace)",
        "floor",
        None,
        {
            "get_hit": "read(K)",
            "get_miss": "read(M)",
            "set": "write(K, V)",
            "delete": "remove(next(fresh))",
            **{f"get_many_{n}": f"read_many(KS{n})" for n in SIZES},
            **{f"set_many_{n}": f"write_many(D{n})" for n in SIZES},
        },
        RAW,
        fill=lambda refs, v: _write_many(dict.fromkeys(refs, v)),
        drop=_each(_remove),
        ref=lambda key: str(raw_dir / key.replace(":", "_")),
        helpers={
            "read": _read,
            "write": _write,
            "remove": _remove,
            "read_many": _read_many,
            "write_many": _write_many,
        },
    )
    django = django_cache(
        "django.core.cache.backends.filebased.FileBasedCache",
        str(workdir / "files-django"),
        MAX_ENTRIES=1_000_000,
    )
    fsc = cachelib.FileSystemCache(
        str(workdir / "files-cachelib"), threshold=0, default_timeout=TIMEOUT
    )
    return [
        memokit_store("filesystem", str(workdir / "files-memokit"), MAX_ENTRIES=1_000_000),
        api_store("Django FileBasedCache", "django", django),
        cachelib_store("cachelib FileSystemCache", fsc),
        files,
    ]


# --- sqlite ---------------------------------------------------------------------------


class RawSQLite:
    """The SQLite floor: WAL, synchronous=NORMAL, autocommit, one statement per call."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE c (key TEXT PRIMARY KEY, value BLOB, expires REAL)")

    def get(self, key: str) -> Any:
        return self.db.execute("SELECT value, expires FROM c WHERE key = ?", (key,)).fetchone()

    def set(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO c VALUES (?, ?, ?)", (key, value, TIMEOUT))

    def add(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO c VALUES (?, ?, ?)", (key, value, TIMEOUT))

    def incr(self, key: str) -> None:
        self.db.execute("UPDATE c SET value = value + 1 WHERE key = ?", (key,))

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM c WHERE key = ?", (key,))

    def get_many(self, keys: list[str]) -> list[Any]:
        marks = ", ".join("?" * len(keys))
        sql = f"SELECT key, value, expires FROM c WHERE key IN ({marks})"  # noqa: S608 - only "?"
        return self.db.execute(sql, keys).fetchall()

    def set_many(self, mapping: dict[str, bytes]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO c VALUES (?, ?, ?)",
            [(k, v, TIMEOUT) for k, v in mapping.items()],
        )
        self.db.execute("COMMIT")

    def delete_many(self, keys: list[str]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM c WHERE key = ?", [(k,) for k in keys])
        self.db.execute("COMMIT")


def _diskcache_set_many(cache: Any, mapping: dict[str, Any]) -> None:
    with cache.transact():
        for k, v in mapping.items():
            cache.set(k, v, expire=TIMEOUT)


def sqlite_stores(workdir: Path, server: Any) -> list[Store]:
    import diskcache

    from .env import django_cache, django_cache_table

    raw = RawSQLite(workdir / "raw.db")
    floor = Store(
        "raw sqlite3 (WAL, synchronous=NORMAL)",
        "floor",
        raw,
        {
            "get_hit": "c.get(K)",
            "get_miss": "c.get(M)",
            "set": "c.set(K, V)",
            "add": "c.add(next(fresh), V)",
            "incr": "c.incr(N)",
            "delete": "c.delete(next(fresh))",
            **{f"get_many_{n}": f"c.get_many(KS{n})" for n in SIZES},
            **{f"set_many_{n}": f"c.set_many(D{n})" for n in SIZES},
        },
        RAW,
        fill=lambda refs, v: raw.set_many(dict.fromkeys(refs, v)),
        drop=raw.delete_many,
        close=raw.db.close,
    )
    django_cache_table("bench_cache")
    django = django_cache(
        "django.core.cache.backends.db.DatabaseCache", "bench_cache", MAX_ENTRIES=1_000_000
    )
    dc = diskcache.Cache(str(workdir / "diskcache"))
    disk = Store(
        "diskcache.Cache",
        "peer",
        dc,
        {
            **DJANGO_API,
            "set": "c.set(K, V, expire=300)",
            "add": "c.add(next(fresh), V, expire=300)",
            **{f"get_many_{n}": f"{{k: c.get(k) for k in KS{n}}}" for n in SIZES},
            **{f"set_many_{n}": f"set_many(c, D{n})" for n in SIZES},
        },
        VALUE,
        fill=lambda refs, v: _diskcache_set_many(dc, dict.fromkeys(refs, v)),
        drop=_each(dc.delete),
        helpers={"set_many": _diskcache_set_many},
        close=dc.close,
    )
    return [
        memokit_store("sqlite", str(workdir / "memokit.db"), MAX_ENTRIES=1_000_000),
        api_store("Django DatabaseCache (SQLite, defaults)", "django", django),
        disk,
        floor,
    ]


# --- redis ----------------------------------------------------------------------------


def _redis_set_many(client: Any, mapping: dict[str, bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.mset(mapping)
    for key in mapping:
        pipe.expire(key, TIMEOUT)
    pipe.execute()


def redis_stores(workdir: Path, server: Any) -> list[Store]:
    import cachelib
    import redis

    from .env import django_cache

    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(server.url))
    floor = Store(
        "raw redis-py (GET/SET/MGET/pipeline)",
        "floor",
        client,
        {
            "get_hit": "c.get(K)",
            "get_miss": "c.get(M)",
            "set": "c.set(K, V, ex=300)",
            "add": "c.set(next(fresh), V, ex=300, nx=True)",
            "incr": "c.incr(N)",
            "delete": "c.delete(next(fresh))",
            **{f"get_many_{n}": f"c.mget(KS{n})" for n in SIZES},
            **{f"set_many_{n}": f"set_many(c, D{n})" for n in SIZES},
        },
        RAW,
        fill=lambda refs, v: _redis_set_many(client, dict.fromkeys(refs, v)),
        drop=lambda refs: client.delete(*refs),
        helpers={"set_many": _redis_set_many},
        close=client.close,
    )
    # The floor returns bytes; an application caching objects unpickles them too. This
    # row (the issue-19 note's "decoding floor") shows what that alone costs.
    decoding = Store(
        "raw redis-py + pickle",
        "peer",
        client,
        {
            "get_hit": "loads(c.get(K))",
            "get_miss": "c.get(M)",
            "set": "c.set(K, dumps(V, 5), ex=300)",
            "add": "c.set(next(fresh), dumps(V, 5), ex=300, nx=True)",
            "incr": "c.incr(N)",
            "delete": "c.delete(next(fresh))",
            **{
                f"get_many_{n}": f"{{k: loads(v) for k, v in zip(KS{n}, c.mget(KS{n})) if v}}"
                for n in SIZES
            },
            **{
                f"set_many_{n}": f"set_many(c, {{k: dumps(v, 5) for k, v in D{n}.items()}})"
                for n in SIZES
            },
        },
        VALUE,
        fill=lambda refs, v: _redis_set_many(
            client, dict.fromkeys(refs, v if type(v) is int else pickle.dumps(v, 5))
        ),
        drop=lambda refs: client.delete(*refs),
        helpers={"set_many": _redis_set_many, "loads": pickle.loads, "dumps": pickle.dumps},
    )
    rc = cachelib.RedisCache(server.host, server.port, default_timeout=TIMEOUT)
    return [
        memokit_store("redis", server.url),
        api_store(
            "Django RedisCache",
            "django",
            django_cache("django.core.cache.backends.redis.RedisCache", server.url),
        ),
        cachelib_store("cachelib RedisCache", rc),
        decoding,
        floor,
    ]


# --- memcached ------------------------------------------------------------------------


def memcached_stores(workdir: Path, server: Any) -> list[Store]:
    from pymemcache.client.base import Client

    from .env import django_cache

    # TCP_NODELAY, as memokit sets it: without it a get waits on delayed ACKs in
    # some rounds (bimodal 12 µs / 60-90 µs single-key figures).
    client = Client((server.host, server.port), default_noreply=False, no_delay=True)
    # The strict floor, as for Redis and SQLite: raw bytes in and out, no pickling
    # (the figures issue 19 names are against it).
    floor = Store(
        "raw pymemcache base Client",
        "floor",
        client,
        {
            "get_hit": "c.get(K)",
            "get_miss": "c.get(M)",
            "set": "c.set(K, V, expire=300)",
            "add": "c.add(next(fresh), V, expire=300)",
            "incr": "c.incr(N, 1)",
            "delete": "c.delete(next(fresh))",
            **{f"get_many_{n}": f"c.get_many(KS{n})" for n in SIZES},
            **{f"set_many_{n}": f"c.set_many(D{n}, expire=300)" for n in SIZES},
        },
        RAW,
        fill=lambda refs, v: client.set_many(dict.fromkeys(refs, v), expire=TIMEOUT),
        drop=client.delete_many,
        close=client.close,
    )
    location = f"{server.host}:{server.port}"
    return [
        memokit_store("memcached", location),
        api_store(
            "Django PyMemcacheCache",
            "django",
            django_cache("django.core.cache.backends.memcached.PyMemcacheCache", location),
        ),
        floor,
    ]


BUILDERS: dict[str, Callable[[Path, Any], list[Store]]] = {
    "memory": memory_stores,
    "filesystem": filesystem_stores,
    "sqlite": sqlite_stores,
    "redis": redis_stores,
    "memcached": memcached_stores,
}
"""Backend short name -> the function that builds its candidates."""

SERVERS = {"redis": "redis-server", "memcached": "memcached"}
"""Backends whose section needs a server, started by the harness on a free port."""
