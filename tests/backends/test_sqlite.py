"""What only the SQLite backend promises: one query per batch, SQL in SQL, quoting, limits."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memokit import CacheKeyWarning, ImproperlyConfigured, SQLiteCache

Clock = Any


@pytest.fixture
def cache(tmp_path: Path) -> SQLiteCache:
    return SQLiteCache(str(tmp_path / "cache.sqlite3"))


@pytest.fixture
def statements(cache: SQLiteCache) -> Iterator[list[str]]:
    """The SQL this thread's connection runs from now on."""
    seen: list[str] = []
    conn = cache._connection()
    conn.set_trace_callback(seen.append)
    yield seen
    conn.set_trace_callback(None)


def run(statements: list[str]) -> list[str]:
    # The trace repeats a statement for each step of the triggers it fires.
    return [s for i, s in enumerate(statements) if i == 0 or statements[i - 1] != s]


def count_rows(cache: SQLiteCache) -> int:
    conn = cache._connection()
    (rows,) = conn.execute('SELECT COUNT(*) FROM "memokit_cache"').fetchone()
    (entries,) = conn.execute(cache._sql.count).fetchone()
    assert entries == rows, "the trigger-kept count drifted"
    return int(rows)


# -- set-up ---------------------------------------------------------------------------


def test_wal_and_synchronous_normal(cache: SQLiteCache) -> None:
    conn = cache._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        cache = SQLiteCache(str(tmp_path / "a" / "b" / "cache.sqlite3"))
        cache.set("key", "value")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700
    files = sorted(os.listdir(tmp_path / "a" / "b"))
    assert files == ["cache.sqlite3", "cache.sqlite3-shm", "cache.sqlite3-wal"]
    for name in files:
        assert stat.S_IMODE(os.stat(tmp_path / "a" / "b" / name).st_mode) == 0o600, name


