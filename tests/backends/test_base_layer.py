"""The backend base layer: one job per module, every old name where it was, and each
algorithm beyond one primitive call written once for the sync and the async twin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import keys
from memokit.backends import _steps, base
from memokit.exceptions import ValueNotStoredWarning, ValueTooLarge
from memokit.testing import isolated_cache

BACKENDS = Path(memokit.__file__).parent / "backends"

# Over the house limit (~600 lines), each with who brings it under; the list only shrinks.
KNOWN_LONG: dict[str, str] = {}  # redis.py is back under 600 (issue 21 moved helpers out)


def test_backend_modules_stay_under_600_lines() -> None:
    long = {
        path.name: n
        for path in sorted(BACKENDS.glob("*.py"))
        if (n := len(path.read_text().splitlines())) > 600 and path.name not in KNOWN_LONG
    }
    assert long == {}, "split these by job, as base.py and sqlite.py are"


@pytest.mark.parametrize(
    "name",
    [
        "MISSING",
        "UNREADABLE",
        "BaseCache",
        "Capabilities",
        "CommonSettings",
        "CullsByCount",
        "check_culling",
        "check_delta",
        "check_lock_timeout",
        "unknown_options",
        "_caller_stacklevel",
    ],
)
def test_every_name_of_the_layer_is_still_importable_from_base(name: str) -> None:
    assert getattr(base, name) is not None
    if name in {"MISSING", "BaseCache", "Capabilities"}:
        assert getattr(memokit, name) is getattr(base, name)


# (sync method, arguments, the step both twins must run)
TWINS: list[tuple[str, tuple[Any, ...], str]] = [
    ("get_or_set", ("missed", 1), "fill"),
    ("get_many", (["a", "b"],), "get_many"),
    ("set_many", ({"a": 1, "b": 2},), "set_many"),
    ("delete_many", (["a"],), "delete_many"),
    ("incr_version", ("v",), "incr_version"),
]


@pytest.mark.parametrize(("method", "args", "step"), TWINS)
def test_sync_and_async_twins_run_one_algorithm(
    method: str, args: tuple[Any, ...], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fix to the algorithm must reach both twins: each runs the same step function.
    real: Callable[..., Any] = getattr(_steps, step)
    calls: list[str] = []

    def spy(*a: Any, **kw: Any) -> Any:
        calls.append(step)
        return real(*a, **kw)

    monkeypatch.setattr(_steps, step, spy)
    with isolated_cache() as cache:
        cache.set("v", "x")
        sync = getattr(cache, method)(*args)
        cache.set("v", "x")
        cache.delete("missed")
        asynchronous = asyncio.run(getattr(cache, "a" + method)(*args))
    assert calls == [step, step]
    assert sync == asynchronous


def test_a_primitives_exception_reaches_the_algorithm_in_both_twins() -> None:
    class Refusing(memokit.MemoryCache):
        def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
            raise ValueTooLarge("too big for this test")

    cache = Refusing("test-base-layer-refusing")
    with pytest.warns(ValueNotStoredWarning):
        assert cache.get_or_set("k", 1) == 1  # not stored, still returned
    with pytest.warns(ValueNotStoredWarning):
        assert asyncio.run(cache.aget_or_set("k2", 2)) == 2
    assert cache.get_many(["k", "k2"]) == {}


def test_clean_batch_refuses_exactly_what_the_key_check_refuses() -> None:
    # One pass over the joined keys must agree with key_is_clean on every ASCII
    # character, and refuse what it cannot vouch for (non-ASCII, not a str).
    for code in range(128):
        key = f"k{chr(code)}"
        assert keys.clean_batch(["a", key], 10) is keys.key_is_clean(key), repr(key)
    assert keys.clean_batch(["a" * 10], 10)
    assert not keys.clean_batch(["a" * 11, "b"], 10)
    assert not keys.clean_batch(["清"], 10)  # the single path checks it (surrogates, bytes)
    assert not keys.clean_batch([1, "a"], 10)

    class Sub(str):
        __slots__ = ()

    assert not keys.clean_batch([Sub("a")], 10)  # it may format itself otherwise
    assert not keys.clean_batch([], 10)


@pytest.mark.parametrize(
    ("settings", "batch"),
    [
        ({}, True),
        ({"key_prefix": "p"}, True),
        ({"key_function": lambda k, p, v: f"{p}:{v}:{k}"}, False),  # a KEY_FUNCTION: no promise
        ({"key_prefix": "p q"}, False),  # the prefix itself warns: every key does
    ],
)
def test_the_batch_key_maker_takes_one_pass_only_where_it_is_exact(
    settings: dict[str, Any], batch: bool
) -> None:
    with isolated_cache(**settings) as cache:
        keys_ = ["a", "b:c", "x" * 200]
        made = _steps.concatenated(cache, keys_, None)
        assert (made is not None) is batch
        if made is not None:
            assert made == [cache.make_and_validate_key(k) for k in keys_]
            assert _steps.concatenated(cache, keys_, 3) == [
                cache.make_and_validate_key(k, 3) for k in keys_
            ]
        for unclean in (["a", "b c"], ["a", "清"], ["a", 1], ["x" * 250]):
            assert _steps.concatenated(cache, unclean, None) is None
        cache.make_key = cache.make_key  # type: ignore[method-assign]  # the instance's own
        assert _steps.concatenated(cache, keys_, None) is None
