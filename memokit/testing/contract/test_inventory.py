"""The optional primitives ``memokit info`` and ``memokit clear`` use: counting a store's
entries (exact, or None where the backend cannot tell) and clearing it in batches."""

from __future__ import annotations

from collections.abc import Callable

from memokit import BaseCache


def test_count_is_exact_or_none(cache: BaseCache) -> None:
    first = cache._count()
    if first is None:
        cache.set("key", 1)
        assert cache._count() is None  # a backend that cannot tell never guesses
        return
    assert first == 0
    cache.set_many({f"key-{n}": n for n in range(25)})
    cache.set("other", "value", version=2)
    assert cache._count() == 26  # every entry, whatever its version
    cache.delete("key-0")
    assert cache._count() == 25


def test_clear_some_removes_at_most_its_limit_until_the_store_is_empty(
    cache: BaseCache,
) -> None:
    cache.set_many({f"key-{n}": n for n in range(25)})
    done = cache._clear_some(10)
    if done is None:  # a backend that clears at once only
        assert cache.get("key-1") == 1  # ... and this asked it for nothing
        return
    steps = [done]
    while steps[-1]:
        steps.append(cache._clear_some(10))  # type: ignore[arg-type]  # None only at first
    assert steps == [10, 10, 5, 0]
    assert cache.get_many([f"key-{n}" for n in range(25)]) == {}
    assert cache._count() in (0, None)
    cache.set("after", 1)
    assert cache.get("after") == 1  # the store works on after a clear in batches
    assert cache._count() in (1, None)


def test_the_dummy_backend_counts_nothing(make_any_cache: Callable[..., BaseCache]) -> None:
    cache = make_any_cache()
    cache.set("key", 1)
    if not cache.capabilities.stores:
        assert cache._count() == 0
        assert cache._clear_some(10) is None
