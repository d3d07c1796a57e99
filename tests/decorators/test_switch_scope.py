"""Switches compose: per context, process-wide with a count, helpers on the right cache.

Each defect of issue 14 (switches) is one test here: invalidations lost while
another thread has caching off, overlapping blocks leaving caching off for
good, ``isolated_cache()`` leaking a store per block, and environment values
the documentation calls errors.
Each of those defect tests failed on 54ac4a8, the commit the review reproduced
them on.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

import memokit
from memokit import BaseCache, DummyCache, cached, cached_property
from memokit.backends import memory
from memokit.switches import ENVIRONMENT_VARIABLE, GATE, disabled_by_environment, use_cache
from memokit.testing import isolated_cache


class Holder:
    """Runs a switch block in a thread of its own, entered and left on request."""

    def __init__(self, block: Callable[[], AbstractContextManager[Any]]) -> None:
        self._block = block
        self._entered = threading.Event()
        self._leave = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._block():
            self._entered.set()
            self._leave.wait(30)

    def enter(self) -> Holder:
        self._thread.start()
        assert self._entered.wait(10)
        return self

    def leave(self) -> None:
        self._leave.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def names(cache: BaseCache) -> tuple[Any, dict[str, str]]:
    db = {"ann": "Ann"}

    @cached(cache=cache, tags="user:{user}")
    def name(user: str) -> str:
        return db[user]

    return name, db


# -- invalidations are never lost -------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["invalidate", "invalidate_all", "invalidate_tags", "refresh"])
@pytest.mark.parametrize(
    "switch", ["caching_disabled", "isolated_cache"], ids=["disabled", "isolated"]
)
def test_invalidations_by_other_threads_reach_the_real_cache(
    names: tuple[Any, dict[str, str]], cache: BaseCache, how: str, switch: str
) -> None:
    name, db = names
    assert name("ann") == "Ann"
    block = memokit.caching_disabled if switch == "caching_disabled" else isolated_cache
    debugging = Holder(block).enter()  # another thread, say a debug request
    try:
        db["ann"] = "Ann B."
        if how == "invalidate":
            assert name.invalidate("ann") is True
        elif how == "invalidate_all":
            memokit.invalidate_all(name)
        elif how == "invalidate_tags":
            memokit.invalidate_tags("user:ann", cache=cache)
        else:
            assert name.refresh("ann") == "Ann B."
        assert name("ann") == "Ann B."  # this thread is not switched
    finally:
        debugging.leave()
    assert name("ann") == "Ann B."


@pytest.mark.parametrize("how", ["invalidate", "invalidate_all", "invalidate_tags"])
def test_invalidations_inside_caching_disabled_reach_the_real_cache(
    names: tuple[Any, dict[str, str]], cache: BaseCache, how: str
) -> None:
    name, db = names
    assert name("ann") == "Ann"
    db["ann"] = "Ann B."
    with memokit.caching_disabled():
        assert name("ann") == "Ann B."  # computed, not stored
        if how == "invalidate":
            assert name.invalidate("ann") is True  # the entry the function would use
        elif how == "invalidate_all":
            memokit.invalidate_all(name)
        else:
            memokit.invalidate_tags("user:ann", cache=cache)
    assert name("ann") == "Ann B."


def test_async_invalidations_inside_caching_disabled_reach_the_real_cache(cache: BaseCache) -> None:
    db = {"ann": "Ann"}

    @cached(cache=cache)
    async def name(user: str) -> str:
        return db[user]

    async def main() -> None:
        assert await name("ann") == "Ann"
        db["ann"] = "Ann B."
        with memokit.caching_disabled():
            assert await name.invalidate("ann") is True
        assert await name("ann") == "Ann B."

    asyncio.run(main())


def test_shared_property_invalidated_inside_caching_disabled(
    cache: BaseCache, module_level: Any
) -> None:
    db = {"total": 1}

    @module_level
    class Row:
        def __cache_key__(self) -> int:
            return 1

        @cached_property(cache=cache)
        def total(self) -> int:
            return db["total"]

    assert Row().total == 1
    db["total"] = 2
    with memokit.caching_disabled():
        assert Row.total.invalidate(Row()) is True
    assert Row().total == 2


def test_helpers_under_use_cache_act_on_that_cache_in_that_context(
    names: tuple[Any, dict[str, str]], cache: BaseCache
) -> None:
    name, _ = names
    assert name("ann") == "Ann"  # in the real cache
    with isolated_cache() as test_cache:
        assert name("ann") == "Ann"
        assert name.invalidate("ann") is True  # the isolated entry
        assert test_cache.get(name.key("ann")) is None
        assert name.cache is test_cache
    assert cache.has_key(name.key("ann"))  # the real entry was not touched


# -- blocks compose ------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("block", ["caching_disabled", "isolated_cache", "process_wide"])
def test_overlapping_blocks_across_threads_leave_caching_on(cache: BaseCache, block: str) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def expensive(n: int) -> int:
        runs.append(n)
        return n * 2

    def make() -> AbstractContextManager[Any]:
        if block == "caching_disabled":
            return memokit.caching_disabled()
        if block == "isolated_cache":
            return isolated_cache()
        return memokit.caching_disabled(process_wide=True)

    first = Holder(make).enter()
    second = Holder(make).enter()
    first.leave()  # not in the order they were entered
    second.leave()
    assert [expensive(21), expensive(21)] == [42, 42]
    assert runs == [21]
    assert not GATE.on or GATE.troubled


@pytest.mark.timeout(60)
def test_process_wide_switch_covers_every_thread_and_counts(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def f() -> int:
        runs.append(1)
        return 1

    def call_in_thread() -> None:
        thread = threading.Thread(target=f)
        thread.start()
        thread.join(10)

    with memokit.caching_disabled(process_wide=True):
        with memokit.caching_disabled(process_wide=True):
            call_in_thread()
        call_in_thread()  # the outer block still holds
    assert len(runs) == 2
    call_in_thread()
    call_in_thread()
    assert len(runs) == 3


def test_a_context_switch_covers_tasks_and_copied_contexts_not_plain_threads(
    cache: BaseCache,
) -> None:
    runs: list[str] = []

    @cached(cache=cache)
    def f(where: str) -> int:
        runs.append(where)
        return 1

    @cached(cache=cache)
    async def g(where: str) -> int:
        runs.append(where)
        return 1

    async def twice() -> None:
        await g("task")
        await g("task")

    async def tasks() -> None:
        await asyncio.create_task(twice())  # a task started inside the block

    with memokit.caching_disabled():
        f("here")
        f("here")
        asyncio.run(tasks())
        context = contextvars.copy_context()
        copied = threading.Thread(target=lambda: [context.run(f, "copied") for _ in range(2)])
        copied.start()
        copied.join(10)
        plain = threading.Thread(target=lambda: [f("plain") for _ in range(2)])
        plain.start()
        plain.join(10)
    assert sorted(runs) == ["copied", "copied", "here", "here", "plain", "task", "task"]


def test_a_task_that_outlives_its_block_is_no_longer_switched(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    async def f() -> int:
        runs.append(1)
        return 1

    async def main() -> None:
        go_on = asyncio.Event()

        async def later() -> None:
            await go_on.wait()
            await f()
            await f()

        with memokit.caching_disabled():
            task = asyncio.create_task(later())
        go_on.set()
        await task

    asyncio.run(main())
    assert runs == [1]


def test_nested_switches_in_one_context_restore(cache: BaseCache) -> None:
    other = memokit.MemoryCache("switch-scope-other")

    @cached(cache=cache)
    def f() -> int:
        return 1

    with use_cache(other):
        with memokit.caching_disabled():
            assert isinstance(f.cache, DummyCache)
            with memokit.caching_disabled(process_wide=True):
                assert isinstance(f.cache, DummyCache)
        assert f.cache is other
    assert f.cache is cache
    other.clear()


# -- isolated_cache leaves nothing behind ------------------------------------------


@pytest.mark.timeout(60)
def test_isolated_cache_leaves_no_store_behind() -> None:
    before = len(memory._stores)

    @cached
    def f() -> int:
        return 1

    for _ in range(20_000):
        with isolated_cache():
            f()
    assert len(memory._stores) == before


# -- the environment variable -------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "true", "on", "TRUE", "no", "off", "false", " 1", "2"])
def test_environment_values_the_docs_do_not_list_are_errors(value: str) -> None:
    with pytest.raises(memokit.ImproperlyConfigured, match=ENVIRONMENT_VARIABLE):
        disabled_by_environment({ENVIRONMENT_VARIABLE: value})


@pytest.mark.parametrize(("value", "disabled"), [("1", True), ("0", False), ("", False)])
def test_environment_values_the_docs_list(value: str, disabled: bool) -> None:
    assert disabled_by_environment({ENVIRONMENT_VARIABLE: value}) is disabled
    assert disabled_by_environment({}) is False
