"""Checked by ``mypy --strict`` and pyright (tests/decorators/test_typing.py), never run
by pytest.

Each ``assert_type`` states what a user's type checker must see through ``@cached``.
"""

# Each `# type: ignore` marks a line that both checkers must reject: mypy --strict
# and, with this setting, pyright report one that is not needed.
# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from typing import assert_type

from memokit import BaseCache, CacheInfo, cached


@cached
def plain(a: int, b: str = "x") -> float:
    return 1.0


@cached(timeout=60, ignore=("verbose",))
def with_arguments(a: int, *, verbose: bool = False) -> list[int]:
    return [a]


@cached
async def coroutine(a: int) -> str:
    return str(a)


@cached(timeout=None)
async def coroutine_with_arguments(a: int, b: int = 2) -> bytes:
    return b""


class Service:
    def __cache_key__(self) -> str:
        return "service"

    @cached
    def method(self, x: int) -> str:
        return str(x)

    @cached(timeout=5)
    async def amethod(self, x: int) -> bytes:
        return b""

    @cached
    @classmethod
    def factory(cls, x: int) -> int:
        return x

    @cached
    @classmethod
    async def afactory(cls, x: int) -> int:
        return x

    @cached
    @staticmethod
    def helper(x: int) -> int:
        return x


def check_functions() -> None:
    assert_type(plain(1), float)
    assert_type(plain(1, b="y"), float)
    assert_type(plain.key(1), str)
    assert_type(plain.invalidate(1, "y"), bool)
    assert_type(plain.refresh(1), float)
    assert_type(plain.uncached(1), float)
    assert_type(plain.cache, BaseCache)
    assert_type(plain.cache_info(), CacheInfo)
    assert_type(with_arguments(1, verbose=True), list[int])
    plain("no")  # type: ignore[arg-type]
    plain.key(1, c=3)  # type: ignore[call-arg]
    plain.invalidate()  # type: ignore[call-arg]


async def check_coroutines() -> None:
    assert_type(await coroutine(1), str)
    assert_type(await coroutine.invalidate(1), bool)
    assert_type(await coroutine.refresh(1), str)
    assert_type(coroutine.key(1), str)
    assert_type(await coroutine_with_arguments(1, b=3), bytes)
    await coroutine("no")  # type: ignore[arg-type]


async def check_methods() -> None:
    service = Service()
    assert_type(service.method(1), str)
    assert_type(service.method.key(1), str)
    assert_type(service.method.invalidate(1), bool)
    assert_type(service.method.refresh(1), str)
    assert_type(Service.method(service, 1), str)
    assert_type(Service.method.key(service, 1), str)
    assert_type(await service.amethod(1), bytes)
    assert_type(await service.amethod.invalidate(1), bool)
    assert_type(await Service.amethod(service, 1), bytes)
    assert_type(Service.factory(1), int)
    assert_type(service.factory(1), int)
    assert_type(Service.factory.key(1), str)
    assert_type(Service.factory.invalidate(1), bool)
    assert_type(await Service.afactory(1), int)
    assert_type(await Service.afactory.invalidate(1), bool)
    assert_type(Service.helper(1), int)
    assert_type(Service.helper.key(1), str)
    service.method("no")  # type: ignore[arg-type]
    Service.factory("no")  # type: ignore[arg-type]


# -- freshness (docs/freshness.md) ----------------------------------------------------


def _minutes_by_size(result: list[int]) -> float | None:
    return 60.0 if result else None


@cached(timeout=_minutes_by_size, stale=30, early=1.0, jitter=0.1)
def by_size(a: int) -> list[int]:
    return [a]


@cached(timeout=lambda result: 5.0, stale=10)
async def with_lambda_timeout(a: int) -> str:
    return str(a)


@cached(timeout=_minutes_by_size)
async def async_by_size(a: int) -> list[int]:
    return [a]


@cached(timeout=300, stale=60, early=1.0, jitter=0.1, none_timeout=lambda none: 5.0)
def with_policy(a: int) -> int | None:
    return a


async def check_freshness() -> None:
    assert_type(by_size(1), list[int])
    assert_type(by_size.key(1), str)
    assert_type(with_policy(1), int | None)
    assert_type(await async_by_size(1), list[int])
    await with_lambda_timeout(1)


# The callable timeout gets the result: one for another type is refused.
@cached(timeout=_minutes_by_size)  # type: ignore[arg-type]
def wrong_result(a: int) -> str:
    return ""


cached(stale="60")  # type: ignore[call-overload]
