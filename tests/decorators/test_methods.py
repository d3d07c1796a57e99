"""``@cached`` on instance methods, classmethods and staticmethods (K4)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import sys
import weakref
from typing import Any

import pytest

from memokit import BaseCache, UnkeyableArgument, cached


class Calls:
    count = 0


def make_classes(cache: BaseCache) -> tuple[type[Any], type[Any]]:
    """Classes with every kind of cached method, bound to ``cache``."""

    class User:
        def __init__(self, pk: int, name: str = "") -> None:
            self.pk = pk
            self.name = name
            self.calls = 0

        def __cache_key__(self) -> int:
            return self.pk  # the identity: two objects for one row share entries

        @cached(cache=cache)
        def greeting(self, word: str) -> str:
            self.calls += 1
            return f"{word} {self.pk}"

        @cached(cache=cache)
        async def agreeting(self, word: str) -> str:
            self.calls += 1
            return f"{word} {self.pk}"

        @cached(cache=cache)
        @classmethod
        def active(cls, limit: int) -> str:
            Calls.count += 1
            return f"{cls.__name__}:{limit}"

        @classmethod
        @cached(cache=cache)
        def active_inner(cls, limit: int) -> str:
            Calls.count += 1
            return f"{cls.__name__}:{limit}"

        @cached(cache=cache)
        @classmethod
        async def aactive(cls, limit: int) -> str:
            Calls.count += 1
            return f"{cls.__name__}:{limit}"

        @cached(cache=cache)
        @staticmethod
        def double(n: int) -> int:
            Calls.count += 1
            return 2 * n

        @staticmethod
        @cached(cache=cache)
        def triple(n: int) -> int:
            Calls.count += 1
            return 3 * n

    class Admin(User):
        pass

    # Classes made at run time are refused as arguments (every call of
    # make_classes makes one more "make_classes.<locals>.User"): give each pair a
    # module-level name of its own, which is what keys need.
    serial = next(_serials)
    for cls in (User, Admin):
        cls.__qualname__ = f"{cls.__name__}{serial}"
        globals()[cls.__qualname__] = cls
    return User, Admin


_serials = itertools.count()


@pytest.fixture
def classes(cache: BaseCache) -> tuple[type[Any], type[Any]]:
    Calls.count = 0
    return make_classes(cache)


def test_instance_method_is_keyed_by_declared_identity(classes: Any) -> None:
    user_cls, _ = classes
    first, same_row, other = user_cls(1), user_cls(1), user_cls(2)
    assert first.greeting("hi") == "hi 1"
    assert same_row.greeting("hi") == "hi 1"  # served from first's entry
    assert other.greeting("hi") == "hi 2"
    assert (first.calls, same_row.calls, other.calls) == (1, 0, 1)


def test_instance_method_helpers_are_bound(classes: Any) -> None:
    user_cls, _ = classes
    user = user_cls(1)
    user.greeting("hi")
    assert user.greeting.key("hi") == user_cls.greeting.key(user, "hi")
    assert user.greeting.invalidate("hi") is True
    assert user.greeting("hi") == "hi 1"
    assert user.calls == 2
    assert user.greeting.refresh("hi") == "hi 1"
    assert user.calls == 3
    assert user.greeting.uncached("hey") == "hey 1"
    assert user_cls.greeting(user, "hi") == "hi 1"
    assert user.calls == 4


def test_async_method(classes: Any) -> None:
    user_cls, _ = classes
    user = user_cls(3)

    async def main() -> list[Any]:
        return [
            await user.agreeting("yo"),
            await user.agreeting("yo"),
            await user.agreeting.invalidate("yo"),
            await user_cls.agreeting(user, "yo"),
        ]

    assert asyncio.run(main()) == ["yo 3", "yo 3", True, "yo 3"]
    assert user.calls == 2


def test_instance_without_identity_is_refused(cache: BaseCache) -> None:
    class Anonymous:
        @cached(cache=cache)
        def f(self) -> int:
            return 1

    with pytest.raises(UnkeyableArgument, match=r"argument 'self'.*__cache_key__"):
        Anonymous().f()


def test_memory_backend_does_not_keep_instances_alive(classes: Any) -> None:
    user_cls, _ = classes
    user = user_cls(9)
    user.greeting("hi")
    user.greeting.key("hi")
    ref = weakref.ref(user)
    del user
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("name", ["active", "active_inner"])
def test_classmethod_in_both_orders(classes: Any, name: str) -> None:
    user_cls, admin_cls = classes
    assert getattr(user_cls, name)(5) == "User:5"
    assert getattr(user_cls, name)(5) == "User:5"
    assert getattr(user_cls(1), name)(5) == "User:5"
    assert getattr(admin_cls, name)(5) == "Admin:5"  # the class is part of the key
    assert Calls.count == 2


def test_classmethod_helpers_bind_the_class(classes: Any) -> None:
    user_cls, admin_cls = classes
    user_cls.active(5)
    assert user_cls.active.key(5) != admin_cls.active.key(5)
    assert user_cls(1).active.key(5) == user_cls.active.key(5)
    assert user_cls.active.invalidate(5) is True
    assert user_cls.active(5) == "User:5"
    assert Calls.count == 2
    assert list(inspect.signature(user_cls.active).parameters) == ["limit"]


def test_async_classmethod(classes: Any) -> None:
    user_cls, _ = classes

    async def main() -> list[Any]:
        return [
            await user_cls.aactive(1),
            await user_cls.aactive(1),
            await user_cls.aactive.invalidate(1),
        ]

    assert asyncio.run(main()) == ["User:1", "User:1", True]
    assert Calls.count == 1


@pytest.mark.parametrize("name", ["double", "triple"])
def test_staticmethod_in_both_orders(classes: Any, name: str) -> None:
    user_cls, _ = classes
    assert getattr(user_cls, name)(2) == getattr(user_cls(1), name)(2)
    assert getattr(user_cls, name).key(2) == getattr(user_cls(1), name).key(2)
    assert Calls.count == 1


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13 no longer chains classmethod")
def test_classmethod_outside_cached_helpers_bind_before_313(classes: Any) -> None:
    user_cls, _ = classes
    assert user_cls.active_inner.key(5) == user_cls.active.key(5).replace("active", "active_inner")


def test_signatures_of_methods(classes: Any) -> None:
    user_cls, _ = classes
    user = user_cls(1)
    assert list(inspect.signature(user.greeting).parameters) == ["word"]
    assert list(inspect.signature(user_cls.greeting).parameters) == ["self", "word"]
    assert list(inspect.signature(user_cls.double).parameters) == ["n"]
    assert inspect.iscoroutinefunction(user.agreeting)
    assert user.greeting.__name__ == "greeting"


def test_ignoring_self_shares_entries_between_instances(cache: BaseCache) -> None:
    class Rates:
        calls = 0

        # A class made inside a function: ignoring self needs a name (issue 13 review).
        @cached(cache=cache, ignore=("self",), name="test_methods.Rates.rate")
        def rate(self, currency: str) -> float:
            Rates.calls += 1
            return 1.1

    assert Rates().rate("EUR") == Rates().rate("EUR") == 1.1
    assert Rates.calls == 1
