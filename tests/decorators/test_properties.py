"""``@cached_property``: once per instance, timed, shared through a cache, async."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time
import weakref
from typing import Any, TypeVar

import pytest
from freezegun import freeze_time

import memokit
from memokit import BaseCache, CachedProperty, cached_property

T = TypeVar("T")


def read_together(count: int, read: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = read()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


class Report:
    def __init__(self, number: int) -> None:
        self.number = number
        self.runs = 0

    @cached_property
    def total(self) -> dict[str, int]:
        """The total."""
        self.runs += 1
        time.sleep(0.2)
        return {"total": self.number * 10}


# -- plain ---------------------------------------------------------------------------------


def test_ten_concurrent_first_reads_compute_once() -> None:
    report = Report(1)
    results = read_together(10, lambda: report.total)
    assert report.runs == 1
    assert results == [{"total": 10}] * 10
    assert all(result is results[0] for result in results)


def test_instances_compute_separately_and_in_parallel() -> None:
    reports = [Report(1), Report(2)]
    results = read_together(2, lambda: [r.total for r in reports])
    assert results[0] == results[1] == [{"total": 10}, {"total": 20}]
    assert [r.runs for r in reports] == [1, 1]


def test_a_hit_is_an_attribute_read() -> None:
    report = Report(3)
    assert report.total == {"total": 30}
    assert report.__dict__["total"] == {"total": 30}  # the descriptor is no longer consulted
    assert isinstance(Report.__dict__["total"], CachedProperty)
    assert not hasattr(CachedProperty, "__set__")  # a non-data descriptor, as functools'


def test_del_and_invalidate_forget_the_value() -> None:
    report = Report(4)
    _ = report.total
    del report.total
    _ = report.total
    assert report.runs == 2
    assert Report.total.invalidate(report) is True
    assert Report.total.invalidate(report) is False
    _ = report.total
    assert report.runs == 3
    fresh = Report(5)
    with pytest.raises(AttributeError):
        del fresh.total  # never computed, as functools.cached_property


def test_assignment_replaces_the_value() -> None:
    report = Report(6)
    report.total = {"total": 0}
    assert report.total == {"total": 0}
    assert report.runs == 0


def test_the_instance_is_collectable() -> None:
    report = Report(7)
    _ = report.total
    ref = weakref.ref(report)
    del report
    gc.collect()
    assert ref() is None
    assert Report.total._locks._locks == {}  # no lock left behind


def test_an_exception_is_not_cached() -> None:
    class Flaky:
        runs = 0

        @cached_property
        def value(self) -> int:
            self.runs += 1
            if self.runs == 1:
                raise KeyError("first time")
            return self.runs

    flaky = Flaky()
    with pytest.raises(KeyError):
        _ = flaky.value
    assert flaky.value == 2
    assert flaky.value == 2


def test_metadata() -> None:
    assert Report.total.__doc__ == "The total."
    assert Report.total.__name__ == "total"
    assert Report.total.__wrapped__.__qualname__ == "Report.total"
    assert "Report.total" in repr(Report.total)


def test_slots_without_dict_get_an_error_with_the_fix() -> None:
    class Slotted:
        __slots__ = ("number",)

        @cached_property
        def total(self) -> int:
            return 1

    with pytest.raises(TypeError, match=r"add '__dict__' to .*__slots__"):
        _ = Slotted().total

    class WithDict:
        __slots__ = ("__dict__", "number")

        @cached_property
        def total(self) -> int:
            return 1

    assert WithDict().total == 1


def test_one_property_two_names_is_refused() -> None:
    def getter(self: Any) -> int:
        return 1

    shared = cached_property(getter)
    with pytest.raises((TypeError, RuntimeError)) as info:

        class Twice:
            a = shared
            b = shared

    error = info.value if isinstance(info.value, TypeError) else info.value.__cause__
    assert "two names" in str(error)


def test_a_property_without_a_name() -> None:
    prop = cached_property(lambda self: 1)

    class Late:
        pass

    Late.value = prop  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="without a name"):
        _ = Late().value  # type: ignore[attr-defined]


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="timeout"):
        cached_property(timeout="60")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="cache must be"):
        cached_property(cache=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="method taking only self"):
        cached_property(property(lambda self: 1))


def test_hit_cost_matches_functools() -> None:
    # Not a timing: both hits are the same operation, a read of the instance __dict__.
    class Both:
        @cached_property
        def ours(self) -> int:
            return 1

        @functools.cached_property
        def theirs(self) -> int:
            return 1

    both = Both()
    assert (both.ours, both.theirs) == (1, 1)
    assert both.__dict__ == {"ours": 1, "theirs": 1}


# -- timed ---------------------------------------------------------------------------------


def test_timeout_recomputes_after_the_deadline() -> None:
    class Rates:
        runs = 0

        @cached_property(timeout=60)
        def rate(self) -> int:
            self.runs += 1
            return self.runs

    with freeze_time() as frozen:
        rates = Rates()
        assert rates.rate == 1
        frozen.tick(59)
        assert rates.rate == 1
        frozen.tick(2)
        assert rates.rate == 2
        del rates.rate
        assert rates.rate == 3
        rates.rate = 10
        assert rates.rate == 10
        assert Rates.rate.invalidate(rates) is True
        with pytest.raises(AttributeError):
            del rates.rate


def test_timed_first_reads_compute_once_and_release_the_instance() -> None:
    class Slow:
        runs = 0

        @cached_property(timeout=30)
        def value(self) -> int:
            self.runs += 1
            time.sleep(0.1)
            return 5

    holder = [Slow()]
    assert read_together(10, lambda: holder[0].value) == [5] * 10
    assert holder[0].runs == 1
    ref = weakref.ref(holder[0])
    holder.clear()
    gc.collect()
    assert ref() is None


# -- shared ------------------------------------------------------------------------------


class Customer:
    runs = 0

    def __init__(self, pk: int) -> None:
        self.pk = pk

    def __cache_key__(self) -> int:
        return self.pk

    @cached_property(cache="default", timeout=300)
    def lifetime_value(self) -> int:
        Customer.runs += 1
        return self.pk * 100


@pytest.fixture
def default_cache() -> Any:
    memokit.configure(memokit.config.DEFAULT_CACHES)
    memokit.cache.clear()
    Customer.runs = 0
    yield memokit.caches["default"]
    memokit.configure(memokit.config.DEFAULT_CACHES)


def test_shared_value_follows_the_declared_identity(default_cache: BaseCache) -> None:
    assert Customer(1).lifetime_value == 100
    assert Customer(1).lifetime_value == 100  # another object for the same row
    assert Customer(2).lifetime_value == 200
    assert Customer.runs == 2
    assert "lifetime_value" not in Customer(1).__dict__
    key = Customer.lifetime_value.cached.key(Customer(1))
    assert memokit.Entry.read(default_cache, key).value == 100  # type: ignore[union-attr]


def test_shared_invalidate_and_del(default_cache: BaseCache) -> None:
    customer = Customer(3)
    _ = customer.lifetime_value
    assert Customer.lifetime_value.invalidate(customer) is True
    _ = customer.lifetime_value
    del customer.lifetime_value
    _ = customer.lifetime_value
    assert Customer.runs == 3
    with pytest.raises(AttributeError, match="invalidate"):
        customer.lifetime_value = 5


def test_shared_mode_needs_an_identity(cache: BaseCache) -> None:
    class Anonymous:
        @cached_property(cache=cache)
        def value(self) -> int:
            return 1

    with pytest.raises(memokit.UnkeyableArgument, match="__cache_key__"):
        _ = Anonymous().value


def test_shared_mode_works_with_slots(cache: BaseCache, module_level: Any) -> None:
    @module_level
    class Slotted:
        __slots__ = ("pk",)

        def __init__(self, pk: int) -> None:
            self.pk = pk

        def __cache_key__(self) -> int:
            return self.pk

        @cached_property(cache=cache)
        def value(self) -> int:
            return self.pk + 1

    assert Slotted(1).value == 2


def test_shared_first_reads_compute_once(cache: BaseCache, module_level: Any) -> None:
    runs: list[int] = []

    @module_level
    class Row:
        def __cache_key__(self) -> str:
            return "row"

        @cached_property(cache=cache)
        def value(self) -> int:
            runs.append(1)
            time.sleep(0.2)
            return 1

    assert read_together(10, lambda: Row().value) == [1] * 10
    assert runs == [1]


# -- async -------------------------------------------------------------------------------


class Profile:
    def __init__(self) -> None:
        self.runs = 0

    @cached_property
    async def avatar(self) -> str:
        self.runs += 1
        await asyncio.sleep(0.05)
        return f"avatar {self.runs}"


def test_async_property_is_awaitable_and_computed_once() -> None:
    holder = [Profile()]

    async def main() -> list[str]:
        profile = holder[0]
        first = await asyncio.gather(*(profile.avatar for _ in range(10)))
        return [*first, await profile.avatar, await profile.avatar]

    assert asyncio.run(main()) == ["avatar 1"] * 12
    assert holder[0].runs == 1
    assert asyncio.run(main()) == ["avatar 1"] * 12  # another event loop: still the value
    ref = weakref.ref(holder[0])
    holder.clear()
    gc.collect()
    assert ref() is None


def test_async_property_survives_a_cancelled_reader_and_retries_after_an_error() -> None:
    class Flaky:
        runs = 0

        @cached_property
        async def value(self) -> int:
            self.runs += 1
            await asyncio.sleep(0.05)
            if self.runs == 1:
                raise KeyError("first time")
            return self.runs

    flaky = Flaky()

    async def main() -> None:
        with pytest.raises(KeyError):
            await flaky.value
        reader = asyncio.ensure_future(flaky.value)
        other = asyncio.ensure_future(flaky.value)
        await asyncio.sleep(0.01)
        reader.cancel()
        assert await other == 2
        assert await flaky.value == 2

    asyncio.run(main())
    assert flaky.runs == 2


def test_async_shared_property(cache: BaseCache, module_level: Any) -> None:
    @module_level
    class Row:
        runs = 0

        def __cache_key__(self) -> int:
            return 1

        @cached_property(cache=cache)
        async def value(self) -> int:
            Row.runs += 1
            return 7

    async def main() -> list[int]:
        return [await Row().value, await Row().value]

    assert asyncio.run(main()) == [7, 7]
    assert Row.runs == 1
