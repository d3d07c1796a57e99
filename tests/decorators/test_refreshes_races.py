"""Background refreshes against the calls around them: late readers, a failed store, the pool.

The review of issue 18 found these; each test holds a caller or a refresh at a
chosen step, so none depends on the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import memokit
from memokit import MemoryCache, cached, refreshes
from memokit.refreshes import await_idle, pending, wait_idle

WAIT = 10.0  # seconds a test waits at most for something that takes milliseconds


@pytest.fixture(autouse=True)
def no_refresh_left() -> Iterator[None]:
    yield
    wait_idle()


class Held(MemoryCache):
    """A memory cache that holds one caller right after its read, as if it were preempted."""

    def __init__(self) -> None:
        super().__init__(f"held-{uuid.uuid4().hex}")  # a store of its own
        self.held: object = None  # the thread or task to hold
        self.read = threading.Event()
        self.go = threading.Event()
        self.aread: asyncio.Event | None = None
        self.ago: asyncio.Event | None = None

    def _hold(self) -> None:
        if threading.current_thread() is self.held:
            self.read.set()
            assert self.go.wait(WAIT)

    async def _ahold(self) -> None:
        if self.aread is not None and self.ago is not None and asyncio.current_task() is self.held:
            self.aread.set()
            await asyncio.wait_for(self.ago.wait(), WAIT)

    def _get(self, key: str) -> Any:
        found = super()._get(key)
        self._hold()
        return found

    def _get_many(self, keys: list[str]) -> Any:
        found = super()._get_many(keys)
        self._hold()
        return found

    async def _aget(self, key: str) -> Any:
        found = await super()._aget(key)
        await self._ahold()
        return found

    async def _aget_many(self, keys: list[str]) -> Any:
        found = await super()._aget_many(keys)
        await self._ahold()
        return found


@pytest.mark.parametrize("lock_lease", [None, 30])
def test_a_caller_that_read_the_entry_before_its_refresh_ended_refreshes_it_no_more(
    frozen: Any, lock_lease: int | None
) -> None:
    # Exactly one refresh per expiry: a caller that read the stale entry, then
    # lost the processor until the refresh had stored, must not refresh again.
    cache = Held()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, lock_lease=lock_lease, name="late-reader")
    def f() -> int:
        runs.append(1)
        return len(runs)

    assert f() == 1
    frozen.tick(11)
    got: list[int] = []
    late = threading.Thread(target=lambda: got.append(f()))
    cache.held = late
    late.start()
    assert cache.read.wait(WAIT)  # it has read the stale entry
    assert f() == 1  # a stale hit: the refresh starts, and ends
    wait_idle()
    assert runs == [1, 1]
    cache.go.set()
    late.join(WAIT)
    wait_idle()
    assert got == [1]  # served what it read, at once
    assert runs == [1, 1]
    assert f._state.refreshes == 1
    assert f() == 2


def test_a_task_that_read_the_entry_before_its_refresh_ended_refreshes_it_no_more(
    frozen: Any,
) -> None:
    cache = Held()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="late-reader-async")
    async def f() -> int:
        runs.append(1)
        return len(runs)

    async def scenario() -> list[int]:
        cache.aread, cache.ago = asyncio.Event(), asyncio.Event()
        first = await f()
        frozen.tick(11)
        late = asyncio.ensure_future(f())
        cache.held = late
        await asyncio.wait_for(cache.aread.wait(), WAIT)
        stale = await f()
        await await_idle()
        cache.ago.set()
        held = await late
        await await_idle()
        return [first, stale, held, await f()]

    assert asyncio.run(scenario()) == [1, 1, 1, 2]
    assert runs == [1, 1]
    assert f._state.refreshes == 1


class Outage(MemoryCache):
    """A memory cache whose writes can be taken down."""

    writes_down = False

    def __init__(self) -> None:
        super().__init__(f"outage-{uuid.uuid4().hex}")

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        if self.writes_down:
            raise memokit.BackendUnavailable("connection refused")
        super()._set(key, payload, timeout)


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_refresh_that_cannot_store_is_a_failed_refresh_counted_once(
    frozen: Any, caplog: pytest.LogCaptureFixture, fail_open: bool
) -> None:
    cache = Outage()
    memokit.configure_breaker(fail_open=fail_open, cache=cache)
    breaker = memokit.resilience.breaker_for(cache)

    @cached(cache=cache, timeout=10, stale=60, name=f"unstored-refresh-{fail_open}")
    def f() -> int:
        return 1

    try:
        assert f() == 1
        frozen.tick(11)
        cache.writes_down = True
        with caplog.at_level(logging.WARNING, logger="memokit"):
            assert f() == 1  # the stale value, at once
            wait_idle()
        state = f._state
        assert (state.refreshes, state.refresh_failures) == (1, 1)
        assert f.cache_info().errors.backend == 1  # one failed write, counted once
        logged = [r for r in caplog.records if "background refresh" in r.getMessage()]
        assert len(logged) == 1
        assert bool(breaker.failures) is fail_open  # fed the breaker when failing open
    finally:
        breaker.reset()


def test_a_refresh_that_cannot_start_a_thread_is_skipped_and_the_caller_served(
    frozen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = MemoryCache(f"no-thread-{uuid.uuid4().hex}")
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="no-thread")
    def f() -> int:
        runs.append(1)
        return len(runs)

    assert f() == 1
    frozen.tick(11)
    with monkeypatch.context() as patch:
        patch.setattr(refreshes, "_pool", refreshes._Pool())  # no worker started yet

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        patch.setattr(threading.Thread, "start", refuse)
        assert f() == 1  # the stale value, and no error: the refresh is skipped
        assert pending() == 0
        assert not refreshes._pool.queue
        assert refreshes._pool.threads == 0
    assert f() == 1  # a later stale hit refreshes
    wait_idle()
    assert f() == 2


def test_a_refresh_that_raises_a_base_exception_keeps_the_pool_working(
    frozen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refreshes, "MAX_REFRESHES", 1)
    monkeypatch.setattr(refreshes, "_pool", refreshes._Pool())
    cache = MemoryCache(f"base-exception-{uuid.uuid4().hex}")
    leave = [False]

    @cached(cache=cache, timeout=10, stale=60, name="base-exception")
    def f() -> int:
        if leave[0]:
            raise SystemExit("the function left")  # ends a thread quietly, unless caught
        return 1

    f()
    frozen.tick(11)
    leave[0] = True
    assert f() == 1
    wait_idle()
    assert f._state.refresh_failures == 1
    leave[0] = False
    assert f() == 1  # the one worker's place is still there: this refresh runs
    wait_idle()
    assert f._state.refreshes == 2


@pytest.mark.parametrize(
    ("policy", "made_at", "read_at"),
    [({"stale": 60}, 65, 72), ({"early": 1.0}, 9, 11), ({"jitter": 0.5}, 9, 11)],
    ids=["stale", "early", "jitter"],
)
def test_a_counter_expiring_never_invalidates_a_fresh_functions_entries_at_once(
    make_cache: Any, clock: Any, policy: dict[str, float], made_at: float, read_at: float
) -> None:
    # The function's counter used to live `timeout` (+ `stale` + 1) s from its
    # creation, however often its entries were renewed: when it expired, every
    # entry was invalid at once, refreshed or jittered alike, and every caller of
    # every key recomputed together: the crowd these policies are there to avoid.
    cache = make_cache()
    if not cache.capabilities.local_clock:
        pytest.skip(
            "a server's clock: the frozen backends run the same code without a minute of sleep"
        )
    runs: list[int] = []

    @cached(cache=cache, timeout=10, name=f"counter-outlives-{made_at}", **policy)  # type: ignore[call-overload]
    def f(x: int) -> int:
        runs.append(x)
        return x

    f(1)  # t = 0: makes the function's counter
    clock.advance(made_at)
    f.refresh(2)  # a later entry, still fresh at read_at
    clock.advance(read_at - made_at)
    assert f(2) == 2
    assert runs == [1, 2]  # served from its entry, not recomputed
