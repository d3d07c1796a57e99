"""Fail open: backends that really fail, the circuit breaker, and what still propagates."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import pickle
import sqlite3
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

import memokit
from memokit import (
    BackendUnavailable,
    CacheInfo,
    FileSystemCache,
    MemoryCache,
    SQLiteCache,
    breaker_for,
    cached,
    configure_breaker,
)
from memokit.resilience import BreakerSettings, is_backend_failure, is_value_failure
from memokit.switches import GATE


@pytest.fixture(autouse=True)
def default_breaker() -> Iterator[None]:
    yield
    configure_breaker(window=5.0, threshold=1, fail_open=True)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


class Outage(MemoryCache):
    """A memory cache that can be taken down; it counts the operations that reach it."""

    down = False
    calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise BackendUnavailable("connection refused")

    def _get(self, key: str) -> Any:
        self._check()
        return super()._get(key)

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        self._check()
        return super()._add(key, payload, timeout)

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        self._check()
        super()._set(key, payload, timeout)

    def _delete(self, key: str) -> bool:
        self._check()
        return super()._delete(key)

    def _index_view(self) -> None:
        return None  # every call reaches the backend: no fast index (memokit.fastindex)


# -- the rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        BackendUnavailable("down"),
        memokit.BackendError("bad reply"),
        ConnectionRefusedError(),
        TimeoutError(),
        OSError(errno.ENOSPC, "No space left on device"),
        sqlite3.OperationalError("database is locked"),
    ],
)
def test_backend_failures(error: Exception) -> None:
    assert is_backend_failure(error)
    assert not is_value_failure(error)


@pytest.mark.parametrize(
    "error",
    [
        pickle.UnpicklingError("truncated"),
        EOFError(),
        memokit.UnreadableEntry("damaged"),
        memokit.ValueTooLarge("over the item size"),
    ],
)
def test_value_failures_are_not_backend_failures(error: Exception) -> None:
    assert is_value_failure(error)
    assert not is_backend_failure(error)


@pytest.mark.parametrize(
    "error",
    [
        KeyError("bug"),
        TypeError("bug"),
        ValueError("bug"),
        pickle.PicklingError("cannot pickle"),
        memokit.InvalidCacheKey("bad key"),
        memokit.ImproperlyConfigured("bad setting"),
        memokit.UnkeyableArgument("no identity"),
    ],
)
def test_not_backend_failures(error: Exception) -> None:
    assert not is_backend_failure(error)


# -- the breaker ---------------------------------------------------------------------


def test_outage_computes_warns_once_and_skips_the_backend(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = Outage("outage-1")
    runs: list[int] = []

    @cached(cache=cache)
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    with freeze_time() as frozen:
        assert square(3) == 9
        assert square(3) == 9  # a hit
        cache.down = True
        calls = cache.calls
        assert [square(3) for _ in range(20)] == [9] * 20
        assert cache.calls == calls + 1  # only the first call reached the backend
        assert len(warnings_logged(caplog)) == 1
        assert "skip this cache for 5 s" in warnings_logged(caplog)[0]
        assert breaker_for(cache).is_open
        assert square.cache_info().errors == 1

        frozen.tick(5.1)  # the window has passed: one call probes, fails, a new window
        assert square(3) == 9
        assert cache.calls == calls + 2
        assert square(3) == 9
        assert cache.calls == calls + 2
        assert len(warnings_logged(caplog)) == 2  # one per window

        cache.down = False
        frozen.tick(5.1)
        assert square(3) == 9  # the probe succeeds: a hit, and the breaker closes
        assert not breaker_for(cache).is_open
        hits = square.cache_info().hits
        assert square(3) == 9
        assert square.cache_info().hits == hits + 1
        assert "answers again" in warnings_logged(caplog)[-1]
        assert breaker_for(cache).failures == 0


def test_the_hit_path_checks_breakers_only_while_one_counts_failures() -> None:
    cache = Outage("outage-gate")
    troubled = GATE.troubled
    breaker_for(cache).record_failure(BackendUnavailable("down"))
    assert GATE.on
    assert GATE.troubled == troubled + 1
    breaker_for(cache).record_success()
    assert GATE.troubled == troubled
    breaker_for(cache).record_failure(BackendUnavailable("down"))
    del cache
    gc.collect()
    assert GATE.troubled == troubled  # a cache dropped while failing


def test_one_probe_at_a_time() -> None:
    cache = Outage("outage-probe")
    breaker = breaker_for(cache)
    with freeze_time() as frozen:
        breaker.record_failure(BackendUnavailable("down"))
        assert not breaker.allow()
        frozen.tick(5.1)
        assert breaker.allow()  # the prober
        assert not breaker.allow()  # everyone else keeps skipping until it reports


def test_threshold_counts_failures_in_a_row(caplog: pytest.LogCaptureFixture) -> None:
    cache = Outage("outage-threshold")
    configure_breaker(cache=cache, threshold=3, window=60)
    cache.down = True

    @cached(cache=cache)
    def f() -> int:
        return 1

    assert [f(), f()] == [1, 1]
    assert not breaker_for(cache).is_open
    assert f() == 1
    assert breaker_for(cache).is_open
    assert len(warnings_logged(caplog)) == 1
    assert breaker_for(cache).settings == BreakerSettings(60.0, 3, True)


def test_fail_open_can_be_turned_off() -> None:
    cache = Outage("outage-strict")
    cache.down = True
    configure_breaker(fail_open=False)

    @cached(cache=cache)
    def f() -> int:
        return 1

    with pytest.raises(BackendUnavailable):
        f()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": -1}, "window must be"),
        ({"window": float("nan")}, "window must be"),
        ({"window": "5"}, "window must be"),
        ({"threshold": 0}, "threshold must be"),
        ({"threshold": 1.5}, "threshold must be"),
    ],
)
def test_bad_breaker_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure_breaker(**kwargs)


def test_bad_fail_open_setting() -> None:
    with pytest.raises(TypeError, match="fail_open must be"):
        configure_breaker(fail_open=1)  # type: ignore[arg-type]


def test_breakers_are_per_cache_instance() -> None:
    down, up = Outage("outage-a"), Outage("outage-b")
    down.down = True

    @cached(cache=down)
    def f() -> int:
        return 1

    @cached(cache=up)
    def g() -> int:
        return 2

    assert (f(), g(), g()) == (1, 2, 2)
    assert breaker_for(down).is_open
    assert not breaker_for(up).is_open
    assert g.cache_info() == CacheInfo(hits=1, misses=1, errors=0)


def test_alias_settings_name_the_instance() -> None:
    configure_breaker(cache="default", window=1)
    assert breaker_for(memokit.caches["default"]).settings.window == 1.0
    assert breaker_for(memokit.caches["default"]).settings.threshold == 1


def test_async_outage(caplog: pytest.LogCaptureFixture) -> None:
    cache = Outage("outage-async")
    cache.down = True
    runs: list[int] = []

    @cached(cache=cache)
    async def f(n: int) -> int:
        runs.append(n)
        return n

    async def main() -> list[int]:
        return [await f(1), await f(1), *await asyncio.gather(f(2), f(2))]

    assert asyncio.run(main()) == [1, 1, 2, 2]
    assert runs == [1, 1, 2]  # nothing cached, but concurrent misses still merged
    assert cache.calls == 1
    assert len(warnings_logged(caplog)) == 1


# -- what is not swallowed -------------------------------------------------------------


def test_explicit_invalidation_raises_during_an_outage() -> None:
    cache = Outage("outage-invalidate")

    @cached(cache=cache)
    def f() -> int:
        return 1

    f()
    cache.down = True
    assert f() == 1  # calls fail open ...
    with pytest.raises(BackendUnavailable):
        f.invalidate()  # ... invalidation does not: stale data is worse than an error

    @cached(cache=cache)
    async def g() -> int:
        return 1

    with pytest.raises(BackendUnavailable):
        asyncio.run(g.invalidate())


def test_function_errors_and_unpicklable_results_propagate_during_an_outage() -> None:
    cache = Outage("outage-errors")

    @cached(cache=cache)
    def fails() -> int:
        raise KeyError("the function's own")

    @cached(cache=cache)
    def unpicklable() -> Any:
        return lambda: 1

    with pytest.raises(KeyError):
        fails()
    with pytest.raises(TypeError, match="cannot encode"):
        unpicklable()
    cache.down = True
    with pytest.raises(KeyError):
        fails()


# -- backends that really fail -------------------------------------------------------


def test_full_disk_on_the_filesystem_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileSystemCache(str(tmp_path / "cache"))
    runs: list[int] = []

    @cached(cache=cache)
    def f(n: int) -> list[int]:
        runs.append(n)
        return [n]

    assert f(1) == [1]

    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("memokit.backends.filesystem._write_all", no_space)
    assert f(2) == [2]  # computed; the write failed; the call still returns
    assert f(2) == [2]
    assert runs == [1, 2, 2]
    assert cache.has_key(f.key(1))  # reading still works
    with pytest.raises(OSError, match="No space"):
        cache.set("k", "v")  # the low-level API is honest
    assert len(warnings_logged(caplog)) == 1
    assert "OSError" in warnings_logged(caplog)[0]


def test_locked_sqlite_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = SQLiteCache(str(path), busy_timeout=0.05)

    @cached(cache=cache)
    def f() -> str:
        return "computed"

    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the database
        assert f() == "computed"
        assert f() == "computed"
        assert f.cache_info().errors == 1
        assert "locked" in warnings_logged(caplog)[0]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        cache.close()


def test_deliberately_broken_serializer(caplog: pytest.LogCaptureFixture) -> None:
    class Unreadable(memokit.PickleSerializer):
        def loads(self, data: bytes) -> Any:
            raise pickle.UnpicklingError("unreadable")

    cache = MemoryCache("broken-serializer", serializer=Unreadable())
    runs: list[int] = []

    @cached(cache=cache)
    def f() -> list[int]:
        runs.append(1)
        return [1]  # a list is pickled by the memory backend

    assert f() == [1]
    with pytest.warns(memokit.CorruptEntryWarning, match="UnpicklingError"):
        assert f() == [1]  # an unreadable entry: a value failure, replaced
    assert runs == [1, 1]
    assert f.cache_info().errors == 1
    assert f.cache_info().errors.value == 1
    assert warnings_logged(caplog) == []  # the breaker never opened


def test_an_unreadable_pickle_is_a_value_failure_and_is_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A value whose class changed since it was stored: unpickling raises ValueError
    # inside pickle, which the pickle serializer reports as UnpicklingError.
    module = types.ModuleType("memokit_test_changing")
    source = (
        "broken = False\n"
        "def rebuild(v):\n"
        "    if broken:\n"
        "        raise ValueError('Box takes other arguments now')\n"
        "    return Box(v)\n"
        "class Box:\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n"
        "    def __reduce__(self):\n"
        "        return (rebuild, (self.v,))\n"
    )
    exec(source, module.__dict__)  # noqa: S102 - a throw-away module of our own
    sys.modules[module.__name__] = module
    cache = MemoryCache("changed-class")
    try:

        @cached(cache=cache)
        def box() -> Any:
            return module.Box(1)

        assert box().v == 1
        module.broken = True
        with pytest.warns(memokit.CorruptEntryWarning, match="ValueError"):
            assert box().v == 1  # computed again, not a ValueError
        assert box.cache_info().errors.value == 1
        assert warnings_logged(caplog) == []  # a value failure never opens the breaker
        module.broken = False
        assert box().v == 1  # replaced: a hit now
        assert box.cache_info().misses == 2
    finally:
        del sys.modules[module.__name__]


def test_async_full_disk_fails_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileSystemCache(str(tmp_path / "cache"))

    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("memokit.backends.filesystem._write_all", no_space)

    @cached(cache=cache)
    async def f(n: int) -> list[int]:
        return [n]

    async def main() -> list[list[int]]:
        return [await f(1), await f(1)]

    assert asyncio.run(main()) == [[1], [1]]
    assert f.cache_info().errors == 1
    assert len(warnings_logged(caplog)) == 1


def test_a_failing_backend_lock_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    class NoAdd(MemoryCache):
        def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
            raise BackendUnavailable("connection reset")

    cache = NoAdd("lock-fails")

    @cached(cache=cache, lock_lease=30)
    def f() -> int:
        return 1

    assert f() == 1  # computed without the lock; nothing stored
    assert len(warnings_logged(caplog)) == 1


def test_window_zero_retries_the_backend_at_every_call() -> None:
    cache = Outage("outage-window-zero")
    configure_breaker(cache=cache, window=0)
    cache.down = True

    @cached(cache=cache)
    def f() -> int:
        return 1

    assert [f(), f(), f()] == [1, 1, 1]
    assert cache.calls == 3
