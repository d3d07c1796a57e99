"""The fresh, stale and expired phases of ``@cached(stale=...)`` on every backend.

Memory, filesystem and SQLite run on frozen time; Redis and Memcached on real
short timeouts (fresh 1 s, stale 2 s), so those tests are ``slow``. Each call's
phase is judged from the entry's own times (read just before and just after the
call), never from the instant a server expires it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from memokit import BaseCache, Entry, cached
from memokit.refreshes import await_idle, wait_idle

FRESH, STALE, EXPIRED = "fresh", "stale", "expired"


def phase(entry: Entry | None, at: float) -> str:
    if entry is None or at >= entry.stale_until:
        return EXPIRED
    return FRESH if at < entry.fresh_until else STALE


def judged(cache: BaseCache, f: Any, call: Callable[[], Any]) -> tuple[Any, str]:
    """Call ``f`` and return its value with the phase its entry was in throughout."""
    entry = Entry.read(cache, f.key())
    before = time.time()
    value = call()
    after = time.time()
    assert phase(entry, before) == phase(entry, after), "a call straddled a phase boundary"
    return value, phase(entry, before)


class Body:
    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> int:
        self.runs += 1
        return self.runs


def test_fresh_stale_expired(make_cache: Any, clock: Any) -> None:
    cache = make_cache()
    f_body, g_body = Body(), Body()

    @cached(cache=cache, timeout=1, stale=2, name="phases-f")
    def f() -> int:
        return f_body()

    @cached(cache=cache, timeout=1, stale=2, name="phases-g")
    def g() -> int:
        return g_body()

    assert (f(), g()) == (1, 1)
    entry = Entry.read(cache, f.key())
    assert entry is not None
    assert entry.fresh_until - entry.created == 1
    assert entry.stale_until - entry.fresh_until == 2
    assert judged(cache, f, f) == (1, FRESH)
    assert f._state.stale_hits == 0

    clock.advance(1.3)
    value, now = judged(cache, f, f)
    assert (value, now) == (1, STALE)  # served at once; one refresh in the background
    assert f._state.stale_hits == 1
    wait_idle()
    assert f_body.runs == 2
    assert f._state.refreshes == 1
    value, now = judged(cache, f, f)
    assert value == 2
    assert now in (FRESH, STALE)

    clock.advance(2.0)  # g's window is over, by its own times
    value, now = judged(cache, g, g)
    assert (value, now) == (2, EXPIRED)
    assert g._state.stale_hits == 0
    assert g._state.refreshes == 0
    assert g.cache_info().misses == 2


def test_fresh_stale_expired_async(make_cache: Any, clock: Any) -> None:
    cache = make_cache()
    body = Body()

    @cached(cache=cache, timeout=1, stale=2, name="phases-async")
    async def f() -> int:
        return body()

    async def call() -> int:
        return await f()

    async def scenario() -> list[tuple[int, str]]:
        seen = [(await call(), "")]
        entry = Entry.read(cache, f.key())
        before = time.time()
        seen.append((await call(), phase(entry, before)))
        clock.advance(1.3)
        entry = Entry.read(cache, f.key())
        before = time.time()
        seen.append((await call(), phase(entry, before)))
        await await_idle()
        seen.append((await call(), ""))
        clock.advance(3.5)
        entry = Entry.read(cache, f.key())
        before = time.time()
        seen.append((await call(), phase(entry, before)))
        return seen

    assert asyncio.run(scenario()) == [(1, ""), (1, FRESH), (1, STALE), (2, ""), (3, EXPIRED)]
    assert f._state.stale_hits == 1
    assert f._state.refreshes == 1
