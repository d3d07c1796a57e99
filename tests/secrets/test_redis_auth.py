"""Masking never breaks connecting: a real redis-server whose password holds @ : / % # ? ..."""

from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis

import memokit
from memokit import BackendError
from memokit.faults import FaultProxy
from memokit.testing import RunningServer, ServerNotFound, start_server

pytestmark = pytest.mark.server

# The default user's password, and ACL users whose names need encoding too.
PASSWORD = "Qx7k@:/%#?é✓ Wv3p"  # noqa: S105 - a throw-away server's, on loopback
USERS = {
    "me@corp:ops": "Zt9m@:/%25#?ü Yb6n",
    "ünïcode": "Rd5c@Pf8g:%zz€",  # holds only what a URL may carry raw: written raw below
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """A private redis-server (the session one stays password-free) requiring PASSWORD."""
    try:
        running = start_server("redis-server")
    except ServerNotFound as exc:
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    try:
        with redis.Redis(running.host, running.port) as admin:
            for user, password in USERS.items():
                admin.acl_setuser(
                    user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
                )
            admin.config_set("requirepass", PASSWORD)
        yield running
    finally:
        running.stop()


def _chain(exc: BaseException) -> str:
    """Every message of an exception's chain, as a traceback shows them."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += traceback.format_exception_only(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return "".join(parts)


def _round_trip(cache: memokit.BaseCache) -> None:
    try:
        cache.clear()
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
        assert cache.add("n", 1)
        assert cache.incr("n", 2) == 3

        async def twins() -> None:
            await cache.aset("a", "b")
            assert await cache.aget("a") == "b"

        asyncio.run(twins())
    finally:
        cache.close()


def _addresses(server: RunningServer) -> dict[str, dict[str, Any]]:
    address = f"{server.host}:{server.port}"
    user, password = next(iter(USERS.items()))
    raw_user, raw_password = list(USERS.items())[1]
    return {
        "default user, encoded": {"LOCATION": f"redis://:{quote(PASSWORD, safe='')}@{address}/0"},
        "ACL user, encoded": {
            "LOCATION": f"redis://{quote(user, safe='')}:{quote(password, safe='')}@{address}/1"
        },
        "ACL user, raw": {"LOCATION": f"redis://{raw_user}:{raw_password}@{address}/2"},
        "OPTIONS": {
            "LOCATION": f"redis://{address}/3",
            "OPTIONS": {"username": user, "password": password},
        },
    }


@pytest.mark.parametrize(
    "way", ["default user, encoded", "ACL user, encoded", "ACL user, raw", "OPTIONS"]
)
def test_a_masked_password_still_connects(server: RunningServer, way: str) -> None:
    settings = _addresses(server)[way]
    cache = memokit.create_cache({"BACKEND": "redis", **settings})
    for secret in (PASSWORD, *USERS.values()):
        assert secret not in repr(cache)
        assert quote(secret, safe="") not in cache.location
    _round_trip(cache)


def test_through_the_fault_proxy(server: RunningServer) -> None:
    with FaultProxy(server.host, server.port) as proxy:
        location = f"redis://:{quote(PASSWORD, safe='')}@{proxy.url()}/0"
        cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": location})
        _round_trip(cache)
        proxy.set_faults(reset=True)
        try:
            with pytest.raises(BackendError) as raised:
                cache.get("k")
        finally:
            cache.close()
    shown = _chain(raised.value) + repr(proxy) + repr(cache)
    assert "Qx7k" not in shown
    assert "Wv3p" not in shown


def test_a_wrong_password_is_refused_without_being_shown(server: RunningServer) -> None:
    wrong = PASSWORD.replace("Qx7k", "Nq2j")
    location = f"redis://:{quote(wrong, safe='')}@{server.host}:{server.port}/0"
    cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": location})
    try:
        with pytest.raises(BackendError) as raised:
            cache.get("k")
    finally:
        cache.close()
    shown = _chain(raised.value)
    assert "Nq2j" not in shown
    assert "Wv3p" not in shown


def test_value_failure_warnings_show_no_secret(server: RunningServer) -> None:
    location = f"redis://:{quote(PASSWORD, safe='')}@{server.host}:{server.port}/4"
    cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": location})

    @memokit.cached(cache=cache)
    def double(x: int) -> int:
        return 2 * x

    try:
        with redis.Redis(server.host, server.port, db=4, password=PASSWORD) as raw:
            raw.set(":1:k", b"\x80damaged")
        with pytest.warns(memokit.CorruptEntryWarning) as caught:
            assert cache.get("k") is None  # a value failure: a miss, with one warning
        assert double(2) == 4
    finally:
        cache.close()
    shown = "\n".join(str(w.message) for w in caught) + repr(double) + repr(double.cache_info())
    assert "***" in shown
    assert "Qx7k" not in shown
    assert "Wv3p" not in shown
