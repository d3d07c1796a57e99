"""The helpers of a cached classmethod bind the class in either decorator order.

``@classmethod`` above ``@cached``: Python 3.13 dropped classmethod's chaining of
``__get__``, so ``Owner.method`` is a plain bound method of the unbound cached
object, and its helpers (reached through that method's ``__func__``) bound nothing.
Failed on bbcc8ca under Python 3.13 only (``key(1)``: "missing 1 required
positional argument"); 3.11 and 3.12 pass. Found by the issue 16 review.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from memokit import BaseCache, cached


def _classes(cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]) -> Any:
    runs: list[str] = []

    class Base:
        @cached(cache=cache)
        @classmethod
        def above(cls, n: int) -> str:
            runs.append("above")
            return f"{cls.__name__} {n}"

        @classmethod
        @cached(cache=cache)
        def below(cls, n: int) -> str:
            runs.append("below")
            return f"{cls.__name__} {n}"

        @cached(cache=cache)
        @classmethod
        async def aabove(cls, n: int) -> str:
            runs.append("aabove")
            return f"{cls.__name__} {n}"

        @classmethod
        @cached(cache=cache)
        async def abelow(cls, n: int) -> str:
            runs.append("abelow")
            return f"{cls.__name__} {n}"

    class Child(Base):
        pass

    module_level(Base)
    module_level(Child)
    return Base, Child, runs


# Python 3.13: with @classmethod above @cached, `Child.below` is a plain method of the
# unbound cached object; its helpers cannot know the class and refuse a call without it
# (test_helpers_under_a_hiding_classmethod_refuse_a_call_without_the_class).
_BELOW_ON_313 = pytest.mark.skipif(
    sys.version_info >= (3, 13),
    reason="3.13: classmethod no longer chains __get__; these helpers refuse instead",
)


@pytest.mark.parametrize("name", ["above", pytest.param("below", marks=_BELOW_ON_313)])
def test_sync_helpers_bind_the_class_in_either_order(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]], name: str
) -> None:
    base, child, runs = _classes(cache, module_level)
    method = getattr(child, name)
    assert method(1) == "Child 1"
    assert method.key(1) == getattr(child(), name).key(1)
    assert method.key(1) != getattr(base, name).key(1)  # the class is in the key
    assert method.uncached(2) == "Child 2"
    assert getattr(base, name).invalidate(1) is False  # only Child's entry exists
    assert method.invalidate(1) is True
    assert method.refresh(1) == "Child 1"
    assert method(1) == "Child 1"  # the refreshed entry
    assert runs == [name, name, name]  # the call, uncached, refresh


@pytest.mark.parametrize("name", ["aabove", pytest.param("abelow", marks=_BELOW_ON_313)])
def test_async_helpers_bind_the_class_in_either_order(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]], name: str
) -> None:
    base, child, runs = _classes(cache, module_level)
    method = getattr(child, name)

    async def main() -> list[Any]:
        return [
            await method(1),
            method.key(1) == getattr(child(), name).key(1),
            method.key(1) != getattr(base, name).key(1),
            await method.invalidate(1),
            await method.refresh(1),
            await method(1),
        ]

    assert asyncio.run(main()) == ["Child 1", True, True, True, "Child 1", "Child 1"]
    assert runs == [name, name]


# -- the counting helpers (cache, cache_info, invalidate_all), and static methods --------
# Added with the issue 16 review's fixes: these helpers had been checked on functions
# and instance methods only.


@pytest.mark.parametrize("name", ["above", "below"])
def test_counting_helpers_of_a_classmethod_in_either_order(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]], name: str
) -> None:
    base, child, runs = _classes(cache, module_level)
    method = getattr(child, name)
    assert method.cache is cache
    assert method(1) == "Child 1"
    assert method(1) == "Child 1"
    info = method.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    # One record per decorated function, whichever class or instance reaches it.
    assert getattr(base, name).cache_info() == getattr(child(), name).cache_info() == info
    version = method.invalidate_all()
    assert getattr(base, name).invalidate_all() == version + 1
    assert method(1) == "Child 1"  # every entry is gone: computed again
    assert runs == [name, name]


@pytest.mark.parametrize("name", ["aabove", "abelow"])
def test_async_counting_helpers_of_a_classmethod_in_either_order(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]], name: str
) -> None:
    base, child, runs = _classes(cache, module_level)
    method = getattr(child, name)

    async def main() -> list[Any]:
        first = [await method(1), await method(1)]
        info = method.cache_info()
        version = await method.invalidate_all()
        return [
            *first,
            (info.hits, info.misses),
            getattr(base, name).cache_info() == info,
            await getattr(base, name).invalidate_all() == version + 1,
            await method(1),
        ]

    assert method.cache is cache
    assert asyncio.run(main()) == ["Child 1", "Child 1", (1, 1), True, True, "Child 1"]
    assert runs == [name, name]


def _statics(cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]) -> Any:
    runs: list[str] = []

    class Tariff:
        @cached(cache=cache)
        @staticmethod
        def above(n: int) -> int:
            runs.append("above")
            return n * 2

        @staticmethod
        @cached(cache=cache)
        def below(n: int) -> int:
            runs.append("below")
            return n * 2

        @cached(cache=cache)
        @staticmethod
        async def aabove(n: int) -> int:
            runs.append("aabove")
            return n * 2

        @staticmethod
        @cached(cache=cache)
        async def abelow(n: int) -> int:
            runs.append("abelow")
            return n * 2

    class Special(Tariff):
        pass

    module_level(Tariff)
    module_level(Special)
    return Tariff, Special, runs


@pytest.mark.parametrize("name", ["above", "below"])
def test_helpers_of_a_staticmethod_in_either_order(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]], name: str
) -> None:
    base, child, runs = _statics(cache, module_level)
    reached = [getattr(base, name), getattr(child, name), getattr(child(), name)]
    method = reached[0]
    assert method.cache is cache
    assert len({r.key(3) for r in reached}) == 1  # nothing bound: one key for all
    assert method(3) == 6
    assert all(r(3) == 6 for r in reached)  # hits
    assert {r.cache_info() for r in reached} == {method.cache_info()}
    assert (method.cache_info().hits, method.cache_info().misses) == (3, 1)
    assert reached[2].uncached(3) == 6  # runs, does not store
    assert reached[1].invalidate(3) is True
    assert reached[2].invalidate(3) is False
    assert reached[2].refresh(3) == 6
    assert method(3) == 6  # the refreshed entry
    version = reached[1].invalidate_all()
    assert reached[2].invalidate_all() == version + 1
    assert method(3) == 6
    assert runs == [name] * 4  # the call, uncached, refresh, after invalidate_all


@pytest.mark.parametrize("name", ["aabove", "abelow"])
def test_async_helpers_of_a_staticmethod_in_either_order(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]], name: str
) -> None:
    base, child, runs = _statics(cache, module_level)
    reached = [getattr(base, name), getattr(child, name), getattr(child(), name)]
    method = reached[0]

    async def main() -> list[Any]:
        return [
            await method(3),
            [await r(3) for r in reached],
            len({r.key(3) for r in reached}),
            {r.cache_info() for r in reached} == {method.cache_info()},
            await reached[2].uncached(3),
            await reached[1].invalidate(3),
            await reached[2].invalidate(3),
            await reached[2].refresh(3),
            await method(3),
            await reached[1].invalidate_all() + 1 == await reached[2].invalidate_all(),
            await method(3),
        ]

    assert method.cache is cache
    assert asyncio.run(main()) == [6, [6, 6, 6], 1, True, 6, True, False, 6, 6, True, 6]
    assert runs == [name] * 4


# -- Python 3.13: @classmethod above @cached -------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 13), reason="before 3.13 the helpers bind the class")
def test_helpers_under_a_hiding_classmethod_refuse_a_call_without_the_class(
    cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]
) -> None:
    # Failed on 3.13 before the fix: with two parameters nothing raised, and
    # `invalidate(3, 4)` dropped the key of cls=3, a=4 (another call's, or none)
    # while the entry of Child.pair(3, 4) stayed: stale data served in silence.
    class Base:
        @classmethod
        @cached(cache=cache)
        def pair(cls, a: int, b: int = 0) -> str:
            return f"{cls.__name__} {a} {b}"

        @classmethod
        @cached(cache=cache)
        async def apair(cls, a: int, b: int = 0) -> str:
            return f"{cls.__name__} {a} {b}"

    class Child(Base):
        pass

    module_level(Base)
    module_level(Child)
    assert Child.pair(3, 4) == "Child 3 4"  # the call itself binds the class
    fix = "put @cached above @classmethod"
    with pytest.raises(TypeError, match=fix):
        Child.pair.invalidate(3, 4)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=fix):
        Child.pair.key(3)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=fix):
        Child.pair.refresh(3, 4)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=fix):
        Child.pair.uncached(3, 4)  # type: ignore[attr-defined]
    # The class given first is what the call used: the helpers work.
    assert Child.pair.uncached(Child, 3, 4) == "Child 3 4"  # type: ignore[attr-defined]
    assert Child.pair.invalidate(Child, 3, 4) is True  # type: ignore[attr-defined]
    assert Child.pair.invalidate(Child, 3, 4) is False  # type: ignore[attr-defined]

    async def main() -> None:
        assert await Child.apair(3, 4) == "Child 3 4"
        with pytest.raises(TypeError, match=fix):
            await Child.apair.invalidate(3, 4)  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match=fix):
            Child.apair.key(3)  # type: ignore[attr-defined]
        assert await Child.apair.invalidate(Child, 3, 4) is True  # type: ignore[attr-defined]

    asyncio.run(main())
