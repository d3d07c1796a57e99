"""Freshness policies (issue 18): arguments, jitter, result-dependent timeouts, XFetch, the format.

The phases on every backend are in test_freshness_phases.py; background refreshes
(concurrency, failures, the pool, fork, closing loops) in test_refreshes.py.
"""

from __future__ import annotations

import asyncio
import math
import pickle
import random
import struct
import time
from fractions import Fraction
from typing import Any

import pytest

import memokit
from memokit import BaseCache, Entry, MemoryCache, cached, cached_property
from memokit.entry import Times
from memokit.exceptions import ValueNotStoredWarning
from memokit.fnstate import CachedState
from memokit.framing import dumps_after
from memokit.freshness import NO_POLICY, Policy, early_probability
from memokit.refreshes import pending, wait_idle


def counts(f: Any) -> dict[str, int]:
    """The freshness counts of a decorated function (the slots stats() reads)."""
    state: CachedState = f._state
    return {
        "stale_hits": state.stale_hits,
        "refreshes": state.refreshes,
        "refresh_failures": state.refresh_failures,
        "early_recomputations": state.early_recomputations,
    }


@pytest.fixture
def memory() -> MemoryCache:
    return MemoryCache()


# -- arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"stale": -1}, "stale"),
        ({"stale": math.inf}, "stale"),
        ({"stale": "60"}, "stale"),
        ({"stale": True}, "stale"),
        ({"jitter": 1}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
        ({"early": 0}, "early"),
        ({"early": -1.0}, "early"),
        ({"early": math.nan}, "early"),
        ({"early": "1"}, "early"),
    ],
)
def test_bad_policy_arguments_raise_at_decoration_naming_them(
    arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{named} must be"):
        cached(**arguments)


@pytest.mark.parametrize("name", ["timeout", "none_timeout"])
@pytest.mark.parametrize("bad", ["300", [1], int, object()])
def test_a_timeout_neither_number_none_nor_callable_raises_naming_it(name: str, bad: Any) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be .*callable"):
        cached(**{name: bad})


def test_good_policy_arguments_are_kept() -> None:
    @cached(timeout=10, stale=5, early=2, jitter=0.25)
    def f() -> int:
        return 1

    policy = f._state.policy
    assert (policy.stale, policy.early, policy.jitter) == (5.0, 2.0, 0.25)

    @cached(timeout=10, stale=0, jitter=0)
    def g() -> int:
        return 1

    assert g._state.policy is NO_POLICY


def test_the_plain_hit_path_stays_for_functions_without_stale_or_early() -> None:
    # Decided at decoration: jitter and callable timeouts act when storing only.
    @cached(timeout=lambda result: 5, jitter=0.5)
    def plain() -> int:
        return 1

    @cached(stale=1)
    def stale() -> int:
        return 1

    @cached(early=1)
    async def early() -> int:
        return 1

    assert type(plain).__call__ is memokit.CachedFunction.__call__
    assert type(stale).__call__ is not memokit.CachedFunction.__call__
    assert isinstance(stale, memokit.CachedFunction)
    assert isinstance(early, memokit.AsyncCachedFunction)
    assert type(early).__call__ is not memokit.AsyncCachedFunction.__call__


# -- jitter ----------------------------------------------------------------------------


def test_jitter_spreads_fresh_times_within_its_bound(memory: BaseCache, frozen: Any) -> None:
    @cached(cache=memory, timeout=100, jitter=0.2)
    def f(x: int) -> int:
        return x

    f._state.policy.random = random.Random(18).random
    for x in range(200):
        f(x)
    fresh = []
    for x in range(200):
        entry = Entry.read(memory, f.key(x))
        assert entry is not None
        fresh.append(entry.fresh_until - entry.created)
    assert all(80 < seconds <= 100 for seconds in fresh)  # never longer than the timeout
    assert max(fresh) - min(fresh) > 19  # spread over the whole bound
    assert len({round(seconds, 6) for seconds in fresh}) == 200
    # The store drops each entry at its own time.
    frozen.tick(90)
    alive = sum(memory.has_key(f.key(x)) for x in range(200))
    assert 0 < alive < 200


def test_without_jitter_every_entry_gets_the_whole_timeout(memory: BaseCache) -> None:
    @cached(cache=memory, timeout=100)
    def f(x: int) -> int:
        return x

    f(1)
    entry = Entry.read(memory, f.key(1))
    assert entry is not None
    assert entry.fresh_until - entry.created == 100
    assert entry.stale_until == entry.fresh_until


# -- result-dependent timeouts ---------------------------------------------------------


def test_a_callable_timeout_gets_the_result(cache: BaseCache, clock: Any) -> None:
    calls: list[int] = []

    def ttl(result: int) -> float | None:
        return {1: 100, 2: 0, 3: None}[result]

    @cached(cache=cache, timeout=ttl)
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert [f(1), f(1), f(2), f(2), f(3), f(3)] == [1, 1, 2, 2, 3, 3]
    assert calls == [1, 2, 2, 3]  # 0: not cached
    one = Entry.read(cache, f.key(1))
    forever = Entry.read(cache, f.key(3))
    assert one is not None
    assert forever is not None
    assert one.fresh_until - one.created == 100
    assert forever.fresh_until == math.inf


def test_a_callable_none_timeout_gets_the_none_result(cache: BaseCache) -> None:
    seen: list[Any] = []

    def none_ttl(result: None) -> float:
        seen.append(result)
        return 0

    @cached(cache=cache, timeout=100, none_timeout=none_ttl)
    def f(x: int) -> int | None:
        return x or None

    assert f(0) is None
    assert f(0) is None
    assert seen == [None, None]  # never cached
    assert f(1) == 1
    assert cache.has_key(f.key(1))


@pytest.mark.parametrize("bad", ["60", True, math.nan, [60]])
def test_a_bad_timeout_from_the_callable_is_a_value_failure(cache: BaseCache, bad: Any) -> None:
    @cached(cache=cache, timeout=lambda result: bad)
    def f() -> int:
        return 7

    with pytest.warns(ValueNotStoredWarning, match="timeout callable returned"):
        assert f() == 7
    assert not cache.has_key(f.key())  # returned unstored
    info = f.cache_info()
    assert info.errors.value == 1
    assert info.errors.backend == 0
    assert info.misses == 1


def test_a_callable_timeout_may_return_what_a_timeout_argument_may(memory: BaseCache) -> None:
    # Any real number, as for timeout= itself (a Fraction, numpy's floats), not only float.
    @cached(cache=memory, timeout=lambda result: Fraction(120))
    def f() -> int:
        return 7

    assert f() == 7
    entry = Entry.read(memory, f.key())
    assert entry is not None
    assert entry.fresh_until - entry.created == 120
    assert f.cache_info().errors.value == 0


def test_the_timeout_callables_own_error_propagates(memory: BaseCache) -> None:
    def ttl(result: int) -> float:
        raise LookupError("no rule for it")

    @cached(cache=memory, timeout=ttl)
    def f() -> int:
        return 7

    with pytest.raises(LookupError, match="no rule"):
        f()


async def _twice(f: Any) -> list[int]:
    return [await f(), await f()]


def test_a_callable_timeout_on_a_coroutine_function_and_a_method(
    memory: BaseCache, module_level: Any
) -> None:
    calls: list[str] = []

    @cached(cache=memory, timeout=lambda result: 0 if result < 0 else 50)
    async def f() -> int:
        calls.append("f")
        return -1

    @module_level
    class Service:
        def __cache_key__(self) -> str:
            return "service"

        @cached(cache=memory, timeout=lambda result: 50)
        def method(self) -> int:
            calls.append("method")
            return 1

    assert asyncio.run(_twice(f)) == [-1, -1]
    service = Service()
    assert [service.method(), service.method()] == [1, 1]
    assert calls == ["f", "f", "method"]


# -- early recomputation (XFetch) -----------------------------------------------------


def test_xfetch_early_counts_per_tenth_match_the_algorithm() -> None:
    # A fixed seed and an injected clock: each call at time t recomputes early with
    # probability exp(-(fresh_until - t) / (took * beta)). Per tenth of the window,
    # the count must lie within 3 standard deviations of the expected count.
    policy = Policy(early=1.0)
    policy.random = random.Random(20150601).random
    window, took, calls_per_tenth = 100.0, 10.0, 2000
    times = Times(created=0.0, fresh_until=window, stale_until=window, took=took)
    found = []
    for tenth in range(10):
        start = tenth * window / 10
        moments = [
            start + (i + 0.5) * window / 10 / calls_per_tenth for i in range(calls_per_tenth)
        ]
        count = sum(policy.due_early(now, times) for now in moments)
        chances = [early_probability(window - now, took, 1.0) for now in moments]
        expected = sum(chances)
        deviation = math.sqrt(sum(p * (1 - p) for p in chances))
        assert abs(count - expected) <= 3 * max(deviation, 1 / 3), (tenth, count, expected)
        found.append(count)
    # Hardly ever early at first; near expiry, most calls of the last tenth.
    assert found[0] <= 1
    assert found[-1] > calls_per_tenth / 2
    assert found[5:] == sorted(found[5:])


def test_xfetch_grows_with_beta_and_with_the_computations_cost() -> None:
    cheap = Times(0.0, 100.0, 100.0, 1.0)
    dear = Times(0.0, 100.0, 100.0, 20.0)
    rng = random.Random(3)
    low, high = Policy(early=0.5), Policy(early=2.0)
    low.random = high.random = rng.random
    at = 80.0
    assert sum(low.due_early(at, dear) for _ in range(4000)) < sum(
        high.due_early(at, dear) for _ in range(4000)
    )
    assert sum(high.due_early(at, cheap) for _ in range(4000)) < sum(
        high.due_early(at, dear) for _ in range(4000)
    )
    assert not Policy().due_early(99.9, dear)  # no early= : never


def test_an_early_recomputation_runs_in_the_background_once(memory: BaseCache, frozen: Any) -> None:
    runs: list[int] = []

    @cached(cache=memory, timeout=60, early=1.0, name="early-sync")
    def f() -> int:
        frozen.tick(2)  # the computation "takes" two seconds
        runs.append(1)
        return len(runs)

    assert f() == 1
    entry = Entry.read(memory, f.key())
    assert entry is not None
    assert entry.took == pytest.approx(2)
    policy = f._state.policy
    policy.random = lambda: 0.0  # log(1) = 0: never early before expiry
    assert f() == 1
    assert counts(f)["early_recomputations"] == 0
    frozen.tick(50)  # ten seconds before expiry: a draw of 1 - 1e-12 comes due
    policy.random = lambda: 1 - 1e-12
    assert f() == 1  # the caller still gets the fresh value at once
    wait_idle()
    assert runs == [1, 1]
    assert counts(f) == {
        "stale_hits": 0,
        "refreshes": 1,
        "refresh_failures": 0,
        "early_recomputations": 1,
    }
    policy.random = lambda: 0.0
    assert f() == 2


def test_an_early_recomputation_of_a_coroutine_function(memory: BaseCache, frozen: Any) -> None:
    runs: list[int] = []

    @cached(cache=memory, timeout=60, early=1.0, name="early-async")
    async def f() -> int:
        frozen.tick(2)
        runs.append(1)
        return len(runs)

    async def scenario() -> list[int]:
        first = await f()
        frozen.tick(50)
        f._state.policy.random = lambda: 1 - 1e-12
        second = await f()
        for _ in range(100):
            if pending() == 0:
                break
            await asyncio.sleep(0)
        f._state.policy.random = lambda: 0.0
        return [first, second, await f()]

    assert asyncio.run(scenario()) == [1, 1, 2]
    assert counts(f)["early_recomputations"] == 1


# -- the entry format -----------------------------------------------------------------


def test_an_entry_of_format_2_reads_as_a_miss(cache: BaseCache) -> None:
    # Issue 18 added the times to the header (format 3): a deploy starts cold.
    calls: list[int] = []

    @cached(cache=cache, stale=10)
    def f() -> int:
        calls.append(1)
        return len(calls)

    @cached(cache=cache)
    def g() -> int:
        calls.append(1)
        return len(calls)

    for fn in (f, g):
        versions = (memokit.get_version(fn),)
        made = cache.make_and_validate_key(fn.key())
        if cache.capabilities.keeps_objects:
            old: Any = ("mk2", time.time(), versions, 99)
        else:
            header = struct.pack("<2sBH", b"\x80\xe6", 2, 1) + struct.pack("<q", versions[0])
            old = dumps_after(cache.serializer, header + struct.pack("<d", time.time()), 99)
        cache._set(made, old, None)
    assert f() == 1
    assert f() == 1
    assert g() == 2
    assert g() == 2
    entry = Entry.read(cache, f.key())
    assert entry is not None
    assert entry.value == 1


def test_the_entry_records_its_times(memory: BaseCache, frozen: Any) -> None:
    @cached(cache=memory, timeout=30, stale=20, name="records-times")
    def f() -> str:
        frozen.tick(0.5)
        return "value"

    started = time.time()
    f()
    entry = Entry.read(memory, f.key())
    assert entry is not None
    assert entry.created == started + 0.5
    assert (entry.fresh_until, entry.stale_until) == (entry.created + 30, entry.created + 50)
    assert entry.took == pytest.approx(0.5)
    assert Entry.from_payload(entry.to_payload(memory), memory) == entry
    assert pickle.loads(pickle.dumps(entry.times)) == entry.times


# -- cached_property -------------------------------------------------------------------


def test_cached_property_plain_mode_takes_no_freshness_argument() -> None:
    for arguments in (
        {"jitter": 0.1},
        {"stale": 5},
        {"early": 1.0},
        {"timeout": None, "jitter": 0},
    ):
        with pytest.raises(TypeError, match="never expires"):
            cached_property(**arguments)


def test_cached_property_timed_mode_takes_jitter_and_a_callable_only() -> None:
    for name in ("stale", "early"):
        with pytest.raises(TypeError, match=f"^{name}= needs a cache"):
            cached_property(timeout=5, **{name: 1})
    with pytest.raises(ValueError, match=r"^jitter must be"):
        cached_property(timeout=5, jitter=2)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"cache": "default", "stale": ""}, "stale"),
        ({"cache": "default", "stale": False}, "stale"),
        ({"cache": "default", "jitter": []}, "jitter"),
        ({"timeout": 5, "jitter": ""}, "jitter"),
        ({"timeout": 5, "jitter": False}, "jitter"),
    ],
)
def test_cached_property_refuses_a_bad_argument_that_looks_false(
    arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named} must be"):
        cached_property(**arguments)