@pytest.mark.parametrize("location", ["", ":memory:", "file:x?mode=memory", None])
def test_location_must_be_a_file_path(location: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        SQLiteCache(location)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": ""}, "TABLE must be"),
        ({"table": "a\x00b"}, "TABLE must be"),
        ({"table": 3}, "TABLE must be"),
        ({"busy_timeout": -1}, "BUSY_TIMEOUT must be"),
        ({"busy_timeout": "5"}, "BUSY_TIMEOUT must be"),
        ({"busy_timeout": float("inf")}, "BUSY_TIMEOUT must be"),
        ({"busy_timeout": True}, "BUSY_TIMEOUT must be"),
    ],
)
def test_bad_options_raise_at_once(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        SQLiteCache(str(tmp_path / "c.db"), **options)


def test_options_by_configuration(tmp_path: Path) -> None:
    import memokit

    cache = memokit.create_cache(
        {
            "BACKEND": "sqlite",
            "LOCATION": str(tmp_path / "c.db"),
            "OPTIONS": {"TABLE": "t", "BUSY_TIMEOUT": 0.5, "MAX_ENTRIES": 5},
        }
    )
    assert isinstance(cache, SQLiteCache)
    assert cache._table == "t"
    assert cache._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 500


def test_relative_location_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.warns(RuntimeWarning, match="relative"):
        SQLiteCache("relative.db").set("key", 1)
    assert (tmp_path / "relative.db").exists()


# -- one statement per batch, arithmetic in SQL ---------------------------------------


def test_get_many_is_one_query(cache: SQLiteCache, statements: list[str]) -> None:
    cache.set_many({f"k{i}": i for i in range(100)})
    statements.clear()
    assert cache.get_many([f"k{i}" for i in range(120)]) == {f"k{i}": i for i in range(100)}
    assert len(statements) == 1
    assert statements[0].startswith("SELECT")


def test_get_many_of_many_keys_chunks_below_the_parameter_limit(cache: SQLiteCache) -> None:
    keys = [f"k{i}" for i in range(2500)]
    cache._max_entries = 10_000
    cache.set_many(dict.fromkeys(keys, 1))
    assert len(cache.get_many(keys)) == 2500
    cache.delete_many(keys)
    assert cache.get_many(keys) == {}


def test_set_many_is_one_transaction(cache: SQLiteCache, statements: list[str]) -> None:
    cache.set_many({f"k{i}": [i] for i in range(50)})
    begins = [s for s in statements if s.startswith("BEGIN")]
    commits = [s for s in statements if s == "COMMIT"]
    assert begins == ["BEGIN IMMEDIATE"]
    assert len(commits) == 1
    assert statements[-1] == "COMMIT"
    assert count_rows(cache) == 50


def test_delete_many_is_one_statement(cache: SQLiteCache, statements: list[str]) -> None:
    cache.set_many({f"k{i}": i for i in range(50)})
    statements.clear()
    cache.delete_many([f"k{i}" for i in range(40)])
    assert len(run(statements)) == 1
    assert statements[0].startswith("DELETE")
    assert count_rows(cache) == 10


def test_incr_is_one_update_in_sql(cache: SQLiteCache, statements: list[str]) -> None:
    cache.set("n", 41)
    statements.clear()
    assert cache.incr("n") == 42
    assert len(run(statements)) == 1
    assert statements[0].startswith(
        'UPDATE "memokit_cache" SET value = value + 1, stamp = random() WHERE'
    )


def test_set_runs_no_count_star(cache: SQLiteCache, statements: list[str]) -> None:
    for i in range(50):
        cache.set(i, i)
        cache.add(f"a{i}", i)
    assert not [s for s in statements if "COUNT(" in s.upper()]


@pytest.mark.parametrize(
    ("start", "delta", "result"),
    [
        (2**63 - 1, 1, 2**63),
        (-(2**63), -1, -(2**63) - 1),
        (2**64, 1, 2**64 + 1),
        (1, 2**70, 2**70 + 1),
        (1.5, 1, 2.5),
        (True, 1, 2),
    ],
)
def test_incr_beyond_64_bits_and_of_pickled_numbers(
    cache: SQLiteCache, start: Any, delta: int, result: Any
) -> None:
    cache.set("n", start, 100)
    assert cache.incr("n", delta) == result
    assert cache.get("n") == result
    assert type(cache.get("n")) is type(result)


def test_incr_of_a_non_number_raises_and_changes_nothing(cache: SQLiteCache) -> None:
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")
    assert cache.get("s") == "text"
    assert not cache._connection().in_transaction


def test_incr_from_threads_is_atomic(tmp_path: Path) -> None:
    location = str(tmp_path / "c.db")
    SQLiteCache(location).set("n", 0, None)
    start = threading.Barrier(8)

    def worker() -> None:
        cache = SQLiteCache(location)
        start.wait()
        for _ in range(200):
            cache.incr("n")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SQLiteCache(location).get("n") == 1600


def test_ints_are_stored_as_sqlite_integers(cache: SQLiteCache) -> None:
    cache.set("i", 7)
    cache.set("b", True)
    cache.set("s", "7")
    conn = cache._connection()
    kinds = dict(conn.execute('SELECT key, typeof(value) FROM "memokit_cache"').fetchall())
    assert kinds == {":1:i": "integer", ":1:b": "blob", ":1:s": "blob"}


def test_a_custom_serializer_gets_every_value(tmp_path: Path) -> None:
    class Tagged:
        def dumps(self, value: Any) -> bytes:
            return b"T" + repr(value).encode()

        def loads(self, data: bytes) -> Any:
            assert data[:1] == b"T"
            return eval(data[1:].decode())  # noqa: S307 - test data we wrote just above

    cache = SQLiteCache(str(tmp_path / "c.db"), serializer=Tagged())
    cache.set("n", 1)
    assert cache.incr("n", 2) == 3
    assert cache.get("n") == 3


# -- expiry and culling -----------------------------------------------------------------


@pytest.fixture
def frozen() -> Iterator[Any]:
    from freezegun import freeze_time

    with freeze_time() as frozen:
        yield frozen


def test_expired_rows_are_removed_when_read(cache: SQLiteCache, frozen: Any) -> None:
    cache.set("a", 1, 1)
    cache.set_many({"b": 2, "c": 3}, 1)
    frozen.tick(2)
    assert cache.get("a") is None
    assert cache.get_many(["b", "c"]) == {}
    assert count_rows(cache) == 0


def test_get_many_over_chunks_removes_the_expired_rows_only(
    cache: SQLiteCache, frozen: Any
) -> None:
    # Rows from several IN (...) chunks; a key repeated across chunks is one entry.
    cache._max_entries = 10_000
    cache.set_many({f"old{i}": i for i in range(300)}, 1)
    cache.set_many({f"new{i}": i for i in range(900)}, 100)
    frozen.tick(2)
    keys = [f"old{i}" for i in range(300)] + [f"new{i}" for i in range(900)] + ["new0"]
    assert cache.get_many(keys) == {f"new{i}": i for i in range(900)}
    assert count_rows(cache) == 900
    assert cache.get_many(["new1", "new1"] * 600) == {"new1": 1}
    assert cache.get_many([]) == {}


def test_cull_removes_expired_rows_first_then_the_soonest_to_expire(
    tmp_path: Path, frozen: Any
) -> None:
    cache = SQLiteCache(str(tmp_path / "c.db"), max_entries=10, cull_frequency=2)
    for i in range(3):
        cache.set(f"short{i}", i, 1)
    for i in range(7):
        cache.set(f"long{i}", i, 100 + i)
    frozen.tick(2)
    cache.set("new", 1)  # 10 rows: the 3 expired go, 7 remain, no further cull
    assert count_rows(cache) == 8
    assert cache.get_many([f"long{i}" for i in range(7)]) == {f"long{i}": i for i in range(7)}
    cache.set("forever", 1, None)
    cache.set("newer", 1, 1000)
    cache.set("trigger", 1)  # 10 rows, none expired: the 10 // 2 soonest to expire go
    names = [f"long{i}" for i in range(7)] + ["new", "forever", "newer", "trigger"]
    assert set(cache.get_many(names)) == {"long5", "long6", "new", "forever", "newer", "trigger"}
    assert count_rows(cache) == 6


def test_rows_replaced_by_another_program_do_not_make_it_cull_early(tmp_path: Path) -> None:
    # INSERT OR REPLACE deletes the old row without firing the delete trigger, so each
    # one adds 1 to the kept count: the count must not be trusted when it says "full".
    cache = SQLiteCache(str(tmp_path / "c.db"), max_entries=10)
    cache.set_many({f"k{i}": i for i in range(5)}, None)
    other = sqlite3.connect(cache._path, isolation_level=None)
    try:
        for _ in range(3):
            for i in range(5):
                other.execute(
                    'INSERT OR REPLACE INTO "memokit_cache" (key, value, expires) VALUES (?, ?, ?)',
                    (cache.make_key(f"k{i}"), i, float("inf")),
                )
    finally:
        other.close()
    cache.set("new", 5)  # 6 rows for MAX_ENTRIES=10, whatever the drifted count said
    names = [f"k{i}" for i in range(5)] + ["new"]
    assert cache.get_many(names) == {name: i for i, name in enumerate(names)}
    assert count_rows(cache) == 6  # and the count is exact again


def test_expired_rows_are_swept_periodically(cache: SQLiteCache, frozen: Any) -> None:
    cache._max_entries = 100_000
    cache.set_many({f"old{i}": i for i in range(100)}, 1)
    frozen.tick(2)
    for i in range(600):
        cache.set(f"new{i}", i)
    assert count_rows(cache) == 600


# -- quoting -------------------------------------------------------------------------------

ODD_KEYS = ["it's", 'say "hi";', "-- comment", "a\x00b", "'); DROP TABLE x; --", "清"]


@pytest.mark.parametrize("table", ['my "odd" table', "t'; DROP TABLE x; --", "select"])
def test_odd_table_names_and_keys_round_trip(tmp_path: Path, table: str) -> None:
    cache = SQLiteCache(str(tmp_path / "c.db"), table=table)
    other = SQLiteCache(str(tmp_path / "c.db"))
    other.set("canary", "alive")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        for n, key in enumerate(ODD_KEYS):
            cache.set(key, key)
            assert cache.get(key) == key
            assert cache.add(key, "no") is False
            cache.set(key + "n", n)
            assert cache.incr(key + "n") == n + 1
            assert cache.touch(key, 100) is True
        assert cache.get_many(ODD_KEYS) == {key: key for key in ODD_KEYS}
        cache.delete_many(ODD_KEYS[:3])
        assert cache.get_many(ODD_KEYS) == {key: key for key in ODD_KEYS[3:]}
        assert cache.delete(ODD_KEYS[3]) is True
    tables = {
        row[0] for row in cache._connection().execute("SELECT name FROM sqlite_master").fetchall()
    }
    assert table in tables
    assert "x" not in tables
    cache.clear()
    assert other.get("canary") == "alive"


# -- limits -----------------------------------------------------------------------------------


def test_full_database_raises_and_keeps_the_old_value(cache: SQLiteCache) -> None:
    cache.set("key", "old")
    conn = cache._connection()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        cache.set("key", b"x" * 1_000_000)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        cache.set_many({"key": b"y" * 1_000_000, "other": 1})
    assert not conn.in_transaction
    assert cache.get("key") == "old"
    assert cache.get("other") is None
    conn.execute("PRAGMA max_page_count = 1073741823")
    cache.set("key", "new")
    assert cache.get("key") == "new"


def test_busy_timeout_is_bounded_and_reads_go_on(tmp_path: Path) -> None:
    location = str(tmp_path / "c.db")
    cache = SQLiteCache(location, busy_timeout=0.05)
    cache.set("key", "value")
    blocker = sqlite3.connect(location, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            cache.set("key", "new")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            cache.set_many({"a": 1})
        assert cache.get("key") == "value"  # WAL: readers never wait for the writer
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    cache.set("key", "new")
    assert cache.get("key") == "new"


def test_reading_expired_rows_never_waits_for_a_writer(tmp_path: Path, frozen: Any) -> None:
    # On 54ac4a8 the read deleted the expired row inline: it waited BUSY_TIMEOUT for
    # the writer, then raised "database is locked".
    location = str(tmp_path / "c.db")
    cache = SQLiteCache(location, busy_timeout=2)
    cache.set("old", 1, 1)
    cache.set_many({"a": 1, "b": 2}, 1)
    cache.set("live", "v")
    frozen.tick(2)
    blocker = sqlite3.connect(location, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert cache.get("old") is None
        assert cache.get_many(["a", "b", "live"]) == {"live": "v"}
        assert time.monotonic() - started < 0.5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert count_rows(cache) == 4  # left for later: the writer held the lock
    assert cache._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    assert cache.get("old") is None
    assert cache.get_many(["a", "b"]) == {}
    assert count_rows(cache) == 1  # removed once the lock was free


# -- connections ------------------------------------------------------------------------------


def test_each_thread_has_its_own_connection(cache: SQLiteCache) -> None:
    mine = cache._connection()
    theirs: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: theirs.append(cache._connection()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    assert cache._connection() is mine


def test_close_closes_this_threads_connection_and_the_cache_still_works(
    cache: SQLiteCache,
) -> None:
    cache.set("key", 1)
    first = cache._connection()
    cache.close()
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")
    assert cache.get("key") == 1
    assert cache._connection() is not first


def test_schema_is_made_once_and_kept(tmp_path: Path) -> None:
    location = str(tmp_path / "c.db")
    SQLiteCache(location).set_many({"a": 1, "b": 2})
    again = SQLiteCache(location)
    assert again.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert count_rows(again) == 2


def test_repr(cache: SQLiteCache, tmp_path: Path) -> None:
    expected = f"SQLiteCache(location={str(tmp_path / 'cache.sqlite3')!r}, table='memokit_cache')"
    assert repr(cache) == expected


def test_a_removed_database_is_made_again(tmp_path: Path) -> None:
    location = tmp_path / "c.db"
    first = SQLiteCache(str(location))
    first.set("key", 1)
    first.close()
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
    again = SQLiteCache(str(location))
    assert again.get("key") is None
    again.set("key", 2)
    assert again.get("key") == 2
    assert stat.S_IMODE(os.stat(location).st_mode) == 0o600


def test_a_finished_threads_connection_is_closed(cache: SQLiteCache) -> None:
    import gc

    theirs: list[sqlite3.Connection] = []

    def use() -> None:
        cache.set("key", 1)
        theirs.append(cache._connection())

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        theirs[0].execute("SELECT 1")
    assert cache.get("key") == 1


def test_a_dropped_cache_closes_its_connection(tmp_path: Path) -> None:
    import gc

    cache = SQLiteCache(str(tmp_path / "c.db"))
    conn = cache._connection()
    del cache
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")


def test_a_damaged_database_file_fails_clearly_at_open(tmp_path: Path) -> None:
    location = tmp_path / "c.db"
    location.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        SQLiteCache(str(location))


# -- a value over SQLite's length limit ---------------------------------------------

_LIMIT = 100_000
_SECRET = b"SECRET-VALUE-BYTES"
_BIG = _SECRET + b"x" * (2 * _LIMIT)


@pytest.fixture
def limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteCache]:
    """A cache whose connections (every thread's) refuse values over ``_LIMIT`` bytes."""
    connect = sqlite3.connect

    def limited_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _LIMIT)
        return conn

    monkeypatch.setattr(sqlite3, "connect", limited_connect)
    made = SQLiteCache(str(tmp_path / "db"))
    yield made
    made.close()


def _warned_keys(record: list[warnings.WarningMessage]) -> list[str]:
    assert all("SECRET" not in str(w.message) for w in record)
    return sorted(str(w.message).split("'")[1] for w in record)


def test_a_value_over_the_length_limit_is_dropped_never_raised(
    limited: SQLiteCache, caplog: pytest.LogCaptureFixture
) -> None:
    from memokit import ValueNotStoredWarning, breaker_for, cached

    limited.set("k", "old")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", ValueNotStoredWarning)
        limited.set("k", _BIG)
        assert limited.get("k") is None  # the old value never survives a failed set
        assert limited.add("k", _BIG) is False
        assert limited.get_or_set("g", _BIG) == _BIG  # returned, not stored
        assert limited.get("g") is None
        limited.set("m", "old")
        assert limited.set_many({"m": _BIG, "n": "small"}) == ["m"]
        assert limited.get_many(["m", "n"]) == {"n": "small"}
        limited.set("k", _BIG)  # the same key again, within the window: no new warning
        runs: list[int] = []

        @cached(cache=limited)
        def big(i: int) -> bytes:
            runs.append(i)
            return _BIG

        assert [big(1), big(1)] == [_BIG, _BIG]
    keys = _warned_keys(record)
    assert [k for k in keys if "big" not in k] == [":1:g", ":1:k", ":1:m"]
    assert len(keys) == 4  # and one for big(1)'s key, within the window
    assert runs == [1, 1]
    assert breaker_for(limited).opened == 0
    assert (big.cache_info().errors.backend, big.cache_info().errors.value) == (0, 2)
    assert "SECRET" not in caplog.text


def test_async_twins_drop_a_value_over_the_length_limit(limited: SQLiteCache) -> None:
    import asyncio

    from memokit import ValueNotStoredWarning

    async def main() -> None:
        await limited.aset("a", _BIG)
        assert await limited.aadd("b", _BIG) is False
        assert await limited.aget_or_set("c", _BIG) == _BIG
        assert await limited.aset_many({"d": _BIG, "e": 1}) == ["d"]
        assert await limited.aget_many(["a", "b", "c", "d", "e"]) == {"e": 1}

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", ValueNotStoredWarning)
        asyncio.run(main())
    assert _warned_keys(record) == [":1:a", ":1:b", ":1:c", ":1:d"]


def test_text_another_program_stored_that_is_not_utf8_is_one_unreadable_entry(
    tmp_path: Path,
) -> None:
    # SQLite stores any type in any column; sqlite3 decodes text as UTF-8 and fails the
    # whole fetch otherwise, quoting the text. One such value must be a miss, reported
    # and removed like any foreign payload, not an error from every read of it (and, for
    # decorated calls, a failure that stops them using the whole cache for a while).
    import memokit

    location = tmp_path / "cache.sqlite3"
    cache = SQLiteCache(str(location))
    secret = b"SECRET\xff"

    runs: list[int] = []

    @memokit.cached(cache=cache)
    def f(i: int) -> int:
        runs.append(i)
        return i

    def plant(*keys: str) -> None:
        for key in keys:
            cache.set(key, [1])
        with contextlib.closing(sqlite3.connect(location)) as db, db:
            for key in keys:
                db.execute(
                    "UPDATE memokit_cache SET value = CAST(? AS TEXT) WHERE key = ?",
                    (secret, cache.make_key(key)),
                )

    try:
        assert f(1) == 1
        plant("k")
        with pytest.warns(memokit.CorruptEntryWarning) as caught:
            assert cache.get("k", "miss") == "miss"
        assert "SECRET" not in str(caught[0].message)
        assert not cache.has_key("k")  # removed
        with warnings.catch_warnings():
            # Reported once per key and window: the reads below are quiet misses.
            warnings.simplefilter("ignore", memokit.CorruptEntryWarning)
            plant("k", "j")
            cache.set("ok", 2)
            assert cache.get_many(["k", "j", "ok"]) == {"ok": 2}
            plant("k")
            with pytest.raises(memokit.UnreadableEntry) as raised:
                cache.incr("k")
            assert "SECRET" not in str(raised.value)
            with contextlib.closing(sqlite3.connect(location)) as db, db:
                db.execute(
                    "UPDATE memokit_cache SET value = CAST(? AS TEXT) WHERE key = ?",
                    (secret, cache.make_key(f.key(1))),
                )
            assert f(1) == 1  # recomputed
            assert f(1) == 1  # and stored: the cache is still in use
            assert runs == [1, 1]
    finally:
        cache.close()
