"""Single flight keeps its promise: once per process, a private result each, no self-waits.

Each defect of issue 14 (single flight) is one test here, on every backend it
concerns: shared mutable results (threads and tasks, stored or not), an async
function awaiting its own computation, two threads waiting for each other, and
the first calls of a new function running it more than once.
Each of those defect tests failed on 54ac4a8, the commit the review reproduced
them on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import memokit
from memokit import BaseCache, cached
from memokit.testing import isolated_cache

ROUND_LIMIT = 5.0
"""Seconds a round may take before a caller counts as hung."""


def release_together(count: int, target: Any) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads released by one barrier; return the results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ROUND_LIMIT)
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# -- each caller gets its own result -----------------------------------------------


def _cart_function(cache: BaseCache, **options: Any) -> tuple[Any, list[int]]:
    runs: list[int] = []

    @cached(cache=cache, **options)
    def cart(user: int) -> list[str]:
        runs.append(user)
        time.sleep(0.2)  # the others join while this runs
        return ["book"]

    return cart, runs


def _assert_private(results: list[list[str]]) -> None:
    assert all(result == ["book"] for result in results)
    assert len({id(result) for result in results}) == len(results), "callers share one object"
    results[0].append("gift wrap")
    assert all(result == ["book"] for result in results[1:])


@pytest.mark.timeout(60)
def test_concurrent_callers_get_private_results(cache: BaseCache) -> None:
    cart, runs = _cart_function(cache)
    _assert_private(release_together(4, lambda i: cart(1)))
    assert runs == [1]
    assert cart(1) == ["book"]  # a later hit did not see the edit either


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["unless", "caching_disabled", "dummy", "timeout_zero"])
def test_private_results_when_nothing_is_stored(cache: BaseCache, how: str) -> None:
    options: dict[str, Any] = {}
    if how == "unless":
        options["unless"] = lambda value: True
    if how == "timeout_zero":
        options["timeout"] = 0
    cart, _ = _cart_function(memokit.DummyCache("flight") if how == "dummy" else cache, **options)
    if how == "caching_disabled":

        def call(i: int) -> list[str]:
            with memokit.caching_disabled():  # each thread turns caching off for itself
                result: list[str] = cart(1)
                return result

        _assert_private(release_together(4, call))
    else:
        _assert_private(release_together(4, lambda i: cart(1)))


class _WriteFails(memokit.MemoryCache):
    """Reads work, writes fail as an outage would: the store step fails open."""

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        raise memokit.BackendUnavailable("the write went nowhere")


@pytest.mark.timeout(60)
def test_private_results_when_the_store_fails_open() -> None:
    cache = _WriteFails("flight-fail-open")
    cart, runs = _cart_function(cache)
    _assert_private(release_together(4, lambda i: cart(1)))
    assert runs == [1]
    memokit.breaker_for(cache).reset()


@pytest.mark.timeout(60)
def test_concurrent_tasks_get_private_results(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    async def cart(user: int) -> list[str]:
        runs.append(user)
        await asyncio.sleep(0.2)
        return ["book"]

    async def main() -> list[list[str]]:
        return list(await asyncio.gather(*(cart(1) for _ in range(4))))

    _assert_private(asyncio.run(main()))
    assert runs == [1]


def test_immutable_results_are_shared_as_on_a_hit() -> None:
    big = 10**30  # an int object, not a small cached one
    with isolated_cache():

        @cached
        def number() -> int:
            time.sleep(0.2)
            return big

        results = release_together(3, lambda i: number())
    assert results == [big] * 3
    assert all(result is results[0] for result in results)  # kept as it is, as on a hit


# -- no caller waits for itself ------------------------------------------------------


@pytest.mark.timeout(60)
def test_async_recursion_on_the_same_key_does_not_await_itself(cache: BaseCache) -> None:
    @cached(cache=cache, ignore=("owner",))
    async def profile(user: int, owner: int | None = None) -> str:
        if owner is None:
            return await profile(user, owner=user)  # the same key: owner is ignored
        return f"profile of {owner}"

    async def main() -> str:
        return await asyncio.wait_for(profile(7), ROUND_LIMIT)

    assert asyncio.run(main()) == "profile of 7"
    assert profile._state.cycles == 1


def _crossing_walk(cache: BaseCache) -> Any:
    graph = {"a": "b", "b": "a"}
    both_started = threading.Barrier(2)
    entered: set[str] = set()

    @cached(cache=cache, ignore=("visited",), name="crossing.reach")
    def reach(node: str, visited: frozenset[str] = frozenset()) -> frozenset[str]:
        if node not in entered:  # the first run of each node waits for the other's
            entered.add(node)
            both_started.wait(ROUND_LIMIT)
        found = {node}
        after = graph[node]
        if after not in visited:
            found |= reach(after, visited | {node})
        return frozenset(found)

    return reach


@pytest.mark.timeout(60)
def test_two_threads_needing_each_others_key_finish(cache: BaseCache) -> None:
    reach = _crossing_walk(cache)
    results = release_together(2, lambda i: reach("ab"[i]))
    assert [node in found for node, found in zip("ab", results, strict=True)] == [True, True]
    assert reach._state.cycles == 1  # exactly one caller computed for itself


@pytest.mark.timeout(60)
def test_two_tasks_needing_each_others_key_finish(cache: BaseCache) -> None:
    graph = {"a": "b", "b": "a"}

    async def main() -> list[frozenset[str]]:
        both_started = asyncio.Barrier(2)
        entered: set[str] = set()

        @cached(cache=cache, ignore=("visited",), name="crossing.areach")
        async def reach(node: str, visited: frozenset[str] = frozenset()) -> frozenset[str]:
            if node not in entered:
                entered.add(node)
                await both_started.wait()
            found = {node}
            if graph[node] not in visited:
                found |= await reach(graph[node], visited | {node})
            return frozenset(found)

        results = await asyncio.wait_for(asyncio.gather(reach("a"), reach("b")), ROUND_LIMIT)
        assert reach._state.cycles == 1
        return list(results)

    results = asyncio.run(main())
    assert [node in found for node, found in zip("ab", results, strict=True)] == [True, True]


# -- once per process, the very first call included ----------------------------------


def _brand_new(round_: int, runs: list[int], is_async: bool = False) -> Any:
    """A function never seen before: its own name, hence its own key and counter."""
    if is_async:

        async def body(n: int) -> int:
            runs.append(n)
            return n * 2

    else:

        def body(n: int) -> int:  # type: ignore[misc]  # the sync twin
            runs.append(n)
            return n * 2

    body.__qualname__ = f"brand_new_{round_}_{time.monotonic_ns()}"
    return body


@pytest.mark.timeout(60)
def test_first_calls_of_a_new_function_run_it_once(cache: BaseCache) -> None:
    bad = []
    for round_ in range(30):
        runs: list[int] = []
        fresh = cached(cache=cache)(_brand_new(round_, runs))
        assert release_together(10, lambda i, fresh=fresh: fresh(21)) == [42] * 10
        if len(runs) != 1:
            bad.append((round_, len(runs)))
    assert bad == [], f"rounds (round, runs) that ran the function more than once: {bad}"


@pytest.mark.timeout(60)
def test_first_calls_of_a_new_coroutine_function_run_it_once(cache: BaseCache) -> None:
    async def main() -> list[int]:
        counts = []
        for round_ in range(30):
            runs: list[int] = []
            fresh = cached(cache=cache)(_brand_new(round_, runs, is_async=True))
            assert await asyncio.gather(*(fresh(21) for _ in range(10))) == [42] * 10
            counts.append(len(runs))
        return counts

    assert asyncio.run(main()) == [1] * 30
