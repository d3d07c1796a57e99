"""Counting a store's entries and clearing it in batches (what ``memokit info`` and
``memokit clear`` use): exact where the backend can tell, None where it cannot."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memokit import BaseCache


def test_entry_count_is_exact_or_none(cache: BaseCache) -> None:
    first = cache.entry_count()
    if first is None:
        cache.set("key", 1)
        assert cache.entry_count() is None  # a backend that cannot tell never guesses
        return
    assert first == 0
    cache.set_many({f"key-{n}": n for n in range(25)})
    cache.set("other", "value", version=2)
    assert cache.entry_count() == 26  # every entry, whatever its version
    cache.delete("key-0")
    assert cache.entry_count() == 25


def test_clear_in_batches_removes_everything_and_counts_what_it_removed(
    cache: BaseCache,
) -> None:
    cache.set_many({f"key-{n}": n for n in range(25)})
    counted = cache.entry_count() is not None
    progress = list(cache.clear_in_batches(10))
    assert cache.get_many([f"key-{n}" for n in range(25)]) == {}
    if progress:  # a backend that removes in batches: a running total, ending at all
        assert progress == sorted(progress)
        assert progress[-1] == 25
        assert len(progress) == 3
    if counted:
        assert cache.entry_count() == 0
    assert list(cache.clear_in_batches(10)) == []  # an empty store: nothing to report
    cache.set("after", 1)
    assert cache.get("after") == 1  # the store works on after a batched clear


@pytest.mark.parametrize("batch", [0, -1, 1.5, "10", True])
def test_clear_in_batches_takes_a_positive_int(
    make_any_cache: Callable[..., BaseCache], batch: object
) -> None:
    cache = make_any_cache()
    with pytest.raises(ValueError, match="batch must be a positive int"):
        list(cache.clear_in_batches(batch))  # type: ignore[arg-type]


def test_the_dummy_backend_counts_nothing(make_any_cache: Callable[..., BaseCache]) -> None:
    cache = make_any_cache()
    cache.set("key", 1)
    if not cache.capabilities.stores:
        assert cache.entry_count() == 0
        assert list(cache.clear_in_batches()) == []
