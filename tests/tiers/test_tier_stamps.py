"""Tier one's re-check by stamps (filesystem, SQLite, Memcached): never the value of
an unchanged entry; a change, an expiry or a delete by another process is seen."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit.backends import filesystem
from memokit.backends._tierstore import SAME
from memokit.backends.tiered import TieredCache
from memokit.config import DEFAULT_CACHES

from .conftest import second_tier

STAMPED = [
    pytest.param("filesystem", id="filesystem"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("memcached", id="memcached", marks=pytest.mark.server),
]


@pytest.fixture(params=STAMPED)
def stamped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings of a fresh store whose backend re-checks by stamps."""
    try:
        yield second_tier(request, request.param, tmp_path)
    finally:
        while _made:
            _made.pop().close()
        memokit.configure(DEFAULT_CACHES)


_made: list[Any] = []


def pair(settings: dict[str, Any]) -> tuple[TieredCache, Any]:
    """A cache with tier one, and another without (as another process would write)."""
    cache = memokit.create_cache({**settings, "TIER": {"BOUND": 60}})
    assert isinstance(cache, TieredCache)
    other = memokit.create_cache(settings)
    _made.extend((cache, other))
    return cache, other


def age(cache: TieredCache) -> None:
    """Move tier one's clock on past the bound for every slot (no sleep)."""
    for slot in cache.tier.data.values():
        slot.checked -= 61


