"""Totals shared through the cache's own backend, across processes (issue 20).

Real stores (filesystem, SQLite, Redis, Memcached) and real second processes;
freezegun moves the flush interval's clock, which is ours (time.monotonic).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from freezegun import freeze_time

import memokit
from memokit import stats
from memokit.exceptions import NotShareable

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import memokit
    from memokit import stats

    memokit.configure({"default": json.loads(sys.argv[1])})
    stats.configure_stats(share=True)

    @memokit.cached(name="statsapp:price")
    def price(x):
        return x * 2

    if sys.argv[2] == "exit":
        for x in (1, 1, 1, 2):
            price(x)
    else:  # killed: what was flushed stays, the last interval is lost
        from freezegun import freeze_time

        with freeze_time() as frozen:
            stats.configure_stats(flush_interval=10)  # scheduled on the frozen clock
            price(1)
            price(1)
            frozen.tick(11)
            price(1)  # flushes 1 miss and 2 hits
            for _ in range(5):
                price(1)
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture(autouse=True)
def _no_leftover_functions() -> None:
    # configure_stats(share=True) schedules every live decorated function: those of
    # finished tests, whose stores are closed, must be gone first.
    gc.collect()


def _child(config: dict[str, object], mode: str, tmp_path: Path) -> int:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(config), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert mode == "kill" or done.returncode == 0, done.stderr
    return done.returncode


def test_another_process_totals_are_read_back(make_cache: object, tmp_path: Path) -> None:
    cache = make_cache()  # type: ignore[operator]
    config = make_cache.config  # type: ignore[attr-defined]
    stats.configure_stats(share=True)

    @memokit.cached(cache=cache, name="statsapp:price")
    def price(x: int) -> int:
        return x * 2

    price(1)
    price(1)
    if not cache.capabilities.cross_process:
        assert not price.stats().shared
        assert "keeps its data in this process" in price.stats().sharing
        with pytest.raises(NotShareable, match="SQLite, Redis or Memcached"):
            stats.shared_stats(cache)
        return
    assert price.stats().shared
    assert "every 10 s" in price.stats().sharing
    _child(config, "exit", tmp_path)  # flushes at exit
    stats.flush(price._state)  # what this process counted, as at its exit
    totals = stats.shared_stats(cache)
    assert set(totals) == {"statsapp:price"}
    found = totals["statsapp:price"]
    # Two calls here, four in the child, which finds price(1) stored by this process.
    assert found.hits + found.misses == 6
    assert found.misses == 2  # price(1) here, price(2) in the child
    assert found.compute.count == 2
    assert found.shared
    assert asyncio.run(stats.ashared_stats(cache)) == totals


def test_a_killed_process_loses_at_most_one_interval(make_cache: object, tmp_path: Path) -> None:
    cache = make_cache()  # type: ignore[operator]
    if not cache.capabilities.cross_process:
        with pytest.raises(NotShareable):
            stats.shared_stats(cache)
        return
    assert _child(make_cache.config, "kill", tmp_path) == -9  # type: ignore[attr-defined]
    found = stats.shared_stats(cache)["statsapp:price"]
    assert (found.misses, found.hits) == (1, 2)


def test_flushes_at_most_every_interval_never_per_call(tmp_path: Path) -> None:
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "s.db")})

    @memokit.cached(cache=cache, name="tests:interval")
    def f(x: int) -> int:
        return x

    with freeze_time() as frozen:
        stats.configure_stats(share=True, flush_interval=10)
        for _ in range(50):
            f(1)
        assert stats.shared_stats(cache) == {}  # nothing before the interval
        frozen.tick(9.9)
        f(1)
        assert stats.shared_stats(cache) == {}
        frozen.tick(0.2)
        f(1)  # the first call after the interval flushes every count so far
        assert stats.shared_stats(cache)["tests:interval"].hits == 51  # 52 calls, 1 miss
        for _ in range(100):
            f(1)
        assert stats.shared_stats(cache)["tests:interval"].hits == 51
        frozen.tick(10)
        f(2)  # a miss flushes too
        totals = stats.shared_stats(cache)["tests:interval"]
        assert (totals.hits, totals.misses) == (151, 2)
    cache.close()


@pytest.mark.parametrize("policy", [{"stale": 30}, {"early": 1.0}, {"jitter": 0.1}])
def test_a_function_with_a_freshness_policy_flushes_from_its_calls(
    tmp_path: Path, policy: dict[str, float]
) -> None:
    # Its calls take their own path (memokit.freshwrappers), which flushed only at exit.
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "p.db")})

    @memokit.cached(cache=cache, name="tests:fresh", timeout=3600, **policy)  # type: ignore[call-overload]
    def f(x: int) -> int:
        return x

    @memokit.cached(cache=cache, name="tests:afresh", timeout=3600, **policy)  # type: ignore[call-overload]
    async def g(x: int) -> int:
        return x

    async def async_calls() -> None:
        await g(1)
        await g(1)

    with freeze_time(real_asyncio=True) as frozen:
        stats.configure_stats(share=True, flush_interval=10)
        f(1)
        f(1)
        asyncio.run(async_calls())
        frozen.tick(11)
        f(1)  # a hit flushes
        asyncio.run(async_calls())
        totals = stats.shared_stats(cache)
        assert (totals["tests:fresh"].hits, totals["tests:fresh"].misses) == (2, 1)
        assert (totals["tests:afresh"].hits, totals["tests:afresh"].misses) == (2, 1)
    cache.close()


def test_async_calls_flush_through_the_async_api(tmp_path: Path) -> None:
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "a.db")})

    @memokit.cached(cache=cache, name="tests:async")
    async def f(x: int) -> int:
        return x

    async def calls() -> stats.Stats:
        stats.configure_stats(share=True, flush_interval=10)
        await f(1)
        await f(1)
        with freeze_time(real_asyncio=True) as frozen:
            stats.configure_stats(flush_interval=10)
            frozen.tick(11)
            await f(1)
        return (await stats.ashared_stats(cache))["tests:async"]

    found = asyncio.run(calls())
    assert (found.hits, found.misses) == (2, 1)
    cache.close()


# Python 3.12+ warns that forking a multi-threaded process may deadlock; this child
# touches only its own counts and the SQLite file, opened anew after the fork.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_does_not_count_its_parents_calls(tmp_path: Path) -> None:
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "f.db")})

    @memokit.cached(cache=cache, name="tests:fork")
    def f(x: int) -> int:
        return x

    stats.configure_stats(share=True)
    f(1)
    f(1)
    f(1)  # unflushed in the parent
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            f(1)
            stats.flush(f._state)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stats.flush(f._state)
    found = stats.shared_stats(cache)["tests:fork"]
    assert (found.misses, found.hits) == (1, 3)
    cache.close()


def test_a_failing_backend_keeps_counts_for_later(tmp_path: Path) -> None:
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "b.db")})

    @memokit.cached(cache=cache, name="tests:failing")
    def f(x: int) -> int:
        return x

    stats.configure_stats(share=True)
    f(1)
    real_incr = cache.incr

    def broken(*args: object, **kwargs: object) -> object:
        raise OSError("disk full")

    cache.incr = broken  # type: ignore[method-assign]
    stats.flush(f._state)  # does not raise
    cache.incr = real_incr  # type: ignore[method-assign]
    stats.flush(f._state)
    assert stats.shared_stats(cache)["tests:failing"].misses == 1
    cache.close()


def test_the_dummy_backend_cannot_share() -> None:
    dummy = memokit.create_cache({"BACKEND": "dummy"})
    stats.configure_stats(share=True)

    @memokit.cached(cache=dummy)
    def f(x: int) -> int:
        return x

    f(1)
    assert "stores nothing" in f.stats().sharing
    with pytest.raises(NotShareable):
        stats.shared_stats(dummy)


def test_a_cleared_store_gets_the_function_registered_again(tmp_path: Path) -> None:
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "c.db")})

    @memokit.cached(cache=cache, name="tests:cleared")
    def f(x: int) -> int:
        return x

    stats.configure_stats(share=True)
    f(1)
    stats.flush(f._state)
    assert stats.shared_stats(cache)["tests:cleared"].misses == 1
    cache.clear()
    assert stats.shared_stats(cache) == {}
    f(1)
    stats.flush(f._state)
    assert stats.shared_stats(cache)["tests:cleared"].misses == 1  # counted since the clear
    cache.close()


@pytest.mark.parametrize("lost", ["memokit.stats:slot:1", "memokit.stats:n"])
def test_a_lost_registration_entry_is_made_again(lost: str, tmp_path: Path) -> None:
    # Memcached evicts any entry; a lost slot (or slot count) hid the function from
    # every reader for good, while its counters went on growing unseen.
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "l.db")})

    @memokit.cached(cache=cache, name="tests:evicted")
    def f(x: int) -> int:
        return x

    stats.configure_stats(share=True)
    f(1)
    stats.flush(f._state)
    assert stats.shared_stats(cache)["tests:evicted"].misses == 1
    cache.delete(lost)  # as an eviction would
    f(1)
    stats.flush(f._state)
    assert stats.shared_stats(cache)["tests:evicted"].calls == 2
    cache.close()


def test_hits_read_the_clock_only_where_counts_can_be_shared(tmp_path: Path) -> None:
    # The hit path tests state.due alone while it is 0.0: a memory cache's hits
    # never pay for reading the clock.
    memory = memokit.create_cache({"BACKEND": "memory", "LOCATION": "stats-clock"})
    stats.configure_stats(share=True)

    @memokit.cached(cache=memory)
    def local(x: int) -> int:
        return x

    assert local._state.due == 0.0
    where = str(tmp_path / "alias.db")
    memokit.configure({"default": {"BACKEND": "memory"}})
    try:

        @memokit.cached(name="tests:by-alias")
        def by_alias(x: int) -> int:
            return x

        # Behind an alias the cache is not built at decoration: the first flush tells.
        assert by_alias._state.due > 0
        by_alias(1)
        stats.flush(by_alias._state)
        assert by_alias._state.due == 0.0
        memokit.configure({"default": {"BACKEND": "sqlite", "LOCATION": where}})
        by_alias(1)  # a miss in the new store: its flushes are on again
        assert by_alias._state.due > 0
        stats.flush(by_alias._state)
        totals = stats.shared_stats("default")["tests:by-alias"]
        assert totals.misses == 2  # the memory store's miss, kept until it could be shared
    finally:
        memokit.configure({"default": {"BACKEND": "memory"}})


def test_sharing_starts_no_thread(tmp_path: Path) -> None:
    # The counts travel from the call path only: no thread is started, by configuring,
    # by calls, by a flush due, or by flush_all() (as at exit).
    import threading

    before = set(threading.enumerate())
    cache = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(tmp_path / "t.db")})

    @memokit.cached(cache=cache, name="tests:threadless")
    def f(x: int) -> int:
        return x

    with freeze_time() as frozen:
        stats.configure_stats(share=True, flush_interval=10)
        f(1)
        f(1)
        frozen.tick(11)
        f(1)  # flushes
        f(2)
        stats.flush_all()
        assert set(threading.enumerate()) == before
    assert stats.shared_stats(cache)["tests:threadless"].calls == 4
    cache.close()
