"""Chaos for single flight: first-call races, recursion, cycles through threads and tasks.

Every case is bounded in rounds and carries a hard time limit; a hang fails the
case instead of stalling the run. Random choices come from a seeded generator,
so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from typing import Any

import pytest

import memokit
from memokit import BaseCache, cached
from memokit.testing import isolated_cache

pytestmark = pytest.mark.chaos

JOIN = 20.0
"""Seconds a round's threads get before the round counts as hung."""


def run_together(targets: list[Any]) -> list[Any]:
    """Run each target in a thread, released together; return results, raise the first error."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = targets[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@pytest.mark.timeout(60)
def test_first_call_races_run_each_new_function_once() -> None:
    cache = memokit.MemoryCache("chaos-first-calls")
    rng = random.Random(14)
    bad = []
    for round_ in range(200):
        runs: list[int] = []

        def body(n: int, runs: list[int] = runs) -> list[int]:
            runs.append(n)
            return [n]

        body.__qualname__ = f"first_call_{round_}_{time.monotonic_ns()}"
        fresh = cached(cache=cache)(body)
        callers = rng.randint(2, 12)
        results = run_together([lambda fresh=fresh: fresh(5)] * callers)
        assert results == [[5]] * callers
        assert len({id(result) for result in results}) == callers
        if len(runs) != 1:
            bad.append((round_, callers, len(runs)))
    cache.clear()
    assert bad == []


@pytest.mark.timeout(60)
def test_first_call_races_of_threads_and_tasks_together(cache: BaseCache) -> None:
    for round_ in range(20):
        runs: list[str] = []

        async def body(n: int, runs: list[str] = runs) -> int:
            runs.append("run")
            await asyncio.sleep(0.01)
            return n

        body.__qualname__ = f"mixed_{round_}_{time.monotonic_ns()}"
        fresh = cached(cache=cache)(body)

        async def many(fresh: Any = fresh) -> list[int]:
            return list(await asyncio.gather(*(fresh(3) for _ in range(5))))

        # Each thread has its own loop: one run per loop at most, and the store
        # makes later loops hit; the promise is per loop for tasks.
        results = run_together([lambda many=many: asyncio.run(many())] * 3)
        assert results == [[3] * 5] * 3
        assert 1 <= len(runs) <= 3


def _graph(rng: random.Random, size: int) -> dict[int, list[int]]:
    # Random edges, cycles on purpose: every node points at one to three others.
    return {node: rng.sample(range(size), rng.randint(1, min(3, size))) for node in range(size)}


def _walker(name: str, graph: dict[int, list[int]], leaders: int) -> Any:
    gate = threading.Barrier(leaders)
    started: set[int] = set()

    @cached(key=name + "-{node}")
    def walk(node: int, budget: int = 3) -> list[int]:
        if node not in started and len(started) < leaders:
            started.add(node)
            # Line the first leaders up, so that their waits cross.
            with contextlib.suppress(threading.BrokenBarrierError):
                gate.wait(2)
        if budget:
            for after in graph[node]:
                assert walk(after, budget - 1) == [after * 10]
        return [node * 10]

    return walk


@pytest.mark.timeout(60)
def test_random_cyclic_dependencies_across_threads_never_hang() -> None:
    rng = random.Random(1414)
    cycles = 0
    with isolated_cache():
        for round_ in range(40):
            size = rng.randint(2, 6)
            leaders = min(size, 4)
            walk = _walker(f"walk-{round_}", _graph(rng, size), leaders)
            starts = rng.sample(range(size), leaders)  # each thread leads its own
            results = run_together([lambda n=n, walk=walk: walk(n) for n in starts])
            assert results == [[n * 10] for n in starts]
            for result in results:
                result.append(-1)  # a caller's edit stays its own
            assert [walk(n) for n in starts] == [[n * 10] for n in starts]
            cycles += walk._state.cycles
    assert cycles > 0  # the waits did cross


def _ring(size: int) -> Any:
    ring = threading.Barrier(size)
    entered: set[int] = set()

    @cached(key=f"ring-{size}-{{node}}")
    def hop(node: int, hops: int = 0) -> int:
        if node not in entered:
            entered.add(node)
            ring.wait(JOIN)  # every thread leads its node before anyone hops
        if hops < size:
            hop((node + 1) % size, hops + 1)
        return node

    return hop


@pytest.mark.timeout(60)
def test_a_ring_of_threads_each_waiting_for_the_next_finishes() -> None:
    with isolated_cache():
        for size in (2, 3, 4, 5):
            hop = _ring(size)
            results = run_together([lambda n=n, hop=hop: hop(n) for n in range(size)])
            assert results == list(range(size))
            assert hop._state.cycles >= 1


@pytest.mark.timeout(60)
def test_a_ring_of_tasks_each_waiting_for_the_next_finishes() -> None:
    async def main(size: int) -> tuple[list[int], int]:
        ring = asyncio.Barrier(size)
        entered: set[int] = set()

        @cached(key=f"task-ring-{size}-{{node}}")
        async def hop(node: int, hops: int = 0) -> int:
            if node not in entered:
                entered.add(node)
                await ring.wait()
            if hops < size:
                await hop((node + 1) % size, hops + 1)
            return node

        found = await asyncio.wait_for(asyncio.gather(*(hop(n) for n in range(size))), JOIN)
        return list(found), hop._state.cycles

    with isolated_cache():
        for size in (2, 3, 4, 5):
            results, cycles = asyncio.run(main(size))
            assert results == list(range(size))
            assert cycles >= 1


@pytest.mark.timeout(60)
def test_deep_recursion_on_one_key_sync_and_async(cache: BaseCache) -> None:
    @cached(cache=cache, ignore=("depth",))
    def down(depth: int) -> int:
        return down(depth - 1) + 1 if depth else 0

    @cached(cache=cache, ignore=("depth",))
    async def adown(depth: int) -> int:
        return await adown(depth - 1) + 1 if depth else 0

    assert down(30) == 0  # the innermost call stored first: its value wins
    assert down._state.cycles == 30

    async def main() -> int:
        return await asyncio.wait_for(adown(30), JOIN)

    assert asyncio.run(main()) == 0
    assert adown._state.cycles == 30


@pytest.mark.timeout(60)
def test_a_computation_that_awaits_a_child_task_recursing_on_its_key() -> None:
    # The child task runs in a copy of the leader's context: it knows whom it serves.
    with isolated_cache():

        @cached(ignore=("child",))
        async def parent(n: int, child: bool = False) -> int:
            if child:
                return n
            return await asyncio.create_task(parent(n, child=True))

        async def main() -> int:
            return await asyncio.wait_for(parent(4), JOIN)

        assert asyncio.run(main()) == 4
