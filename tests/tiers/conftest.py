"""Second-tier settings for the tier tests: a fresh store per test on each shared backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit.config import DEFAULT_CACHES

_dbs = itertools.cycle(range(1, 16))

SHARED = [
    pytest.param("filesystem", id="filesystem"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.server),
    pytest.param("memcached", id="memcached", marks=pytest.mark.server),
]


def second_tier(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> dict[str, Any]:
    """A ``CACHES`` entry (no TIER) for an empty store of ``backend``."""
    if backend == "filesystem":
        return {"BACKEND": backend, "LOCATION": str(tmp_path / "fs"), "TIMEOUT": None}
    if backend == "sqlite":
        return {"BACKEND": backend, "LOCATION": str(tmp_path / "c.sqlite3"), "TIMEOUT": None}
    if backend == "redis":
        import redis

        url = f"{request.getfixturevalue('redis_server').url}/{next(_dbs)}"
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        return {"BACKEND": backend, "LOCATION": url, "TIMEOUT": None}
    from pymemcache.client.base import Client

    server = request.getfixturevalue("memcached_server")
    client = Client((server.host, server.port), connect_timeout=2, timeout=2)
    client.flush_all(noreply=False)
    client.close()
    return {"BACKEND": backend, "LOCATION": server.url, "TIMEOUT": None}


@pytest.fixture(params=SHARED)
def shared_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings of a fresh shared store; the default alias is restored afterwards."""
    try:
        yield second_tier(request, request.param, tmp_path)
    finally:
        memokit.configure(DEFAULT_CACHES)


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings of a fresh Redis database; the default alias is restored afterwards."""
    try:
        yield second_tier(request, "redis", tmp_path)
    finally:
        memokit.configure(DEFAULT_CACHES)


@pytest.fixture
def untracked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tier one on Redis without server-assisted invalidation: its pushes (of this
    process's own writes too) would drop the copies a test of the bound re-checks."""
    from memokit.backends._redistracking import TracksInvalidations

    monkeypatch.setattr(TracksInvalidations, "track_invalidations", lambda *a, **k: None)
