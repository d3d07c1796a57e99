"""f.stats(): this process's statistics per decorated function (issue 20)."""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import Any

import pytest

import memokit
from memokit import stats
from memokit.resilience import BreakerSettings, CircuitBreaker


def _memory(location: str = "stats-process") -> memokit.BaseCache:
    return memokit.create_cache({"BACKEND": "memory", "LOCATION": location})


def test_stats_counts_hits_misses_and_compute_time() -> None:
    cache = _memory()
    cache.clear()

    @memokit.cached(cache=cache)
    def double(x: int) -> int:
        return x * 2

    double(1)
    double(1)
    double(1)
    double(2)
    found = double.stats()
    assert (found.hits, found.misses) == (2, 2)
    assert found.compute.count == 2
    assert found.compute.total > 0
    assert sum(found.compute.buckets) == 2
    assert found.compute.buckets[0] == 2  # a doubling takes well under a millisecond
    assert found.hit_ratio == 0.5
    assert found.calls == 4
    # cache_info keeps its three fields, and agrees.
    info = double.cache_info()
    assert info == (2, 2, 0)
    assert len(info) == 3
    assert (found.stale_hits, found.refreshes, found.refresh_failures) == (0, 0, 0)
    assert found.early_recomputations == 0
    assert not found.shared
    assert "share=True" in found.sharing


def test_the_histogram_puts_each_computation_in_its_bucket() -> None:
    cache = _memory()
    cache.clear()
    clock = iter([0, 500_000, 0, 5_000_000, 0, 50_000_000, 0, 20_000_000_000])

    @memokit.cached(cache=cache)
    def f(x: int) -> int:
        return x

    original = stats.time.perf_counter_ns
    stats.time.perf_counter_ns = lambda: next(clock) + 0  # type: ignore[assignment]
    try:
        state = f._state
        for started in (0, 0, 0, 0):
            stats.record_compute(state, started + next(clock))
    finally:
        stats.time.perf_counter_ns = original  # type: ignore[assignment]
    buckets = f.stats().compute.buckets
    assert buckets == (1, 1, 1, 0, 0, 1)
    assert f.stats().compute.count == 4
    assert f.stats().compute.mean == pytest.approx((0.0005 + 0.005 + 0.05 + 20) / 4)


def test_async_functions_count_the_same() -> None:
    cache = _memory()
    cache.clear()

    @memokit.cached(cache=cache)
    async def triple(x: int) -> int:
        await asyncio.sleep(0)
        return x * 3

    async def calls() -> None:
        await triple(1)
        await triple(1)
        await triple(2)

    asyncio.run(calls())
    found = triple.stats()
    assert (found.hits, found.misses, found.compute.count) == (1, 2, 2)


def test_refresh_counts_a_miss_and_its_compute_time() -> None:
    cache = _memory()
    cache.clear()

    @memokit.cached(cache=cache)
    def f(x: int) -> int:
        return x

    f(1)
    f.refresh(1)
    assert (f.stats().misses, f.stats().compute.count) == (2, 2)


