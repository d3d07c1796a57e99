"""``TieredCache.get`` and ``aget`` after their one read: kept values, copies, unreadable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import CorruptEntryWarning
from memokit.backends._primitives import MISSING
from memokit.backends.tiered import TieredCache

GARBAGE = b"\x80\x05garbage that is no pickle"


@pytest.fixture
def cache(tmp_path: Path) -> TieredCache:
    made = memokit.create_cache(
        {"BACKEND": "filesystem", "LOCATION": str(tmp_path / "fs"), "TIER": {"BOUND": 60}}
    )
    assert isinstance(made, TieredCache)
    return made


def read(cache: TieredCache, twin: str, key: str, default: Any = None) -> Any:
    if twin == "sync":
        return cache.get(key, default)
    return asyncio.run(cache.aget(key, default))


TWINS = pytest.mark.parametrize("twin", ["sync", "async"])


@TWINS
def test_an_immutable_value_is_kept_and_a_mutable_one_copied(cache: TieredCache, twin: str) -> None:
    cache.set("tuple", (1, "a"))
    cache.set("list", [1, 2])
    first = read(cache, twin, "tuple")
    assert first == (1, "a")
    assert read(cache, twin, "tuple") is first
    assert read(cache, twin, "list") == [1, 2]
    assert read(cache, twin, "list") is not read(cache, twin, "list")
    assert read(cache, twin, "missing", "dflt") == "dflt"


@TWINS
def test_a_value_read_through_tier_one_is_kept_in_its_slot(cache: TieredCache, twin: str) -> None:
    other = memokit.create_cache({"BACKEND": "filesystem", "LOCATION": cache.location})
    other.set("t", (3, 4))  # another process's write: tier one holds nothing of it
    made = cache.make_key("t")
    assert made not in cache.tier.data
    value = read(cache, twin, "t")
    assert value == (3, 4)
    assert cache.tier.data[made].kept is value
    assert read(cache, twin, "t") is value


@TWINS
@pytest.mark.parametrize("held", ["in tier one", "in the second tier only"])
def test_an_unreadable_payload_is_reported_removed_and_a_miss(
    cache: TieredCache, twin: str, held: str
) -> None:
    made = cache.make_key("bad")
    if held == "in tier one":
        cache._set(made, GARBAGE, None)  # both tiers
        assert made in cache.tier.data
    else:
        cache.inner._set(made, GARBAGE, None)
    with pytest.warns(CorruptEntryWarning, match="cannot be read"):
        assert read(cache, twin, "bad", "dflt") == "dflt"
    assert cache.inner._get(made) is MISSING
    assert made not in cache.tier.data
    assert read(cache, twin, "bad", "dflt") == "dflt"
