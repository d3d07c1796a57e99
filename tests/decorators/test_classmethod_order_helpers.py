"""The helpers of a cached classmethod bind the class in either decorator order.

``@classmethod`` above ``@cached``: Python 3.13 dropped classmethod's chaining of
``__get__``, so ``Owner.method`` is a plain bound method of the unbound cached
object, and its helpers (reached through that method's ``__func__``) bound nothing.
Failed on bbcc8ca under Python 3.13 only (``key(1)``: "missing 1 required
positional argument"); 3.11 and 3.12 pass. Found by the issue 16 review.
"""

from __future__ import annotations

import asyncio
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


@pytest.mark.parametrize("name", ["above", "below"])
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


@pytest.mark.parametrize("name", ["aabove", "abelow"])
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
