"""Background refreshes of stale entries: one per key, bounded, failing safely, fork and loops."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import memokit
import memokit.stats
from memokit import BaseCache, MemoryCache, cached, refreshes
from memokit.locks import lock_key_for
from memokit.refreshes import await_idle, pending, wait_idle

WAIT = 10.0  # seconds a test waits at most for something that takes milliseconds


@pytest.fixture(autouse=True)
def no_refresh_left() -> Iterator[None]:
    yield
    wait_idle()


def test_wait_idle_waits_for_a_refresh_and_gives_up_after_its_timeout(frozen: Any) -> None:
    cache = MemoryCache()
    release = threading.Event()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="held-refresh")
    def f() -> int:
        if runs:
            assert release.wait(WAIT)
        runs.append(1)
        return len(runs)

    f()
    frozen.tick(11)
    assert f() == 1  # stale; its refresh is held
    with pytest.raises(TimeoutError, match=r"still pending after 0\.05 s"):
        wait_idle(timeout=0.05)
    release.set()
    wait_idle()
    assert pending() == 0
    assert f() == 2


def test_one_refresh_under_50_threads(frozen: Any) -> None:
    cache = MemoryCache()
    release = threading.Event()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="fifty-threads")
    def f() -> int:
        if runs:  # the refresh waits until every caller has its answer
            assert release.wait(WAIT)
        runs.append(1)
        return len(runs)

    assert f() == 1
    frozen.tick(11)
    start = threading.Barrier(50)
    got: list[int] = []

    def caller() -> None:
        start.wait(WAIT)
        got.append(f())

    threads = [threading.Thread(target=caller) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    # Nobody waited for the refresh, which is still held.
    assert got == [1] * 50
    assert len(runs) == 1
    release.set()
    wait_idle()
    assert runs == [1, 1]
    state = f._state
    assert (state.stale_hits, state.refreshes, state.refresh_failures) == (50, 1, 0)
    assert f() == 2


def test_one_refresh_under_50_tasks(frozen: Any) -> None:
    cache = MemoryCache()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="fifty-tasks")
    async def f() -> int:
        if runs:
            await release.wait()
        runs.append(1)
        return len(runs)

    async def scenario() -> list[int]:
        global release
        release = asyncio.Event()
        await f()
        frozen.tick(11)
        got = await asyncio.gather(*(f() for _ in range(50)))
        assert len(runs) == 1  # the refresh waits; the callers did not
        release.set()
        await await_idle()
        return [*got, await f()]

    assert asyncio.run(scenario()) == [1] * 50 + [2]
    state = f._state
    assert (state.stale_hits, state.refreshes, state.refresh_failures) == (50, 1, 0)


release: asyncio.Event


def test_a_failed_refresh_keeps_the_stale_value_logs_once_and_counts(
    frozen: Any, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    cache = MemoryCache()
    broken = [False]
    runs: list[int] = []

    class Hook(memokit.stats.MetricsHook):
        def __init__(self) -> None:
            self.failed: list[tuple[str, type[BaseException]]] = []

        def refresh_failed(self, function: str, error: BaseException) -> None:
            self.failed.append((function, type(error)))

    hook = memokit.stats.add_hook(Hook())
    request.addfinalizer(lambda: memokit.stats.remove_hook(hook))

    @cached(cache=cache, timeout=10, stale=30, name="failing-refresh")
    def f() -> int:
        runs.append(1)
        if broken[0]:
            raise ConnectionRefusedError("the database is down")
        return len(runs)

    assert f() == 1
    broken[0] = True
    frozen.tick(11)
    with caplog.at_level(logging.WARNING, logger="memokit"):
        for _ in range(3):
            assert f() == 1  # stale, and each stale hit may try again
            wait_idle()
    state = f._state
    assert (state.stale_hits, state.refreshes, state.refresh_failures) == (3, 3, 3)
    assert (f.stats().stale_hits, f.stats().refresh_failures) == (3, 3)
    logged = [r for r in caplog.records if "background refresh" in r.getMessage()]
    assert len(logged) == 1
    assert "failing-refresh" in logged[0].getMessage()
    # One log record (named for log pipelines, memokit.stats), every failure to the hooks.
    assert [r for r in caplog.records if getattr(r, "memokit_event", None)] == logged
    assert logged[0].memokit_event == "refresh_failed"
    assert logged[0].memokit_function == "failing-refresh"
    assert hook.failed == [("failing-refresh", ConnectionRefusedError)] * 3
    # The function's failure is no backend failure: no breaker, no error counted.
    assert f.cache_info().errors == 0
    assert not memokit.resilience.breaker_for(cache).failures
    # Past the window, a call computes as on a miss, and the error is the caller's.
    frozen.tick(30)
    with pytest.raises(ConnectionRefusedError):
        f()
    broken[0] = False
    assert f() == 6


def test_a_refresh_that_succeeds_after_failing_logs_again_on_the_next_failure(
    frozen: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = MemoryCache()
    outcome: list[Any] = [1]

    @cached(cache=cache, timeout=10, stale=30, name="flapping-refresh")
    def f() -> int:
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return int(outcome[0])

    with caplog.at_level(logging.WARNING, logger="memokit"):
        f()
        for step in (ValueError("one"), 2, ValueError("two")):
            outcome[0] = step
            frozen.tick(11)
            f()
            wait_idle()
    logged = [r for r in caplog.records if "background refresh" in r.getMessage()]
    assert len(logged) == 2


def test_an_invalidated_entry_is_never_served_stale(frozen: Any) -> None:
    cache = MemoryCache()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, tags=["prices"], name="invalidated-stale")
    def f(x: int) -> int:
        runs.append(x)
        return len(runs)

    assert (f(1), f(2), f(3)) == (1, 2, 3)
    frozen.tick(11)
    f.invalidate(1)
    f.invalidate_all()
    memokit.invalidate_tags("prices")
    for x in (1, 2, 3):
        assert f(x) == 3 + x  # computed, never the stale value
    assert f._state.stale_hits == 0


def test_invalidation_during_the_stale_window_on_every_backend(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache, timeout=0.01, stale=60, name="invalidated-backends")
    def f() -> int:
        runs.append(1)
        return len(runs)

    assert f() == 1
    time.sleep(0.02)  # stale now, by the entry's times
    f.invalidate()
    assert f() == 2
    wait_idle()
    assert f._state.stale_hits == 0


def test_a_refresh_that_does_not_fit_is_skipped(
    frozen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refreshes, "MAX_REFRESHES", 1)
    cache = MemoryCache()
    release = threading.Event()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="pool-bound")
    def f(x: int) -> int:
        if len(runs) >= 2:
            assert release.wait(WAIT)
        runs.append(x)
        return x * 10 + len(runs)

    assert (f(1), f(2)) == (11, 22)
    frozen.tick(11)
    assert f(1) == 11  # starts a refresh, held
    assert f(2) == 22  # no room: skipped, the stale value served
    assert f._state.stale_hits == 2
    release.set()
    wait_idle()
    assert runs == [1, 2, 1]
    assert f._state.refreshes == 1
    assert f(2) == 22  # still stale: this time its refresh fits
    wait_idle()
    assert f(2) == 24


def test_the_pool_is_daemon_threads_started_as_needed(frozen: Any) -> None:
    cache = MemoryCache()

    @cached(cache=cache, timeout=10, stale=60, name="pool-threads")
    def f(x: int) -> int:
        return x

    for x in range(3):
        f(x)
    frozen.tick(11)
    for x in range(3):
        f(x)
    wait_idle()
    workers = [t for t in threading.enumerate() if t.name == "memokit-refresh"]
    assert workers
    assert all(t.daemon for t in workers)
    assert len(workers) <= refreshes.MAX_REFRESHES


def test_with_lock_lease_a_key_another_process_computes_is_not_refreshed(
    make_cache: Any,
) -> None:
    cache = make_cache()
    runs: list[int] = []

    @cached(cache=cache, timeout=0.05, stale=60, lock_lease=30, name="locked-refresh")
    def f() -> int:
        runs.append(1)
        return len(runs)

    assert f() == 1
    time.sleep(0.06)
    # Another process holds the key's lock: it is computing the value.
    assert cache.add(lock_key_for(f.key()), "theirs", 30)
    assert f() == 1
    wait_idle()
    assert runs == [1]
    assert f._state.refreshes == 0
    cache.delete(lock_key_for(f.key()))
    assert f() == 1
    wait_idle()
    assert runs == [1, 1]
    assert cache.get(lock_key_for(f.key())) is None  # released after the refresh


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_has_no_refresh_pending(frozen: Any) -> None:
    cache = MemoryCache()
    release = threading.Event()
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="forked-refresh")
    def f() -> int:
        if runs:
            assert release.wait(WAIT)
        runs.append(1)
        return len(runs)

    f()
    frozen.tick(11)
    f()
    assert pending() == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing pending, and a refresh of its own works
        try:
            release.set()  # the child's own copy of the event
            ok = pending() == 0 and f() == 1
            for _ in range(2000):
                if pending() == 0:
                    break
                time.sleep(0.005)
            ok = ok and pending() == 0 and f() == 2
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 2)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
        release.set()
    assert answer == b"ok"


def test_asyncio_run_cancels_a_pending_refresh_task_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = MemoryCache()
    runs: list[int] = []

    @cached(cache=cache, timeout=0.01, stale=60, name="cancelled-refresh")
    async def f() -> int:
        if runs:
            await asyncio.sleep(WAIT)  # still running when the loop shuts down
        runs.append(1)
        return len(runs)

    async def scenario() -> int:
        await f()
        await asyncio.sleep(0.02)
        value = await f()
        await asyncio.sleep(0.01)  # the refresh task has started
        return value

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        assert asyncio.run(scenario()) == 1
    assert pending() == 0
    assert f._state.refresh_failures == 0
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


@pytest.mark.parametrize("started", [False, True])
def test_a_closed_loop_drops_a_pending_refresh_task_quietly(
    caplog: pytest.LogCaptureFixture, started: bool
) -> None:
    cache = MemoryCache()
    runs: list[int] = []

    @cached(cache=cache, timeout=0.01, stale=60, name=f"closed-loop-{started}")
    async def f() -> int:
        if runs:
            await asyncio.sleep(WAIT)
        runs.append(1)
        return len(runs)

    async def scenario() -> int:
        await f()
        await asyncio.sleep(0.02)
        value = await f()
        if started:
            await asyncio.sleep(0.01)
        return value

    loop = asyncio.new_event_loop()
    with caplog.at_level(logging.DEBUG, logger="asyncio"), warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            assert loop.run_until_complete(scenario()) == 1
        finally:
            loop.close()  # without cancelling the refresh task first
        assert pending() == 0  # its refresh will never run: dropped
        gc.collect()  # the task and its coroutine go, without a word
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]
    assert not refreshes._tasks


def test_a_stale_method_and_classmethod_refresh(frozen: Any, module_level: Any) -> None:
    cache = MemoryCache()
    runs: list[str] = []

    @module_level
    class Prices:
        def __cache_key__(self) -> str:
            return "prices"

        @cached(cache=cache, timeout=10, stale=60)
        def price(self, item: str) -> int:
            runs.append(item)
            return len(runs)

        @cached(cache=cache, timeout=10, stale=60)
        @classmethod
        def rate(cls) -> int:
            runs.append("rate")
            return len(runs)

    prices = Prices()
    assert (prices.price("a"), Prices.rate()) == (1, 2)
    frozen.tick(11)
    assert (prices.price("a"), Prices.rate()) == (1, 2)
    wait_idle()
    assert sorted(runs) == ["a", "a", "rate", "rate"]
    assert prices.price("a") in (3, 4)
    assert Prices.rate() in (3, 4)
    assert Prices.price._state.stale_hits == 1


class Outage(MemoryCache):
    """A memory cache whose reads or writes can be taken down."""

    reads_down = False
    writes_down = False

    def _get(self, key: str) -> Any:
        if self.reads_down:
            raise memokit.BackendUnavailable("connection refused")
        return super()._get(key)

    def _get_many(self, keys: list[str]) -> Any:
        if self.reads_down:
            raise memokit.BackendUnavailable("connection refused")
        return super()._get_many(keys)

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        if self.writes_down:
            raise memokit.BackendUnavailable("connection refused")
        super()._set(key, payload, timeout)


def test_fail_open_is_unchanged_with_a_stale_window(
    frozen: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Outage()
    breaker = memokit.resilience.breaker_for(cache)
    runs: list[int] = []

    @cached(cache=cache, timeout=10, stale=60, name="fail-open-stale")
    def f() -> int:
        runs.append(1)
        return len(runs)

    try:
        assert f() == 1
        frozen.tick(11)
        cache.writes_down = True  # the refresh computes but cannot store
        with caplog.at_level(logging.WARNING, logger="memokit"):
            assert f() == 1
            wait_idle()
        assert f._state.refreshes == 1
        assert f.cache_info().errors.backend == 1  # fed the breaker, as on any call
        assert breaker.failures
        cache.writes_down = False
        cache.reads_down = True
        frozen.tick(6)  # past the breaker's window: the read fails, the call computes
        assert f() == 3
    finally:
        breaker.reset()
