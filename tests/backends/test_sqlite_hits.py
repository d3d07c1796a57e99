"""The SQLite hit path: its own cursor per thread, and the pid check it shares with fork.

``SQLiteCache._get`` keeps one cursor per thread's connection and reads the fork
gate's ``open_pid`` instead of asking the system for the pid: these tests hold it
to what the plain path promised (no read transaction left open, no call sharing a
cursor, a child never touching its parent's connection).
"""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import traceback
from pathlib import Path

import pytest

from memokit import CorruptEntryWarning, SQLiteCache
from memokit.backends import _forkgate


@pytest.fixture
def cache(tmp_path: Path) -> SQLiteCache:
    return SQLiteCache(str(tmp_path / "cache.sqlite3"))


def other_connection(cache: SQLiteCache) -> sqlite3.Connection:
    return sqlite3.connect(cache._path, isolation_level=None)


def assert_no_reader_holds_the_wal(cache: SQLiteCache) -> None:
    """A read transaction left open stops a full checkpoint and this connection's writes."""
    other = other_connection(cache)
    try:
        other.execute("INSERT INTO memokit_cache (key, value, expires) VALUES ('w', 1, 1e300)")
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "a read transaction of the cache's connection is still open"
    finally:
        other.close()
    cache.set("written", 1)  # "database is locked" from a stale snapshot
    assert cache.get("written") == 1


def test_a_hit_and_a_miss_leave_no_read_transaction_open(cache: SQLiteCache) -> None:
    cache.set("key", {"a": 1})
    assert cache.get("key") == {"a": 1}
    assert cache.get("absent") is None
    assert_no_reader_holds_the_wal(cache)


def test_a_read_that_fails_leaves_no_read_transaction_open(cache: SQLiteCache) -> None:
    # Text that is not UTF-8, written by another program: the row's conversion fails
    # after SQLite stepped into it, which leaves a kept cursor inside its statement
    # (the read is then made again, reading the text as an unreadable payload).
    other = other_connection(cache)
    other.execute(
        "INSERT INTO memokit_cache (key, value, expires) VALUES (?, CAST(x'ff' AS TEXT), 1e300)",
        (cache.make_and_validate_key("bad"),),
    )
    other.close()
    cache.set("key", 1)
    with pytest.warns(CorruptEntryWarning):
        assert cache.get("bad") is None
    assert_no_reader_holds_the_wal(cache)
    assert cache.get("key") == 1


_NESTED = """
    import sys
    from memokit import SQLiteCache

    cache = SQLiteCache(sys.argv[1])
    cache.set("a", 1)
    cache.set("b", {"b": 2})
    seen = []

    def trace(statement):
        # Runs inside the outer get's statement, on the same thread and connection.
        if statement.startswith("SELECT") and not seen:
            seen.append("inside")
            cache.set("c", 3)  # another primitive first: it ends its own mark
            seen.append(cache.get("b"))
            seen.append(cache.get("c"))

    cache._connection().set_trace_callback(trace)
    assert cache.get("a") == 1
    assert seen == ["inside", {"b": 2}, 3], seen
    cache._connection().set_trace_callback(None)
    assert cache.get("b") == {"b": 2}
    assert not cache._local.state.slot.busy
    print("ok")
"""


def test_a_get_made_inside_another_call_never_shares_its_cursor(tmp_path: Path) -> None:
    # In a child interpreter: a cursor used by two calls at once crashes the process.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_NESTED), str(tmp_path / "c.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_a_state_from_another_process_is_never_used_during_a_fork(
    cache: SQLiteCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a child sees before memokit's after-fork hook has run (a hook registered
    # earlier may use a cache): open_pid is 0, the thread's state is the parent's.
    cache.set("key", 1)
    inherited = cache._local.state
    monkeypatch.setattr(inherited, "pid", inherited.pid + 1)  # the parent's, seen from a child
    monkeypatch.setattr(_forkgate, "open_pid", 0)
    used: list[str] = []
    inherited.conn.set_trace_callback(used.append)
    assert cache.get("key") == 1
    assert cache._local.state is not inherited
    assert used == []
    assert not inherited.slot.busy


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_childs_first_get_never_touches_the_parents_connection(cache: SQLiteCache) -> None:
    cache.set("key", {"v": 1})
    assert cache.get("key") == {"v": 1}
    parents = cache._local.state
    used: list[str] = []
    parents.conn.set_trace_callback(used.append)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which exits below
        code = 1
        try:
            used.clear()
            assert cache.get("key") == {"v": 1}  # the child's first call is a hit
            assert used == [], used
            assert cache._local.state is not parents
            assert parents.reader is not None  # never taken by the child
            del cache
            gc.collect()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parents.conn.set_trace_callback(None)
    assert cache._local.state is parents
    assert cache.get("key") == {"v": 1}


@pytest.mark.parametrize("inner", ["get", "get_many", "set", "delete", "incr"])
def test_a_call_made_inside_another_keeps_the_outer_calls_fork_mark(
    cache: SQLiteCache, inner: str
) -> None:
    # A finalizer or an SQLite callback may use the cache while one of its calls is
    # inside sqlite3 on the same thread. When the inner call ends, the outer one is
    # still inside: a fork must still wait for it (_forkgate).
    cache.set("n", 1)
    calls = {
        "get": lambda: cache.get("n"),
        "get_many": lambda: cache.get_many(["n"]),
        "set": lambda: cache.set("m", 2),
        "delete": lambda: cache.delete("m"),
        "incr": lambda: cache.incr("n"),
    }
    slot = cache._local.state.slot
    marks: list[object] = []

    def trace(statement: str) -> None:
        if not marks and statement.startswith("INSERT"):  # the outer set, inside sqlite3
            marks.append("inside")
            calls[inner]()
            marks.append(bool(slot.busy))

    conn = cache._connection()
    conn.set_trace_callback(trace)
    try:
        cache.set("outer", 1)
    finally:
        conn.set_trace_callback(None)
    assert marks == ["inside", True]
    assert not slot.busy


def test_a_call_made_inside_another_does_not_wait_for_a_fork_that_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fork waits for the outer call to end; had the inner call waited for the
    # fork (and cleared the mark meanwhile), both would wait, or the fork would go on
    # with the outer call inside the library.
    entered = threading.Event()
    marks: list[int] = []

    def outer_then_inner() -> None:
        slot = _forkgate.Slot()
        slot.enter()  # the outer call, before the fork's hook closed the gate
        monkeypatch.setattr(_forkgate, "closed", True)  # the hook, meanwhile
        slot.enter()  # the inner call (a finalizer, a callback)
        marks.append(slot.busy)
        entered.set()
        slot.leave()
        slot.leave()
        marks.append(slot.busy)

    worker = threading.Thread(target=outer_then_inner, daemon=True)
    worker.start()
    try:
        assert entered.wait(2), "the inner call waited for the fork"
        worker.join(2)
        assert marks == [2, 0]
    finally:
        with _forkgate._reopened:  # free a waiting worker (on the old code)
            _forkgate.closed = False
            _forkgate._reopened.notify_all()
        worker.join(2)
