"""Single flight: concurrent misses of one key run the function once (threads, tasks, processes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import BaseCache, CacheInfo, cached
from memokit.singleflight import LED, AsyncSingleFlight, SingleFlight

CacheFactory = Any


def run_threads(count: int, target: Any) -> list[Any]:
    """Run ``target()`` in ``count`` threads released together; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"
    return results


def test_ten_threads_run_a_one_second_body_once(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def slow(n: int) -> dict[str, int]:
        runs.append(n)
        time.sleep(1)
        return {"n": n}

    started = time.monotonic()
    results = run_threads(10, lambda: slow(7))
    elapsed = time.monotonic() - started
    assert runs == [7]
    assert results == [{"n": 7}] * 10
    assert slow.cache_info() == CacheInfo(hits=9, misses=1, errors=0)
    assert elapsed < 5, "the callers waited for each other in turn"  # 10 s if serialised
    assert slow(7) == {"n": 7}
    assert runs == [7]


def test_ten_tasks_run_the_body_once(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    async def slow(n: int) -> int:
        runs.append(n)
        await asyncio.sleep(0.2)
        return n * 2

    async def main() -> list[int]:
        return list(await asyncio.gather(*(slow(4) for _ in range(10))))

    assert asyncio.run(main()) == [8] * 10
    assert runs == [4]
    assert slow.cache_info() == CacheInfo(hits=9, misses=1, errors=0)


def test_different_keys_do_not_wait_for_each_other(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def slow(n: int) -> int:
        runs.append(n)
        time.sleep(0.2)
        return n

    counter = iter(range(100))
    lock = threading.Lock()

    def call() -> int:
        with lock:
            n = next(counter) % 2
        return slow(n)

    assert sorted(run_threads(6, call)) == [0, 0, 0, 1, 1, 1]
    assert sorted(runs) == [0, 1]


def test_a_raising_body_reaches_every_waiter_and_nobody_hangs(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def explodes() -> int:
        runs.append(1)
        time.sleep(0.3)
        raise KeyError("boom")

    results = run_threads(10, explodes)
    assert all(isinstance(result, KeyError) for result in results), results
    assert runs == [1]
    assert len(explodes._state.flights) == 0
    with pytest.raises(KeyError):
        explodes()  # the next call computes again: failures are not cached
    assert runs == [1, 1]


def test_a_raising_coroutine_reaches_every_task(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    async def explodes() -> int:
        runs.append(1)
        await asyncio.sleep(0.05)
        raise KeyError("boom")

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(explodes() for _ in range(10)), return_exceptions=True))

    results = asyncio.run(main())
    assert all(isinstance(result, KeyError) for result in results)
    assert runs == [1]


def test_a_cancelled_waiter_does_not_cancel_the_run_for_the_others(cache: BaseCache) -> None:
    runs: list[int] = []
    gates: list[asyncio.Event] = []

    @cached(cache=cache)
    async def slow() -> str:
        runs.append(1)
        await gates[0].wait()
        return "value"

    async def main() -> None:
        gates.append(asyncio.Event())
        first = asyncio.create_task(slow())  # the caller that started the computation
        # Its computation has begun (its read of the cache first takes a round trip
        # on a server backend, which a fixed sleep may not cover on a busy machine).
        await asyncio.wait_for(_until(lambda: bool(runs)), 10)
        others = [asyncio.create_task(slow()) for _ in range(3)]
        # All three wait on the flight (each first reads the cache: a round trip on
        # a server backend, which a fixed sleep may not cover on a busy machine).
        flights = slow._state.aflights._flights.values()
        await asyncio.wait_for(_until(lambda: sum(f.waiters for f in flights) == 3), 10)
        first.cancel()
        others[0].cancel()
        await asyncio.sleep(0.01)
        gates[0].set()
        assert await asyncio.gather(*others[1:]) == ["value", "value"]
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(asyncio.CancelledError):
            await others[0]

    asyncio.run(main())
    assert runs == [1]
    assert cache.has_key(slow.key())  # the computation finished and stored


def test_a_cancelled_computation_releases_its_key(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    async def slow() -> int:
        runs.append(1)
        await asyncio.sleep(10)
        return 1

    async def abandon() -> None:
        caller = asyncio.create_task(slow())
        for _ in range(5000):  # until the computation runs (a server read comes first)
            if runs:
                break
            await asyncio.sleep(0.001)
        assert runs == [1]
        assert not caller.done()  # asyncio.run now cancels every task left, the computation too

    asyncio.run(abandon())
    assert len(slow._state.aflights) == 0

    @cached(cache=cache)
    async def quick() -> int:
        return 2

    assert asyncio.run(quick()) == 2
    assert runs == [1]


def test_a_read_after_an_invalidation_never_joins_an_older_computation(cache: BaseCache) -> None:
    # The versions the caller read its entry under are part of the flight key: a
    # caller holding newer versions (after an invalidation) computes on its own.
    started = threading.Event()
    go_on = threading.Event()
    seen: list[int] = []

    @cached(cache=cache, name="value")  # it captures threading events
    def value() -> int:
        seen.append(memokit.get_version(value))
        if len(seen) == 1:
            started.set()
            go_on.wait(10)
        return len(seen)

    old = threading.Thread(target=value)
    old.start()
    assert started.wait(10)
    value.invalidate_all()  # every later read holds newer versions
    try:
        assert value() == 2  # did not wait for the computation under the old versions
    finally:
        go_on.set()
        old.join(10)
    assert seen[1] == seen[0] + 1


def test_recursion_on_the_same_key_does_not_deadlock(cache: BaseCache) -> None:
    depth: list[int] = []

    @cached(cache=cache)
    def again() -> int:
        depth.append(1)
        if len(depth) < 3:
            return again() + 1
        return 1

    # The innermost call stored first, so (as with get_or_set) its value wins.
    assert again() == 1
    assert len(depth) == 3


def test_single_flight_keys_apart() -> None:
    flights = SingleFlight()
    assert flights.run("a", lambda recheck: (1, None)) == (1, LED)
    assert len(flights) == 0

    async def main() -> tuple[int, int]:
        async def compute(recheck: bool) -> tuple[int, None]:
            return 2, None

        return await AsyncSingleFlight().run("a", compute)

    assert asyncio.run(main()) == (2, LED)


# -- the lock in the backend (across processes) ------------------------------------


def test_lock_lease_is_checked() -> None:
    for bad in (0, -1, float("inf"), "30", True):
        with pytest.raises(TypeError, match="lock_lease"):
            cached(lock_lease=bad)  # type: ignore[arg-type]


def test_backend_lock_serialises_callers_that_do_not_share_a_flight(
    make_cache: CacheFactory,
) -> None:
    # Two decorated functions with one key stand for two processes: their in-process
    # flights are separate, so only the lock in the backend keeps the second waiting.
    cache = make_cache()
    runs: list[str] = []

    def body(who: str) -> str:
        runs.append(who)
        time.sleep(0.5)
        return "computed"

    first = cached(cache=cache, key="shared", lock_lease=10)(lambda: body("first"))
    second = cached(cache=cache, key="shared", lock_lease=10)(lambda: body("second"))
    functions = iter([first, second])
    lock = threading.Lock()

    def call() -> str:
        with lock:
            function = next(functions)
        result: str = function()
        return result

    assert run_threads(2, call) == ["computed", "computed"]
    assert len(runs) == 1
    assert cache.get("shared~lock") is None  # released


def test_a_dead_holder_blocks_for_one_lease_at_most(cache: BaseCache) -> None:
    @cached(cache=cache, key="orphan", lock_lease=0.5)
    def f() -> str:
        return "computed"

    assert cache.add("orphan~lock", "a holder that died", timeout=0.5)
    started = time.monotonic()
    assert f() == "computed"
    assert time.monotonic() - started < 0.5 * 3


def test_async_backend_lock(cache: BaseCache) -> None:
    runs: list[int] = []

    # Two decorations of one function (as in two processes): one name, hence one
    # invalidation counter and valid entries for each other, but two single flights.
    def decorate(number: int, pause: float) -> Any:
        @cached(cache=cache, key="async-shared", lock_lease=10, name="async-shared")
        async def shared() -> int:
            runs.append(number)
            await asyncio.sleep(pause)
            return number

        return shared

    f, g = decorate(1, 0.05), decorate(2, 0)

    async def main() -> list[int]:
        return list(await asyncio.gather(f(), g()))

    results = asyncio.run(main())
    assert len(runs) == 1  # whichever took the lock first computed; the other waited
    assert results == runs * 2
    assert cache.get("async-shared~lock") is None


@pytest.mark.slow
def test_backend_lock_across_real_processes(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        import memokit
        from memokit import cached

        memokit.configure({"default": {"BACKEND": "filesystem", "LOCATION": sys.argv[1]}})

        @cached(key="report", lock_lease=20)
        def report():
            with open(sys.argv[2], "a") as runs:
                runs.write("ran\\n")
            time.sleep(1)
            return "report"

        with open(sys.argv[3], "a") as ready:
            ready.write("x")
        while len(open(sys.argv[3]).read()) < 3:
            time.sleep(0.005)
        print(report())
        """
    )
    location, runs, ready = tmp_path / "cache", tmp_path / "runs", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(location), str(runs), str(ready)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert outputs == ["report\n"] * 3
    assert runs.read_text() == "ran\n"


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)