def test_cached_property_timed_mode_with_callable_timeout_and_jitter(frozen: Any) -> None:
    class Order:
        computed = 0

        @cached_property(timeout=lambda value: value * 10, jitter=0.5)
        def total(self) -> int:
            Order.computed += 1
            return 3

        @cached_property(timeout=lambda value: "soon")
        def odd(self) -> int:
            return 1

    order = Order()
    assert order.total == 3
    _value, deadline = order.__dict__["total"]
    assert 15 <= deadline - time.monotonic() <= 30
    frozen.tick(31)
    assert order.total == 3
    assert Order.computed == 2
    with pytest.warns(ValueNotStoredWarning, match="timeout callable returned 'soon'"):
        assert order.odd == 1
    assert "odd" not in order.__dict__


def test_cached_property_shared_mode_serves_stale(frozen: Any, module_level: Any) -> None:
    cache = MemoryCache()
    runs: list[int] = []

    @module_level
    class Account:
        def __cache_key__(self) -> str:
            return "account"

        @cached_property(cache=cache, timeout=10, stale=30, jitter=0.1, early=2.0)
        def balance(self) -> int:
            runs.append(1)
            return len(runs)

    account = Account()
    assert account.balance == 1
    prop = Account.__dict__["balance"]
    policy = prop.cached._state.policy
    assert (policy.stale, policy.early, policy.jitter) == (30.0, 2.0, 0.1)
    policy.random = lambda: 0.0
    frozen.tick(15)
    assert account.balance == 1  # stale, refreshed in the background
    wait_idle()
    assert account.balance == 2
    assert counts(prop.cached)["stale_hits"] == 1
