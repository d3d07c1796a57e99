"""Damaged entries on every backend: files, rows and raw payloads (issue 15, value faults).

Each backend's store is damaged from outside, the way a crash, a bad disk, a
deploy that moved a class or another program writing to the store would: files
cut or overwritten on disk, rows rewritten in the SQLite table, payloads written
raw into Redis and Memcached. Between the damages, decorated functions and the
low-level API keep running, and the test checks what docs/production.md
promises for value failures:

- no wrong value, ever: a decorated call returns its function's result, a
  low-level read the value stored under that key or a miss;
- no exception escapes a decorated call, and the low-level reads never raise;
- an unreadable entry is replaced by the next computation: the function runs
  once per damage, not on every call;
- at most one warning per bad key per window, and the breaker never opens.

Each backend gets ``ROUNDS * KEYS * CALLS`` (10,000) sync decorated calls plus
an async run, within a bounded time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import sqlite3
import sys
import time
import types
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memokit import BaseCache, CorruptEntryWarning, breaker_for, cached, configure_breaker
from memokit.counters import COUNTER_VERSION, function_counter_key
from memokit.entry import ENCODED, _header

pytestmark = pytest.mark.faults

CacheFactory = Any

ROUNDS = 10
KEYS = 100
CALLS = 10  # per key and round: ROUNDS * KEYS * CALLS = 10,000 decorated calls
DAMAGED_PER_ROUND = 12
WINDOW = 0.25  # the breaker window, which is also the window of value-failure reports
BUDGET = 30.0  # seconds one backend may take, damage and checks included

GARBAGE = b"\x80\x05\x95garbage written by something else"


def expected(i: int) -> list[Any]:
    return [i, "v" * (i % 7)]  # a list: serialised by every backend, the memory one too


@contextlib.contextmanager
def recorded(category: type[Warning]) -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings of ``category`` in the block; any other warning still fails."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", category)
        yield record


# -- damaging a store from outside ---------------------------------------------------


_REDIS_DEPLOYMENTS = ("RedisClusterCache", "RedisSentinelCache")


class Damager:
    """Writes damage into one backend's store, below memokit's API where the store allows."""

    def __init__(self, cache: BaseCache, rng: random.Random) -> None:
        self.cache = cache
        self.rng = rng
        self.kind = type(cache).__name__
        self.module = types.ModuleType(f"memokit_faults_{uuid.uuid4().hex}")
        sys.modules[self.module.__name__] = self.module
        self.classes = 0
        self.raw: Any = None
        if self.kind == "RedisCache":
            import redis

            self.raw = redis.Redis.from_url(cache._servers[0])  # type: ignore[attr-defined]
        elif self.kind == "MemcachedCache":
            from pymemcache.client.hash import HashClient

            # One server or a pool: keys go where the cache's own hashing puts them.
            specs = cache._specs  # type: ignore[attr-defined]
            self.raw = HashClient(specs, connect_timeout=2, timeout=2, default_noreply=False)
        elif self.kind == "SQLiteCache":
            self.raw = sqlite3.connect(cache._path, isolation_level=None)  # type: ignore[attr-defined]

    def close(self) -> None:
        del sys.modules[self.module.__name__]
        if self.raw is not None:
            self.raw.close()

    def kinds(self) -> list[str]:
        extra = {"FileSystemCache": ["bit-flip", "torn-file"], "SQLiteCache": ["real-row"]}
        return ["garbage", "truncated", "moved-class", *extra.get(self.kind, [])]

    def damage(self, made: str, kind: str) -> None:
        """Damage the entry at the made key ``made`` (which may be absent)."""
        if kind == "moved-class":
            self._moved_class(made)
            return
        current = self._read(made)
        if kind == "truncated" and current is not None and len(current) > 8:
            self._write(made, current[: len(current) // 2])
        elif kind in ("bit-flip", "torn-file"):
            self._damage_file(made, kind)
        elif kind == "real-row":
            self.raw.execute(
                f'UPDATE "{self.cache._table}" SET value = 0.5 WHERE key = ?',  # type: ignore[attr-defined]  # noqa: S608
                (made,),
            )
        else:
            self._write(made, GARBAGE)

    def _moved_class(self, made: str) -> None:
        # A value whose class a deploy moved: stored while it existed, read after.
        self.classes += 1
        name = f"Moved{self.classes}"
        cls = type(name, (), {"__module__": self.module.__name__, "__qualname__": name})
        setattr(self.module, name, cls)
        cache = self.cache
        current, value = cache._get(made), cls()
        header = _header(current) if isinstance(current, bytes) else None
        if header is not None:  # a decorated call's entry: its header stays, current
            payload = current[: header[2]] + cache.serializer.dumps(value)
        elif type(current) is tuple and len(current) == 4:  # the same, in process
            payload = (ENCODED, current[1], current[2], cache._encode(value))
        else:
            payload = cache._encode(value)
        cache._set(made, payload, None)
        delattr(self.module, name)

    def _read(self, made: str) -> bytes | None:
        kind = self.kind
        if kind == "RedisCache" or kind == "MemcachedCache":
            found = self.raw.get(made)
        elif kind in _REDIS_DEPLOYMENTS:  # the backend's primitives send bytes as they are
            found = self.cache._get(made)
        elif kind == "SQLiteCache":
            row = self.raw.execute(
                f'SELECT value FROM "{self.cache._table}" WHERE key = ?',  # type: ignore[attr-defined]  # noqa: S608
                (made,),
            ).fetchone()
            found = row[0] if row is not None else None
        elif kind == "FileSystemCache":
            path = Path(self.cache._path(made))  # type: ignore[attr-defined]
            found = path.read_bytes() if path.exists() else None
        else:  # the memory backend keeps a wrapper of the serialised bytes
            payload = self.cache._get(made)
            if type(payload) is tuple and len(payload) == 4:  # an entry: its value's
                payload = payload[3]
            found = getattr(payload, "data", None)
        return found if isinstance(found, bytes) else None

    def _write(self, made: str, data: bytes) -> None:
        kind = self.kind
        if kind == "RedisCache":
            self.raw.set(made, data)
        elif kind in _REDIS_DEPLOYMENTS:
            self.cache._set(made, data, None)
        elif kind == "MemcachedCache":
            self.raw.set(made, data, noreply=False)
        elif kind == "SQLiteCache":
            self.raw.execute(
                f'INSERT OR REPLACE INTO "{self.cache._table}" (key, value, expires) '  # type: ignore[attr-defined]  # noqa: S608
                f"VALUES (?, ?, ?)",
                (made, data, math.inf),
            )
        elif kind == "FileSystemCache":
            Path(self.cache._path(made)).write_bytes(data)  # type: ignore[attr-defined]
        else:
            from memokit.backends.memory import _serialized

            current = self.cache._get(made)
            if type(current) is tuple and len(current) == 4:  # an entry: damage its value
                self.cache._set(made, (ENCODED, *current[1:3], _serialized(data)), None)
            else:
                self.cache._set(made, _serialized(data), None)

    def _damage_file(self, made: str, kind: str) -> None:
        path = Path(self.cache._path(made))  # type: ignore[attr-defined]
        if not path.exists():
            path.write_bytes(GARBAGE)
            return
        data = bytearray(path.read_bytes())
        if kind == "bit-flip":
            data[-1 - self.rng.randrange(min(len(data) - 1, 16))] ^= 1 << self.rng.randrange(8)
        else:
            del data[self.rng.randrange(1, len(data)) :]
        path.write_bytes(bytes(data))


# -- the run -------------------------------------------------------------------------


def _key_of(message: str) -> str:
    # Every value-failure warning starts with the repr of the key (or file) it concerns.
    return message.split("'")[1]


def _check_warnings(record: list[warnings.WarningMessage], elapsed: float) -> int:
    per_key = collections.Counter(_key_of(str(w.message)) for w in record)
    bound = math.floor(elapsed / WINDOW) + 1
    for key, count in per_key.items():
        assert count <= bound, f"{count} warnings for {key} in {elapsed:.2f} s (bound {bound})"
    return len(record)


def test_damaged_entries_never_give_a_wrong_value_nor_an_exception(
    make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache()
    configure_breaker(cache=cache, window=WINDOW)
    rng = random.Random(15)
    damager = Damager(cache, rng)
    runs: collections.Counter[int] = collections.Counter()
    damages: collections.Counter[int] = collections.Counter()
    counter_damages = 0

    @cached(cache=cache, timeout=None)
    def compute(i: int) -> list[Any]:
        runs[i] += 1
        return expected(i)

    counter = cache.make_key(function_counter_key(compute.__wrapped__), COUNTER_VERSION)
    low = {f"low:{i}": expected(i) for i in range(KEYS)}
    started = time.monotonic()
    calls = 0
    try:
        with recorded(CorruptEntryWarning) as record:
            for i in range(KEYS):
                assert compute(i) == expected(i)
            cache.set_many(low, None)
            for round_ in range(ROUNDS):
                for i in rng.sample(range(KEYS), DAMAGED_PER_ROUND):
                    kind = rng.choice(damager.kinds())
                    damager.damage(cache.make_key(compute.key(i)), kind)
                    damages[i] += 1
                    damager.damage(cache.make_key(f"low:{i}"), kind)
                if round_ % 4 == 1:
                    damager.damage(counter, rng.choice(["garbage", "truncated"]))
                    counter_damages += 1
                for _ in range(CALLS):
                    for i in range(KEYS):
                        assert compute(i) == expected(i)
                        calls += 1
                # The low-level API: a value stored under that key, or a miss.
                found = cache.get_many(list(low))
                assert all(found[key] == low[key] for key in found)
                for key, value in low.items():
                    assert cache.get(key, value) == value
                    assert cache.get_or_set(key, value, None) == value
                assert time.monotonic() - started < BUDGET
        elapsed = time.monotonic() - started
    finally:
        damager.close()
    assert calls == ROUNDS * KEYS * CALLS
    assert record, "the damage should have been noticed"
    _check_warnings(record, elapsed)
    for i in range(KEYS):
        # Replaced by the next computation: once per damage, not on every call.
        assert runs[i] <= 1 + damages[i] + counter_damages, (i, runs[i], damages[i])
    info = compute.cache_info()
    assert info.errors.backend == 0
    assert info.hits >= calls - sum(runs.values())
    assert breaker_for(cache).opened == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_async_damaged_entries_heal_too(make_cache: CacheFactory) -> None:
    cache = make_cache()
    configure_breaker(cache=cache, window=WINDOW)
    rng = random.Random(16)
    damager = Damager(cache, rng)
    runs: collections.Counter[int] = collections.Counter()
    damages: collections.Counter[int] = collections.Counter()

    @cached(cache=cache, timeout=None)
    async def compute(i: int) -> list[Any]:
        runs[i] += 1
        return expected(i)

    async def main() -> int:
        calls = 0
        for i in range(KEYS // 2):
            assert await compute(i) == expected(i)
        for _ in range(4):
            for i in rng.sample(range(KEYS // 2), DAMAGED_PER_ROUND // 2):
                damager.damage(cache.make_key(compute.key(i)), rng.choice(damager.kinds()))
                damages[i] += 1
            for _ in range(CALLS):
                results = await asyncio.gather(*(compute(i) for i in range(KEYS // 2)))
                assert results == [expected(i) for i in range(KEYS // 2)]
                calls += len(results)
        return calls

    started = time.monotonic()
    try:
        with recorded(CorruptEntryWarning) as record:
            calls = asyncio.run(main())
        elapsed = time.monotonic() - started
    finally:
        damager.close()
    assert calls == 4 * CALLS * (KEYS // 2)
    assert elapsed < BUDGET
    _check_warnings(record, elapsed)
    for i in range(KEYS // 2):
        assert runs[i] <= 1 + damages[i], (i, runs[i], damages[i])
    assert compute.cache_info().errors.backend == 0
    assert breaker_for(cache).opened == 0
