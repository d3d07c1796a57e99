"""Cached methods pickle by reference on every backend, and work in a process pool.

A pickled bound method, or a classmethod reached through a subclass, must come
back as the same binding over the same store: its call is a hit on the entry the
original stored, and its helpers reach that entry. In a real
``ProcessPoolExecutor`` (spawned workers: nothing inherited, everything sent by
reference), the second call is a hit wherever the store is shared between
processes. Added by the issue 16 review (the pickling tests ran on the default
memory cache only).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from memokit import BaseCache, cached

CacheFactory = Callable[..., BaseCache]  # tests/conftest.py's make_cache


def _round_trip(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj))


def _classes(cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]) -> Any:
    runs: list[str] = []

    class Ledger:
        def __init__(self, pk: int) -> None:
            self.pk = pk

        def __cache_key__(self) -> int:
            return self.pk

        def __eq__(self, other: object) -> bool:
            return type(other) is type(self) and other.pk == self.pk  # type: ignore[attr-defined]

        def __hash__(self) -> int:
            return hash(self.pk)

        @cached(cache=cache)
        def entry(self, n: int) -> str:
            runs.append("entry")
            return f"{type(self).__name__} {self.pk} {n}"

        @cached(cache=cache)
        async def aentry(self, n: int) -> str:
            runs.append("aentry")
            return f"{type(self).__name__} {self.pk} {n}"

        @cached(cache=cache)
        @classmethod
        def rate(cls, n: int) -> str:
            runs.append("rate")
            return f"{cls.__name__} rate {n}"

        @classmethod
        @cached(cache=cache)
        def rate_below(cls, n: int) -> str:
            runs.append("rate_below")
            return f"{cls.__name__} rate {n}"

        @cached(cache=cache)
        @staticmethod
        def fee(n: int) -> int:
            runs.append("fee")
            return n * 2

    class SubLedger(Ledger):
        pass

    module_level(Ledger)
    module_level(SubLedger)
    return Ledger, SubLedger, runs


@pytest.fixture
def books(cache: BaseCache, module_level: Callable[[type[Any]], type[Any]]) -> Any:
    return _classes(cache, module_level)


@pytest.mark.parametrize("kind", ["Ledger", "SubLedger"])
def test_a_bound_method_pickles_to_the_same_entry(books: Any, kind: str) -> None:
    ledger_cls, sub_cls, runs = books
    ledger = (ledger_cls if kind == "Ledger" else sub_cls)(4)
    assert ledger.entry(1) == f"{kind} 4 1"
    copied = _round_trip(ledger.entry)
    assert copied.__self__ == ledger
    assert copied(1) == f"{kind} 4 1"
    assert runs == ["entry"]  # the copy's call is a hit on the original's entry
    assert copied.key(1) == ledger.entry.key(1)
    assert copied.invalidate(1) is True  # the copy's helpers reach the same store
    assert ledger.entry(1) == f"{kind} 4 1"
    assert runs == ["entry", "entry"]


def test_an_async_bound_method_pickles_to_the_same_entry(books: Any) -> None:
    _, sub_cls, runs = books
    ledger = sub_cls(5)

    async def main() -> list[Any]:
        first = await ledger.aentry(2)
        copied = _round_trip(ledger.aentry)
        return [first, await copied(2), copied.key(2) == ledger.aentry.key(2)]

    assert asyncio.run(main()) == ["SubLedger 5 2", "SubLedger 5 2", True]
    assert runs == ["aentry"]


@pytest.mark.parametrize("name", ["rate", "rate_below"])
def test_a_classmethod_through_a_subclass_pickles_to_the_same_entry(books: Any, name: str) -> None:
    ledger_cls, sub_cls, runs = books
    assert getattr(sub_cls, name)(2) == "SubLedger rate 2"
    for reached in (getattr(sub_cls, name), getattr(sub_cls(1), name)):
        copied = _round_trip(reached)
        assert copied.__self__ is sub_cls
        assert copied(2) == "SubLedger rate 2"
    assert _round_trip(getattr(ledger_cls, name)).__self__ is ledger_cls
    assert runs == [name]  # both copies hit the entry of the first call


def test_a_static_method_pickles_to_the_same_entry(books: Any) -> None:
    ledger_cls, sub_cls, runs = books
    assert ledger_cls.fee(3) == 6
    for reached in (ledger_cls.fee, sub_cls.fee, sub_cls(1).fee):
        copied = _round_trip(reached)
        assert copied is ledger_cls.__dict__["fee"]
        assert copied(3) == 6
    assert runs == ["fee"]


# -- a real process pool ---------------------------------------------------------------

_POOL_MODULE = textwrap.dedent(
    """
    import json
    import os
    import uuid

    from memokit import cached, create_cache

    # The test's store, rebuilt in each process from the settings the test passes.
    STORE = create_cache(json.loads(os.environ["MEMOKIT_POOL_STORE"]))


    def _stamp(value):
        # A fresh stamp per computation: a result with the stamp of an earlier
        # call, returned by another call, was read from the store.
        return value, uuid.uuid4().hex


    @cached(cache=STORE)
    def square(n):
        return _stamp(n * n)


    class Point:
        def __init__(self, x):
            self.x = x

        def __cache_key__(self):
            return self.x

        @cached(cache=STORE)
        def scaled(self, factor):
            return _stamp(self.x * factor)

        @cached(cache=STORE)
        @classmethod
        def origin(cls, z):
            return _stamp(f"{cls.__name__} {z}")

        @staticmethod
        @cached(cache=STORE)
        def unit(n):
            return _stamp(n)


    class Point3(Point):
        pass
    """
)


@pytest.mark.timeout(120)  # the pool's shutdown waits for its workers: bound it too
def test_decorated_callables_run_in_a_process_pool(
    make_cache: CacheFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    shared = make_cache().capabilities.cross_process
    config = make_cache.config  # type: ignore[attr-defined]  # set by the factory
    name = f"pool_module_{request.node.callspec.id}"
    (tmp_path / f"{name}.py").write_text(_POOL_MODULE)
    monkeypatch.setenv("MEMOKIT_POOL_STORE", json.dumps(config))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers get the parent's sys.path
    module = __import__(name)
    try:
        point = module.Point(3)
        calls = [
            (module.square, 4, 16),
            (point.scaled, 2, 6),
            (module.Point3.origin, 5, "Point3 5"),
            (module.Point.unit, 7, 7),
        ]
        # Spawned, not forked: the workers inherit nothing, so every callable
        # arrives by reference; two workers at most, every wait bounded.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            for function, argument, expected in calls:
                first = pool.submit(function, argument).result(timeout=30)
                second = pool.submit(function, argument).result(timeout=30)
                assert first[0] == second[0] == expected, function
                if shared:
                    # Another call in the pool, and one here, hit the stored entry.
                    assert second == first, f"{function}: recomputed in the pool"
                    assert function(argument) == first, f"{function}: recomputed here"
    finally:
        module.STORE.close()
        sys.modules.pop(name, None)
