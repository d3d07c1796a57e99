"""The fast index's hit check, written out in ``CachedFunction.__call__`` for speed, answers as
``memokit.fastindex.indexed`` does on every kind of record, with the clocks moved either way."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memokit
import memokit.fastindex
import memokit.wrappers
from memokit import MemoryCache, cached
from memokit.backends.base import MISSING
from memokit.backends.memory import forget_location
from memokit.backends.tiered import TieredCache
from memokit.fastindex import DECODE, indexed
from memokit.switches import GATE

_serial = itertools.count()
TIMEOUT = 10.0
"""The memory entries' timeout and tier one's bound: the records end this far on."""


def move_clocks(monkeypatch: pytest.MonkeyPatch, wall: float, steady: float) -> None:
    """Move the clocks the two hit checks read ``wall`` seconds on (the wall clock) and
    ``steady`` seconds on (the monotonic clock), under whatever names their modules
    import them (found by identity, as freezegun finds them). The stores' clocks stay."""
    real_time, real_monotonic = time.time, time.monotonic
    fakes: dict[int, Callable[[], float]] = {
        id(real_time): lambda: real_time() + wall,
        id(real_monotonic): lambda: real_monotonic() + steady,
    }
    for module in (memokit.fastindex, memokit.wrappers):
        moved = {
            name: fakes[id(value)] for name, value in vars(module).items() if id(value) in fakes
        }
        assert moved, f"{module.__name__} reads no clock"
        for name, fake in moved.items():
            monkeypatch.setattr(module, name, fake)


def taught(store: str, tmp_path: Path) -> tuple[Any, Any]:
    """A cached function whose call ``f(7)`` the index has learnt, and its value."""
    if store == "tier one":
        cache: Any = memokit.create_cache(
            {"BACKEND": "filesystem", "LOCATION": str(tmp_path / "fs"), "TIER": {"BOUND": TIMEOUT}}
        )
        assert isinstance(cache, TieredCache)
    else:
        cache = MemoryCache(f"fastindex-checks-{next(_serial)}")
    mutable = store == "memory, decoded on each hit"

    @cached(cache=cache, name=f"fastindex.checks{next(_serial)}", timeout=TIMEOUT)
    def f(x: int) -> Any:
        return [x] if mutable else (x, "value")

    value = f(7)
    f(7)  # a string-key hit teaches the index
    (item,) = f._state.index.items.values()
    assert (item[3] is DECODE) == mutable
    assert f._state.index.monotonic == (store == "tier one")
    return f, value


def served_inline(f: Any, *args: Any) -> tuple[bool, Any]:
    """Call ``f``: whether the written-out check served it (no key built), and its answer."""
    state = f._state
    real = state.build
    built: list[object] = []

    def build(args: Any, kwargs: Any) -> str:
        built.append(args)
        return real(args, kwargs)  # type: ignore[no-any-return]

    state.build = build
    try:
        value = f(*args)
    finally:
        state.build = real
    return not built, value


STORES = ["memory", "memory, decoded on each hit", "tier one"]
# (wall clock moved, monotonic clock moved, hit on a memory record, hit on a tier-one record)
CLOCKS = {
    "as they are": (0.0, 0.0, True, True),
    "both past the end": (TIMEOUT * 2, TIMEOUT * 2, False, False),
    "wall clock stepped back while time passed": (-3600.0, TIMEOUT * 2, True, False),
    "wall clock stepped on, monotonic not": (TIMEOUT * 2, 0.0, False, True),
}


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("clocks", list(CLOCKS))
def test_the_inlined_check_answers_as_indexed(
    store: str, clocks: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A breaker another test's cache left counting failures turns the gate on, which
    # sends every call past the written-out check: this test's caches never fail.
    monkeypatch.setattr(GATE, "on", False)
    f, value = taught(store, tmp_path)
    wall, steady, memory_hit, tier_hit = CLOCKS[clocks]
    state = f._state
    cache = state.cache
    try:
        move_clocks(monkeypatch, wall, steady)
        found = indexed(state.index, cache, (7,), {})
        inline, returned = served_inline(f, 7)
        monkeypatch.undo()
    finally:
        if isinstance(cache, MemoryCache):
            forget_location(cache.location)
    assert inline == (found is not MISSING), "the two checks disagree"
    assert inline == (tier_hit if store == "tier one" else memory_hit)
    assert returned == value
    if inline:
        assert found == value