def test_errors_are_told_apart_by_kind() -> None:
    # A value the serializer cannot encode is a value failure; an unreachable
    # backend a backend failure. Both are counted apart, as cache_info does.
    cache = _memory()
    cache.clear()

    @memokit.cached(cache=cache)
    def bad(x: int) -> Any:
        return (lambda: x) if x else x

    with pytest.raises(TypeError):
        bad(1)
    found = bad.stats()
    assert (found.value_errors, found.backend_errors) == (1, 0)
    assert found.errors == 1
    assert found.errors.value == 1
    dead = memokit.create_cache(
        {
            "BACKEND": "redis",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens: refused at once
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    )
    memokit.configure_breaker(cache=dead, window=60)

    @memokit.cached(cache=dead)
    def g(x: int) -> int:
        return x

    logging.getLogger("memokit").disabled = True
    try:
        assert g(1) == 1
    finally:
        logging.getLogger("memokit").disabled = False
        memokit.resilience.breaker_for(dead).reset()
    assert g.stats().backend_errors >= 1
    assert g.stats().errors.backend == g.stats().backend_errors


def test_statistics_off_keep_counts_but_time_nothing() -> None:
    cache = _memory()
    cache.clear()
    stats.configure_stats(enabled=False)

    @memokit.cached(cache=cache)
    def f(x: int) -> int:
        return x

    f(1)
    f(1)
    found = f.stats()
    assert (found.hits, found.misses, found.compute.count) == (1, 1, 0)
    assert "off" in found.sharing


def test_bad_settings_raise_naming_the_fix() -> None:
    with pytest.raises(ValueError, match=r"flush_interval .* e\.g\. flush_interval=10"):
        stats.configure_stats(flush_interval=0)
    with pytest.raises(ValueError, match="flush_interval"):
        stats.configure_stats(flush_interval=float("inf"))
    with pytest.raises(TypeError, match="share must be True or False"):
        stats.configure_stats(share="yes")  # type: ignore[arg-type]
    assert stats.stats_settings() == stats.StatsSettings()


_PROPERTY_CACHE = _memory("stats-property")


class Thing:
    def __init__(self, n: int) -> None:
        self.n = n

    def __cache_key__(self) -> int:
        return self.n

    @memokit.cached_property(cache=_PROPERTY_CACHE)
    def value(self) -> int:
        return self.n * 10


def test_shared_cached_property_has_stats() -> None:
    _PROPERTY_CACHE.clear()
    Thing(1).value  # noqa: B018 - reads compute or hit
    Thing(1).value  # noqa: B018
    Thing(2).value  # noqa: B018
    prop = Thing.__dict__["value"]
    assert (prop.stats().hits, prop.stats().misses) == (1, 2)
    assert prop.cache_info() == (1, 2, 0)
    assert not hasattr(memokit.cached_property(lambda self: 1), "stats")


def test_stats_pickle_and_add() -> None:
    one = stats.Stats(hits=1, misses=2, backend_errors=1)
    two = stats.Stats(hits=3, value_errors=2, compute=stats.ComputeTime(1, 0.5, (0, 0, 1, 0, 0, 0)))
    both = one + two
    assert (both.hits, both.misses, both.errors.backend, both.errors.value) == (4, 2, 1, 2)
    assert both.compute.buckets == (0, 0, 1, 0, 0, 0)
    assert pickle.loads(pickle.dumps(both)) == both
    assert stats.Stats.from_dict(both.as_dict()) == both
    assert stats.Stats().hit_ratio is None
    assert stats.ComputeTime().mean is None


def test_process_stats_lists_live_functions_by_identity() -> None:
    cache = _memory()

    @memokit.cached(cache=cache, name="tests.stats:named")
    def f(x: int) -> int:
        return x

    f(1)
    assert stats.process_stats()["tests.stats:named"].misses == 1


# -- hooks and logging events --------------------------------------------------------


class Recorder(stats.MetricsHook):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def computed(self, function: str, seconds: float) -> None:
        self.events.append(("computed", function, seconds))

    def breaker_opened(self, cache: str, error: BaseException) -> None:
        self.events.append(("opened", cache, type(error)))

    def breaker_closed(self, cache: str) -> None:
        self.events.append(("closed", cache))

    def refresh_failed(self, function: str, error: BaseException) -> None:
        self.events.append(("refresh_failed", function, type(error)))


def test_hooks_receive_events_and_logging_names_them(caplog: pytest.LogCaptureFixture) -> None:
    recorder = stats.add_hook(Recorder())
    assert stats.add_hook(recorder) is recorder  # once, however often added
    assert stats.hooks() == (recorder,)
    cache = _memory()
    cache.clear()

    @memokit.cached(cache=cache, name="tests.stats:hooked")
    def f(x: int) -> int:
        return x

    f(1)
    assert recorder.events[0][:2] == ("computed", "tests.stats:hooked")
    caplog.set_level(logging.INFO, logger="memokit")
    breaker = CircuitBreaker("flaky", BreakerSettings(window=60))
    breaker.record_failure(TimeoutError("timed out"))
    breaker.record_success()
    stats.refresh_failed(f._state, RuntimeError("boom"))
    assert recorder.events[1:] == [
        ("opened", "flaky", TimeoutError),
        ("closed", "flaky"),
        ("refresh_failed", "tests.stats:hooked", RuntimeError),
    ]
    events = [getattr(r, "memokit_event", None) for r in caplog.records]
    assert events == ["breaker_opened", "breaker_closed", "refresh_failed"]
    assert f.stats().refresh_failures == 1
    stats.remove_hook(recorder)
    assert stats.hooks() == ()


def test_a_failing_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(stats.MetricsHook):
        def computed(self, function: str, seconds: float) -> None:
            raise RuntimeError("metrics system down")

    stats.add_hook(Broken())
    cache = _memory()
    cache.clear()

    @memokit.cached(cache=cache)
    def f(x: int) -> int:
        return x

    with caplog.at_level(logging.ERROR, logger="memokit"):
        assert f(5) == 5
    assert "metrics hook" in caplog.text
    with pytest.raises(TypeError, match="MetricsHook"):
        stats.add_hook(object())  # type: ignore[arg-type]
