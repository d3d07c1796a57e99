"""Switches: caching off (environment variable, context manager) and an isolated test cache."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import BaseCache, DummyCache, MemoryCache, cached, cached_property
from memokit.switches import ENVIRONMENT_VARIABLE, disabled_by_environment, use_cache
from memokit.testing import isolated_cache


def test_caching_disabled_runs_every_call_and_stores_nothing(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    def f(n: int) -> int:
        runs.append(n)
        return n

    with memokit.caching_disabled():
        assert [f(1), f(1)] == [1, 1]
        assert isinstance(f.cache, DummyCache)
        assert f.invalidate(1) is False
    assert runs == [1, 1]
    assert cache.get(f.key(1)) is None
    assert [f(1), f(1)] == [1, 1]  # caching is back
    assert runs == [1, 1, 1]


def test_caching_disabled_for_coroutines_and_shared_properties(
    cache: BaseCache, module_level: Any
) -> None:
    runs: list[int] = []

    @cached(cache=cache)
    async def f() -> int:
        runs.append(1)
        return 1

    @module_level
    class Row:
        def __cache_key__(self) -> int:
            return 1

        @cached_property(cache=cache)
        def total(self) -> int:
            runs.append(2)
            return 2

    async def main() -> list[int]:
        return [await f(), await f()]

    with memokit.caching_disabled():
        assert asyncio.run(main()) == [1, 1]
        assert [Row().total, Row().total] == [2, 2]
    assert runs == [1, 1, 2, 2]


def test_switches_nest_and_restore(cache: BaseCache) -> None:
    other = MemoryCache("switch-other")

    @cached(cache=cache)
    def f() -> int:
        return 1

    with use_cache(other):
        with memokit.caching_disabled():
            assert isinstance(f.cache, DummyCache)
        assert f.cache is other
        f()
    assert f.cache is cache
    assert other.has_key(f.key())
    assert cache.get(f.key()) is None
    other.clear()


def test_isolated_cache_routes_every_decorator(cache: BaseCache) -> None:
    @cached(cache=cache)
    def given_an_instance() -> int:
        return 1

    @cached
    def given_the_default_alias() -> int:
        return 2

    with isolated_cache() as isolated:
        assert given_an_instance() == 1
        assert given_the_default_alias() == 2
        assert isolated.has_key(given_an_instance.key())
        assert isolated.has_key(given_the_default_alias.key())
    assert cache.get(given_an_instance.key()) is None
    assert memokit.cache.get(given_the_default_alias.key()) is None
    assert isolated.get(given_an_instance.key()) is None  # cleared on exit


def test_isolated_caches_are_fresh_each_time() -> None:
    runs: list[int] = []

    @cached
    def f() -> int:
        runs.append(1)
        return 1

    for _ in range(2):
        with isolated_cache(timeout=60) as isolated:
            f()
            f()
            assert isolated.default_timeout == 60
    assert runs == [1, 1]


def test_use_cache_takes_a_cache() -> None:
    with pytest.raises(TypeError, match="cache instance"), use_cache("default"):  # type: ignore[arg-type]
        pass


def test_unknown_environment_value_names_the_variable() -> None:
    with pytest.raises(memokit.ImproperlyConfigured, match="MEMOKIT_DISABLE_CACHING='maybe'"):
        disabled_by_environment({ENVIRONMENT_VARIABLE: "maybe"})


def test_environment_variable_turns_caching_off_at_import() -> None:
    script = textwrap.dedent(
        """
        from memokit import cached

        runs = []

        @cached
        def f():
            runs.append(1)
            return 1

        f(); f()
        print(len(runs))
        """
    )
    source = str(Path(memokit.__file__).resolve().parent.parent)
    for value, expected in (("1", "2"), ("0", "1")):
        env = {**os.environ, ENVIRONMENT_VARIABLE: value, "PYTHONPATH": source}
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == expected
