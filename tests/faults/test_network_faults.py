"""Network faults between memokit and real Redis / Memcached servers (issue 15).

Each case puts a :class:`memokit.faults.FaultProxy` in front of the session's
server, runs decorated functions and low-level calls before, during and after
one fault, and checks what the production docs promise:

- no wrong value, ever: a decorated call returns its function's result, a
  low-level ``get`` the value stored under that key or a miss;
- no exception escapes a decorated call; the low-level API raises only
  ``BackendError`` for a network failure;
- no decorated call takes longer than the socket timeout plus 0.2 s;
- at most one warning per cache per breaker window;
- caching resumes within two windows after the fault ends.

Every case in which the backend fails makes at least ``CALLS_PER_CASE``
decorated calls, so each backend gets at least 10,000 over its network-fault
cases; the cases in which it only slows down run for ``FAULT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import memokit
from memokit import BackendError, BaseCache, breaker_for, cached, configure_breaker
from memokit.faults import FaultProxy, Faults

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.timeout(60)]

SOCKET_TIMEOUT = 0.25
"""The read and connect timeout given to both clients."""
WINDOW = 0.4
"""The breaker window of each cache under test."""
CALL_BOUND = SOCKET_TIMEOUT + 0.2
"""The longest a decorated call may take, fault or not."""
FAULT_SECONDS = 1.3
"""How long each fault lasts: a little over three windows."""
CALLS_PER_CASE = 2000
KEYS = 40

FAULTS = {
    "delay": Faults(delay=SOCKET_TIMEOUT + 0.15),
    "small-delay": Faults(delay=0.01),
    "drop": Faults(drop=True),
    "truncate": Faults(truncate=7),
    "truncate-all": Faults(truncate=0),
    "reset": Faults(reset=True),
    "bandwidth": Faults(bandwidth=8_000),
}
# Faults under which the backend still answers every call within the timeout.
SLOW_BUT_WORKING = {"small-delay", "bandwidth"}

assert CALLS_PER_CASE * (len(FAULTS) - len(SLOW_BUT_WORKING)) >= 10_000  # per backend


@dataclass
class Tally:
    """What one case saw."""

    calls: int = 0
    slowest: float = 0.0
    wrong: list[str] = field(default_factory=list)
    escaped: list[str] = field(default_factory=list)

    def timed(self, call: Callable[[], Any], expected: Any, what: str) -> None:
        started = time.monotonic()
        try:
            result = call()
        except Exception as exc:
            self.escaped.append(f"{what}: {type(exc).__name__}: {exc}")
            return
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.calls += 1
        if result != expected:
            self.wrong.append(f"{what} -> {result!r}, expected {expected!r}")


@pytest.fixture(params=["redis", "memcached"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, FaultProxy]]:
    server = request.getfixturevalue(f"{request.param}_server")
    with FaultProxy(server.host, server.port) as proxy:
        yield request.param, proxy


def make_cache(kind: str, *proxies: FaultProxy) -> BaseCache:
    location: list[str]
    if kind == "redis":
        options = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
        location = [proxy.url("redis") for proxy in proxies]
    else:
        options = {"timeout": SOCKET_TIMEOUT, "connect_timeout": SOCKET_TIMEOUT}
        location = [proxy.url() for proxy in proxies]
    cache = memokit.create_cache(
        {
            "BACKEND": kind,
            "LOCATION": location,
            "KEY_PREFIX": uuid.uuid4().hex[:12],
            "TIMEOUT": None,
            "OPTIONS": options,
        }
    )
    configure_breaker(cache=cache, window=WINDOW)
    return cache


def memokit_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "memokit" and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_decorated_calls_under_a_network_fault(
    backend: tuple[str, FaultProxy], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    kind, proxy = backend
    cache = make_cache(kind, proxy)
    tally = Tally()
    runs: list[int] = []
    # Two functions of the same arguments on one cache: a reply meant for one key
    # that reached another would show as the other function's value.
    salt = uuid.uuid4().hex[:6]

    @cached(cache=cache)
    def label(n: int) -> str:
        runs.append(n)
        return f"{salt}:label:{n}"

    @cached(cache=cache)
    def square(n: int) -> int:
        return n * n

    def one_round(n: int) -> None:
        tally.timed(lambda: label(n), f"{salt}:label:{n}", f"label({n})")
        tally.timed(lambda: square(n), n * n, f"square({n})")

    floor = 0 if fault in SLOW_BUT_WORKING else CALLS_PER_CASE
    caplog.set_level(logging.WARNING, logger="memokit")
    try:
        for n in range(KEYS):  # fill the cache through the proxy
            one_round(n)
        assert breaker_for(cache).failures == 0

        proxy.set_faults(FAULTS[fault])
        fault_started = time.monotonic()
        n = 0
        while time.monotonic() - fault_started < FAULT_SECONDS or tally.calls < floor // 2:
            one_round(n % KEYS)
            n += 1
        proxy.heal()
        healed = time.monotonic()

        # Caching resumes within two windows: the breaker closes at the first probe
        # after its window, and from then on a repeated call is a hit.
        resumed = None
        while time.monotonic() - healed < 2 * WINDOW + CALL_BOUND:
            one_round(n % KEYS)
            n += 1
            if not breaker_for(cache).failures:
                runs.clear()
                one_round(0)
                one_round(0)
                if runs == []:
                    resumed = time.monotonic() - healed
                    break
        while tally.calls < floor:
            one_round(n % KEYS)
            n += 1
        warnings = memokit_warnings(caplog)
    finally:
        proxy.heal()
        cache.close()

    assert tally.wrong == []
    assert tally.escaped == []
    assert tally.calls >= floor
    assert tally.slowest <= CALL_BOUND, f"a decorated call took {tally.slowest:.3f} s"
    assert resumed is not None, "caching did not resume within two windows"
    windows = math.ceil((healed - fault_started + resumed) / WINDOW)
    # One when the breaker opens and one per failed probe, one "answers again".
    assert len(warnings) <= windows + 1, warnings
    if fault in SLOW_BUT_WORKING:
        assert warnings == []
    else:
        assert warnings, "the fault never reached the cache"


@pytest.mark.parametrize("fault", ["delay", "drop", "reset"])
def test_threads_under_a_network_fault(
    backend: tuple[str, FaultProxy], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls in flight on several threads when the fault starts log one warning, not one each."""
    kind, proxy = backend
    cache = make_cache(kind, proxy)
    salt = uuid.uuid4().hex[:6]
    tallies = [Tally() for _ in range(4)]
    stop = threading.Event()

    @cached(cache=cache)
    def label(n: int) -> str:
        return f"{salt}:label:{n}"

    def worker(tally: Tally, offset: int) -> None:
        n = offset
        while not stop.is_set():
            tally.timed(lambda n=n: label(n % KEYS), f"{salt}:label:{n % KEYS}", f"label({n})")
            n += 1

    caplog.set_level(logging.WARNING, logger="memokit")
    threads = [threading.Thread(target=worker, args=(t, i)) for i, t in enumerate(tallies)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        proxy.set_faults(FAULTS[fault])
        started = time.monotonic()
        time.sleep(2.5 * WINDOW)
        proxy.heal()
        healed = time.monotonic()
        while breaker_for(cache).failures and time.monotonic() - healed < 2 * WINDOW + CALL_BOUND:
            time.sleep(0.01)
        resumed = time.monotonic() - healed
        stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        proxy.heal()
        cache.close()
    warnings = memokit_warnings(caplog)
    assert not breaker_for(cache).failures, "caching did not resume within two windows"
    assert [t.wrong for t in tallies] == [[]] * 4
    assert [t.escaped for t in tallies] == [[]] * 4
    assert max(t.slowest for t in tallies) <= CALL_BOUND
    windows = math.ceil((healed - started + resumed) / WINDOW)
    assert 1 <= len(warnings) <= windows + 1, warnings


@pytest.mark.parametrize("fault", ["delay", "drop", "truncate", "reset"])
def test_async_decorated_calls_under_a_network_fault(
    backend: tuple[str, FaultProxy], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    kind, proxy = backend
    cache = make_cache(kind, proxy)
    salt = uuid.uuid4().hex[:6]

    @cached(cache=cache)
    async def label(n: int) -> str:
        return f"{salt}:label:{n}"

    async def drive() -> Tally:
        tally = Tally()

        async def one(n: int) -> None:
            started = time.monotonic()
            try:
                result = await label(n)
            except Exception as exc:
                tally.escaped.append(f"label({n}): {type(exc).__name__}: {exc}")
            else:
                if result != f"{salt}:label:{n}":
                    tally.wrong.append(f"label({n}) -> {result!r}")
            tally.slowest = max(tally.slowest, time.monotonic() - started)
            tally.calls += 1

        for n in range(KEYS):
            await one(n)
        proxy.set_faults(FAULTS[fault])
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 2 * WINDOW:
            await one(n % KEYS)
            n += 1
        proxy.heal()
        healed = time.monotonic()
        while breaker_for(cache).failures and time.monotonic() - healed < 2 * WINDOW + CALL_BOUND:
            await one(n % KEYS)
            n += 1
        assert not breaker_for(cache).failures, "caching did not resume within two windows"
        return tally

    caplog.set_level(logging.WARNING, logger="memokit")
    try:
        tally = asyncio.run(drive())
    finally:
        proxy.heal()
        cache.close()
    assert tally.wrong == []
    assert tally.escaped == []
    assert tally.slowest <= CALL_BOUND, f"an async decorated call took {tally.slowest:.3f} s"
    assert len(memokit_warnings(caplog)) <= math.ceil(4 * WINDOW / WINDOW) + 2


@pytest.mark.parametrize("fault", ["delay", "drop", "truncate", "truncate-all", "reset"])
def test_low_level_api_under_a_network_fault(backend: tuple[str, FaultProxy], fault: str) -> None:
    """Low-level calls raise BackendError or answer right; never a wrong value."""
    kind, proxy = backend
    cache = make_cache(kind, proxy)
    salt = uuid.uuid4().hex[:6]
    values = {f"k{n}": f"{salt}:{n}" for n in range(KEYS)}
    wrong: list[str] = []
    escaped: list[str] = []
    failures = 0
    slowest = 0.0

    def attempt(call: Callable[[], Any]) -> Any:
        nonlocal failures, slowest
        started = time.monotonic()
        try:
            return call()
        except BackendError:
            failures += 1
            return BackendError
        except Exception as exc:
            escaped.append(f"{type(exc).__name__}: {exc}")
            return BackendError
        finally:
            slowest = max(slowest, time.monotonic() - started)

    try:
        cache.set_many(dict(list(values.items())[: KEYS // 2]))
        proxy.set_faults(FAULTS[fault])
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 1.0:
            key = f"k{n % KEYS}"
            n += 1
            got = attempt(lambda key=key: cache.get(key))
            if got not in (BackendError, None, values[key]):
                wrong.append(f"get({key}) -> {got!r}")
            attempt(lambda key=key: cache.set(key, values[key]))
            many = attempt(lambda: cache.get_many(list(values)[:5]))
            if many is not BackendError:
                wrong.extend(f"get_many: {k} -> {v!r}" for k, v in many.items() if values[k] != v)
        proxy.heal()
        # The same cache, healthy again, answers right at once (no stale reply left).
        cache.set_many(values)
        assert cache.get_many(list(values)) == values
        for key, value in values.items():
            assert cache.get(key) == value
    finally:
        proxy.heal()
        cache.close()
    assert wrong == []
    assert escaped == []
    assert failures > 0
    # A low-level call may connect and then wait for its reply: two timeouts.
    assert slowest <= 2 * SOCKET_TIMEOUT + 0.2


@pytest.mark.parametrize("fault", ["drop", "reset"])
def test_one_of_two_servers_under_a_network_fault(
    backend: tuple[str, FaultProxy], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis replica, or one of two Memcached servers, fails; the other keeps answering.

    Both proxies lead to the same server: what is checked is the client side.
    """
    kind, first = backend
    with FaultProxy(*first.target) as second:
        cache = make_cache(kind, first, second)
        tally = Tally()
        salt = uuid.uuid4().hex[:6]

        @cached(cache=cache)
        def label(n: int) -> str:
            return f"{salt}:label:{n}"

        caplog.set_level(logging.WARNING, logger="memokit")
        try:
            for n in range(KEYS):
                tally.timed(lambda n=n: label(n), f"{salt}:label:{n}", f"label({n})")
            second.set_faults(FAULTS[fault])
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < 3 * WINDOW:
                tally.timed(lambda n=n: label(n % KEYS), f"{salt}:label:{n % KEYS}", "label")
                n += 1
        finally:
            second.heal()
            cache.close()
    assert tally.wrong == []
    assert tally.escaped == []
    assert tally.slowest <= CALL_BOUND
    assert len(memokit_warnings(caplog)) <= 3 + 2


def test_a_trickled_reply_is_bounded_by_the_socket_timeout(
    backend: tuple[str, FaultProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """A reply that arrives, but slower than the timeout allows, is a timeout.

    Both clients give each read the timeout afresh; memokit makes it a deadline
    for the whole reply, so the call returns in time and fails open.
    """
    kind, proxy = backend
    cache = make_cache(kind, proxy)
    big = "x" * 20_000
    runs: list[int] = []

    @cached(cache=cache)
    def report(n: int) -> str:
        runs.append(n)
        return f"{n}:{big}"

    @cached(cache=cache)
    async def areport(n: int) -> str:
        return f"a{n}:{big}"

    caplog.set_level(logging.WARNING, logger="memokit")
    try:
        assert report(1) == f"1:{big}"
        assert asyncio.run(areport(1)) == f"a1:{big}"
        cache.set("big", big)
        proxy.set_faults(bandwidth=8_000)  # 20 kB would take 2.5 s
        started = time.monotonic()
        assert report(1) == f"1:{big}"
        assert time.monotonic() - started <= CALL_BOUND
        time.sleep(WINDOW)
        started = time.monotonic()
        assert asyncio.run(areport(1)) == f"a1:{big}"
        assert time.monotonic() - started <= CALL_BOUND
        started = time.monotonic()
        with pytest.raises(BackendError):
            cache.get("big")
        assert time.monotonic() - started <= CALL_BOUND
        proxy.heal()
        time.sleep(WINDOW)
        runs.clear()
        assert report(1) == f"1:{big}"
        assert runs == []  # cached again, from the same entry
        assert cache.get("big") == big
    finally:
        proxy.heal()
        cache.close()
    assert 1 <= len(memokit_warnings(caplog)) <= 3
