"""Throughput with 1 and 8 threads: 90 % get / 10 % set over 1,024 hot keys.

Each thread replays a fixed random sequence of operations (so that the random
generator costs nothing inside the loop) until a deadline; the figure is all
threads' operations divided by the time from the common start to the last
thread's end. With the GIL nothing scales up; what matters is how much of the
one-thread figure is kept at 8 threads (a process-wide lock loses most of it).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stores import RAW, TIMEOUT, VALUE
from .timing import Config

HOT_KEYS = [f"hot:{i}" for i in range(1024)]
THREADS = (1, 8)
_CHECK_EVERY = 64


@dataclass
class Subject:
    """A candidate of one throughput group: a get and a set callable."""

    name: str
    role: str
    get: Callable[[str], Any]
    set: Callable[[str, Any], Any]
    value: Any = field(default_factory=lambda: VALUE)
    close: Callable[[], Any] = lambda: None


def _api(name: str, role: str, cache: Any, value: Any = VALUE) -> Subject:
    return Subject(name, role, cache.get, cache.set, value, getattr(cache, "close", lambda: None))


def _memokit(backend: str, location: str) -> Subject:
    import memokit

    cache = memokit.create_cache(
        {"BACKEND": backend, "LOCATION": location, "OPTIONS": {"MAX_ENTRIES": 1_000_000}}
        if backend in ("memory", "filesystem", "sqlite")
        else {"BACKEND": backend, "LOCATION": location}
    )
    return _api(f"memokit {backend}", "memokit", cache)


def _locked(lock: threading.Lock, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        with lock:
            return fn(*args)

    return call


def memory_group(workdir: Path, server: Any) -> list[Subject]:
    import cachetools

    from .env import django_cache

    d: dict[str, Any] = {}
    ttl = cachetools.TTLCache(maxsize=1_000_000, ttl=TIMEOUT)
    lock = threading.Lock()
    locmem = django_cache(
        "django.core.cache.backends.locmem.LocMemCache", "bench-threads", MAX_ENTRIES=1_000_000
    )
    return [
        _memokit("memory", "bench-threads"),
        _api("Django LocMemCache", "django", locmem),
        Subject(
            "cachetools TTLCache+Lock",
            "peer",
            _locked(lock, ttl.get),
            _locked(lock, ttl.__setitem__),
        ),
        Subject("dict, no lock", "floor", d.get, d.__setitem__),
    ]


def filesystem_group(workdir: Path, server: Any) -> list[Subject]:
    from .env import django_cache

    django = django_cache(
        "django.core.cache.backends.filebased.FileBasedCache",
        str(workdir / "threads-django"),
        MAX_ENTRIES=1_000_000,
    )
    return [
        _memokit("filesystem", str(workdir / "threads-memokit")),
        _api("Django FileBasedCache", "django", django),
    ]


def sqlite_group(workdir: Path, server: Any) -> list[Subject]:
    import diskcache

    return [
        _memokit("sqlite", str(workdir / "threads-memokit.db")),
        _api("diskcache.Cache", "peer", diskcache.Cache(str(workdir / "threads-diskcache"))),
    ]


def redis_group(workdir: Path, server: Any) -> list[Subject]:
    import redis

    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(server.url))
    return [
        _memokit("redis", server.url),
        Subject(
            "raw redis-py",
            "floor",
            client.get,
            lambda k, v: client.set(k, v, ex=TIMEOUT),
            RAW,
            client.close,
        ),
    ]


def memcached_group(workdir: Path, server: Any) -> list[Subject]:
    from pymemcache.client.base import PooledClient

    client = PooledClient(
        (server.host, server.port), default_noreply=False, max_pool_size=16, no_delay=True
    )
    return [
        _memokit("memcached", f"{server.host}:{server.port}"),
        Subject(
            "raw pymemcache PooledClient",
            "floor",
            client.get,
            lambda k, v: client.set(k, v, expire=TIMEOUT),
            RAW,
            client.close,
        ),
    ]


GROUPS: dict[str, Callable[[Path, Any], list[Subject]]] = {
    "memory": memory_group,
    "filesystem": filesystem_group,
    "sqlite": sqlite_group,
    "redis": redis_group,
    "memcached": memcached_group,
}
"""Backend -> the candidates of its throughput group (memokit first)."""


def _workload(seed: int) -> list[tuple[bool, str]]:
    rng = random.Random(seed)
    return [(rng.random() < 0.1, rng.choice(HOT_KEYS)) for _ in range(4096)]


def ops_per_second(subject: Subject, threads: int, seconds: float) -> float:
    """Operations per second summed over ``threads`` threads running for ``seconds``."""
    counts = [0] * threads
    ends = [0.0] * threads
    start = [0.0]
    barrier = threading.Barrier(threads, action=lambda: start.__setitem__(0, time.perf_counter()))
    get, put, value = subject.get, subject.set, subject.value

    def work(i: int) -> None:
        ops = _workload(i)
        barrier.wait()
        deadline = start[0] + seconds
        done = 0
        while True:
            for j in range(done % len(ops), done % len(ops) + _CHECK_EVERY):
                is_set, key = ops[j % len(ops)]
                if is_set:
                    put(key, value)
                else:
                    get(key)
            done += _CHECK_EVERY
            if time.perf_counter() >= deadline:
                break
        counts[i] = done
        ends[i] = time.perf_counter()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (max(ends) - start[0])


def run_group(backend: str, config: Config, workdir: Path, server: Any) -> dict[str, Any]:
    """Interleaved throughput repeats for one backend's group, at 1 and 8 threads."""
    subjects = GROUPS[backend](workdir, server)
    samples: dict[tuple[int, int], list[float]] = {}
    try:
        for t in subjects:
            for key in HOT_KEYS:
                t.set(key, t.value)
        for _ in range(config.thread_repeats):
            for i, t in enumerate(subjects):
                for n in THREADS:
                    rate = ops_per_second(t, n, config.thread_s)
                    samples.setdefault((i, n), []).append(rate)
    finally:
        for t in subjects:
            t.close()
    results = []
    for i, t in enumerate(subjects):
        row: dict[str, Any] = {"name": t.name, "role": t.role}
        for n in THREADS:
            row[f"threads_{n}"] = statistics.median(samples[i, n])
            row[f"samples_{n}"] = [round(x) for x in samples[i, n]]
        row["kept"] = row["threads_8"] / row["threads_1"]
        results.append(row)
        print(
            f"  {backend:<11}{t.name}: {row['threads_1']:,.0f} ops/s (1 thread), "
            f"{row['threads_8']:,.0f} (8 threads), kept {row['kept']:.2f}"
        )
    return {"backend": backend, "results": results}