def boom(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a re-check of an unchanged entry read its value")


def no_value_reads(cache: TieredCache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way the second tier reads a value fail."""
    for name in ("_get", "_get_many", "_aget", "_aget_many"):
        monkeypatch.setattr(cache.inner, name, boom)
    monkeypatch.setattr(filesystem, "_read_all", boom)
    client = getattr(cache.inner, "_client", None)
    if client is not None:
        for name in ("get", "get_many", "gets", "gets_many"):
            monkeypatch.setattr(client, name, boom, raising=False)


def test_an_unchanged_entry_is_rechecked_without_its_value(
    stamped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, other = pair(stamped)
    other.set_many({"big": b"x" * 200_000, "small": (1, "a")})
    assert cache.get("big") == b"x" * 200_000
    small = cache.get("small")
    made = [cache.make_key("big"), cache.make_key("small")]
    stamps = {key: cache.tier.data[key].stamp for key in made}
    assert None not in stamps.values()
    # The primitive itself: SAME for both, no value sent back.
    assert cache.inner._get_stamped(made, stamps) == ({made[0]: SAME, made[1]: SAME}, stamps)  # type: ignore[attr-defined]
    no_value_reads(cache, monkeypatch)
    age(cache)
    hits = cache.tier.hits
    assert cache.get("small") is small  # re-checked, unchanged: the decoded value stays
    assert cache.get("big") == b"x" * 200_000
    assert cache.tier.hits == hits  # neither answered from tier one without a re-check
    age(cache)
    assert asyncio.run(cache.aget("small")) is small  # the async twin too


def test_a_change_expiry_or_delete_by_another_process_is_seen(
    stamped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, other = pair(stamped)
    other.set_many({"changed": 1, "same": 2, "gone": 3, "short": 4, "n": 10})
    other.set("short", 4, timeout=3)  # memcached: gone 2 to 3 s later, by its clock
    keys = ["changed", "same", "gone", "short", "n"]
    assert cache.get_many(keys) == {"changed": 1, "same": 2, "gone": 3, "short": 4, "n": 10}
    other.set("changed", 5)
    other.delete("gone")
    other.incr("n", 1)
    if stamped["BACKEND"] == "memcached":
        time.sleep(3.1)  # the server's clock
    else:
        clock = time.time() + 10
        module = memokit.backends.sqlite if stamped["BACKEND"] == "sqlite" else filesystem
        monkeypatch.setattr(module, "_now", lambda: clock)
    age(cache)
    assert cache.get_many(keys) == {"changed": 5, "same": 2, "n": 11}
    other.set("same", 6)
    age(cache)
    assert asyncio.run(cache.aget_many(["same"])) == {"same": 6}


def test_every_write_path_changes_the_stamp(stamped: dict[str, Any]) -> None:
    cache, other = pair(stamped)
    other.set("k", 1)
    made = cache.make_key("k")
    writes = [
        lambda: other.set("k", 2),
        lambda: other.incr("k", 1),
        lambda: other.set_many({"k": 4}),
        lambda: other.delete("k") and other.add("k", 5),
        lambda: other.touch("k", 300),
        lambda: other.decr("k", 1),
    ]
    for write in writes:
        cache.get("k")
        before = cache.tier.data[made].stamp
        write()
        age(cache)
        value = cache.get("k")
        assert value == other.get("k")
        if value != 5:  # touch keeps the value: its stamp may stay
            assert cache.tier.data[made].stamp != before


def test_sqlite_gives_an_old_table_its_stamps_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    settings = {"BACKEND": "sqlite", "LOCATION": str(path), "TIMEOUT": None}
    try:
        # Keys and payloads as memokit makes them (another file: this one stays old).
        plain = memokit.create_cache({**settings, "LOCATION": str(tmp_path / "probe.sqlite3")})
        made = plain.make_key("k")
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "CREATE TABLE memokit_cache (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT "
                "NULL, expires REAL NOT NULL) WITHOUT ROWID"
            )
            conn.execute(
                "INSERT INTO memokit_cache VALUES (?, ?, ?)", (made, plain._encode("old"), math.inf)
            )
        cache = memokit.create_cache({**settings, "TIER": {"BOUND": 60}})
        assert isinstance(cache, TieredCache)
        assert cache.get("k") == "old"
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(memokit_cache)")]
        assert columns == ["key", "value", "expires", "stamp"]
        assert cache.tier.data[made].stamp is None  # a row written before stamps
        cache.set("k", "new")
        age(cache)
        assert cache.get("k") == "new"
        stamp = cache.tier.data[made].stamp
        assert stamp is not None
        # A writer that knows nothing of stamps (an older memokit) still changes it.
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "UPDATE memokit_cache SET value = ? WHERE key = ?", (plain._encode("v1"), made)
            )
        age(cache)
        assert cache.get("k") == "v1"
        plain.close()
        cache.close()
    finally:
        memokit.configure(DEFAULT_CACHES)


@pytest.mark.server
def test_memcached_without_meta_commands_compares_values(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memokit.backends import _memcached_meta

    settings = second_tier(request, "memcached", tmp_path)
    try:
        cache, other = pair(settings)
        other.set("k", 1)
        assert cache.get("k") == 1
        # What memcached before 1.6 answers to a meta command: ERROR.
        monkeypatch.setattr(_memcached_meta, "_GET", b"mgx ")
        age(cache)
        assert cache.get("k") == 1
        other.set("k", 2)
        age(cache)
        assert cache.get("k") == 2
        assert cache.inner._no_meta  # type: ignore[attr-defined]
    finally:
        while _made:
            _made.pop().close()
        memokit.configure(DEFAULT_CACHES)


def test_the_second_tiers_public_attributes_without_a_getattr(tmp_path: Path) -> None:
    settings = {"BACKEND": "sqlite", "LOCATION": str(tmp_path / "c.sqlite3"), "TIMEOUT": None}
    cache = memokit.create_cache({**settings, "TIER": True})
    assert isinstance(cache, TieredCache)
    # A __getattr__ would make CPython read every attribute of the cache the slow way,
    # the three the fast-index hit reads included (a tenth of that hit).
    assert not any("__getattr__" in vars(klass) for klass in type(cache).__mro__)
    assert cache.max_entries == cache.inner.max_entries  # type: ignore[attr-defined]
    cache.inner.max_entries = 7  # type: ignore[attr-defined]
    assert cache.max_entries == 7  # type: ignore[attr-defined]
    assert cache.key_prefix == cache.inner.key_prefix
    with pytest.raises(AttributeError):
        cache._sql  # type: ignore[attr-defined]  # noqa: B018 - never a private one
    cache.close()
