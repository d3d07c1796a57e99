"""Chaos for switches: overlapping blocks across threads, invalidations under switches.

Every case is bounded in rounds and carries a hard time limit; random choices
come from seeded generators.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

import memokit
from memokit import BaseCache, DummyCache, MemoryCache, cached
from memokit.backends import memory
from memokit.switches import GATE, use_cache
from memokit.testing import isolated_cache

pytestmark = pytest.mark.chaos

JOIN = 30.0


def run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads), "a thread hangs"
    if errors:
        raise errors[0]


@pytest.mark.timeout(60)
def test_overlapping_blocks_in_many_threads_compose(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def f(n: int) -> int:
        runs.append(n)
        return n

    switches_before, disabled_before = GATE.switches, GATE.disabled
    leaked = len(memory._stores)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        own = MemoryCache(f"switch-chaos-{seed}")
        for _ in range(150):
            kind = rng.choice(["disabled", "isolated", "use", "process", "none"])
            block: AbstractContextManager[Any]
            if kind == "disabled":
                block = memokit.caching_disabled()
            elif kind == "isolated":
                block = isolated_cache()
            elif kind == "use":
                block = use_cache(own)
            elif kind == "process":
                block = memokit.caching_disabled(process_wide=True)
            else:
                block = contextlib.nullcontext()
            with block as entered:
                where = f.cache
                if kind == "disabled":
                    assert isinstance(where, DummyCache)
                elif kind == "isolated":
                    assert where is entered
                elif kind == "use":
                    assert where is own
                assert f(seed) == seed
        own.clear()

    run_threads([lambda s=s: worker(s) for s in range(6)])
    assert (GATE.switches, GATE.disabled) == (switches_before, disabled_before)
    assert len(memory._stores) <= leaked + 6  # the six `own` stores, no isolated ones
    runs.clear()
    assert [f(99), f(99)] == [99, 99]
    assert runs == [99]  # caching is on again everywhere


@pytest.mark.timeout(60)
def test_invalidations_under_switches_are_never_lost(cache: BaseCache) -> None:
    db = {n: 0 for n in range(4)}
    lock = threading.Lock()

    @cached(cache=cache, tags="row:{n}")
    def row(n: int) -> int:
        return db[n]

    stop = threading.Event()

    def switcher(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            block = memokit.caching_disabled() if rng.random() < 0.5 else isolated_cache()
            with block:
                row(rng.randrange(4))
                # Hold the switch without holding the interpreter: two threads
                # spinning here would starve the writer's I/O on a loaded machine.
                stop.wait(0.002)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for step in range(300):
                n = rng.randrange(4)
                row(n)  # cache the old value first
                with lock:
                    db[n] = step + 1
                how = rng.randrange(4)
                if how == 0:
                    assert row.invalidate(n) in (True, False)
                elif how == 1:
                    memokit.invalidate_tags(f"row:{n}", cache=cache)
                elif how == 2:
                    memokit.invalidate_all(row)
                else:
                    with memokit.caching_disabled():  # an invalidation under the switch
                        row.invalidate(n)
                assert row(n) == db[n], "a stale value after an invalidation"
        finally:
            stop.set()

    run_threads([lambda: switcher(1), lambda: switcher(2), lambda: writer(3)])
    assert [row(n) for n in range(4)] == [db[n] for n in range(4)]


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_child_forked_while_other_threads_hold_switches_and_flights_caches() -> None:
    # Another thread holds a process-wide switch, a context switch and a flight
    # at the moment of the fork: none of them ends in the child, which has only
    # the forking thread, so the child must not inherit them.
    holding = threading.Event()
    release = threading.Event()

    @cached(cache=MemoryCache("fork-switches"), name="chaos.slow")
    def slow() -> int:
        holding.set()
        release.wait(JOIN)
        return 1

    def holder() -> None:
        with memokit.caching_disabled(process_wide=True), memokit.caching_disabled():
            slow()

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    try:
        assert holding.wait(JOIN)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status, never raise
            code = 1
            try:
                runs: list[int] = []

                @cached(cache=MemoryCache("fork-switches-child"))
                def f() -> int:
                    runs.append(1)
                    return 1

                f()
                f()
                # Caching is on, and the flight the other thread led is gone.
                switched = GATE.switches or GATE.disabled
                code = 0 if (runs == [1] and not switched and len(slow._state.flights) == 0) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + JOIN
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hangs")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join(JOIN)
