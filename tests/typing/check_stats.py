"""Checked by ``mypy --strict`` and pyright (tests/decorators/test_typing.py), never run
by pytest.

What a user's type checker sees of ``stats()`` and the statistics API (issue 20).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from typing import assert_type

from memokit import BaseCache, CacheInfo, cached, cached_property
from memokit.fnstate import ErrorCounts
from memokit.properties import CachedProperty, SharedCachedProperty
from memokit.stats import (
    ComputeTime,
    MetricsHook,
    Stats,
    StatsSettings,
    ashared_stats,
    configure_stats,
    process_stats,
    shared_stats,
)


@cached
def plain(a: int) -> float:
    return 1.0


@cached
async def coroutine(a: int) -> str:
    return str(a)


class Service:
    def __cache_key__(self) -> str:
        return "service"

    @cached
    def method(self, a: int) -> int:
        return a

    @cached(timeout=60)
    @classmethod
    def on_class(cls, a: int) -> int:
        return a

    @cached_property(cache="default")
    def shared(self) -> int:
        return 1


def check(cache: BaseCache) -> None:
    assert_type(plain.stats(), Stats)
    assert_type(coroutine.stats(), Stats)
    assert_type(Service().method.stats(), Stats)
    assert_type(Service.method.stats(), Stats)
    assert_type(Service.on_class.stats(), Stats)
    assert_type(plain.cache_info(), CacheInfo)
    found = plain.stats()
    assert_type(found.hits, int)
    assert_type(found.stale_hits, int)
    assert_type(found.errors, ErrorCounts)
    assert_type(found.hit_ratio, float | None)
    assert_type(found.compute, ComputeTime)
    assert_type(found.compute.buckets, tuple[int, ...])
    assert_type(found.compute.mean, float | None)
    assert_type(found.sharing, str)
    assert_type(found + found, Stats)
    assert_type(shared_stats(cache), dict[str, Stats])
    assert_type(shared_stats("default"), dict[str, Stats])
    assert_type(process_stats(), dict[str, Stats])
    assert_type(configure_stats(share=True, flush_interval=5), StatsSettings)
    configure_stats(share="yes")  # type: ignore[arg-type]
    shared_stats(3)  # type: ignore[arg-type]
    plain.stats(1)  # type: ignore[call-arg]
    prop = Service.__dict__["shared"]
    if isinstance(prop, SharedCachedProperty):
        assert_type(prop.stats(), Stats)
    assert isinstance(prop, CachedProperty)


async def acheck(cache: BaseCache) -> None:
    assert_type(await ashared_stats(cache), dict[str, Stats])


class Hook(MetricsHook):
    def computed(self, function: str, seconds: float) -> None:
        pass
