"""Checked by ``mypy --strict`` and pyright (tests/decorators/test_typing.py), never run
by pytest.

What a user's type checker must see through ``@cached_property``.
"""

# Each `# type: ignore` marks a line that both checkers must reject: mypy --strict
# and, with this setting, pyright report one that is not needed.
# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from collections.abc import Awaitable
from typing import assert_type

from memokit import CachedProperty, cached_property


class Order:
    def __cache_key__(self) -> int:
        return 1

    @cached_property
    def total(self) -> int:
        return 1

    @cached_property(timeout=60)
    def rate(self) -> float:
        return 1.0

    @cached_property(cache="default")
    def shared(self) -> list[str]:
        return []

    @cached_property
    async def remote(self) -> bytes:
        return b""


order = Order()
assert_type(order.total, int)
assert_type(order.rate, float)
assert_type(order.shared, list[str])
assert_type(order.remote, Awaitable[bytes])
assert_type(Order.total, CachedProperty[int])
assert_type(Order.total.invalidate(order), bool)


async def read() -> bytes:
    return await order.remote


class Timed:
    def __cache_key__(self) -> int:
        return 1

    @cached_property(timeout=lambda value: 60.0, jitter=0.1)
    def rate(self) -> float:
        return 1.0

    @cached_property(cache="default", timeout=300, stale=60, early=1.0, jitter=0.1)
    def shared(self) -> list[str]:
        return []


timed = Timed()
assert_type(timed.rate, float)
assert_type(timed.shared, list[str])
