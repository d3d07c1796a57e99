"""The sqlite backend's connections: one per thread and process, and what a fork does.

A connection inherited through ``fork`` is never used nor closed by the child,
since closing it could disturb the parent's locks and WAL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import ImproperlyConfigured, UnsafeLocation
from . import _forkgate
from ._files import PINNABLE, check_private_file, create_private_file, make_private_dirs
from ._forkgate import Slot
from ._sqlite_sql import COLUMNS, Sql, placeholders, quote

_CONNECT_TRIES = 3
_OWN_DIRECTORY = (
    " The database needs a directory of its own: SQLite makes its -wal and -shm files "
    "beside it, and whoever can write that directory can make them first. Set LOCATION "
    "to a file in a private directory, for example '/var/cache/<app>/cache.sqlite3'."
)


class ThreadConnection:
    """One thread's connection, and the mark its calls carry for ``fork``.

    The connection is closed when the thread ends or the cache is dropped (closing
    explicitly keeps Python 3.13+ from warning about unclosed connections); the pid
    check keeps a child process from closing a connection it inherited through fork.
    Every use of the connection runs between ``slot.enter()`` and ``slot.leave()``
    (see :mod:`memokit.backends._forkgate`), so a fork never happens while this
    thread is inside ``sqlite3``.
    """

    __slots__ = ("__weakref__", "conn", "pid", "reader", "slot")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        # The hit path's own cursor (SQLiteCache._get takes it out while in use).
        self.reader: sqlite3.Cursor | None = None
        self.pid = os.getpid()
        self.slot = Slot()

    def renewed_reader(self, reader: sqlite3.Cursor) -> sqlite3.Cursor | None:
        """A new cursor in place of ``reader``, which a failure may have left inside
        its statement, and with it a read transaction open (a stale snapshot for this
        connection's next write): closing it ends both. None if the connection fails:
        the calls after then take the slow path, which reports the failure."""
        try:
            reader.close()
            return self.conn.cursor()  # type: ignore[union-attr]  # set before it is published
        except sqlite3.Error:
            return None

    def __del__(self) -> None:
        if self.pid == os.getpid() and self.conn is not None:
            self.slot.enter()
            try:
                self.conn.close()
            finally:
                self.slot.leave()


# The states of this process, and those a fork handed to this process. The latter
# are kept referenced forever: if the child let the garbage collector close their
# connections, SQLite could checkpoint or unlink the WAL the parent is using.
_live: weakref.WeakSet[ThreadConnection] = weakref.WeakSet()
_live_lock = threading.Lock()
_inherited: list[ThreadConnection] = []
_forking: list[ThreadConnection] = []


def _before_fork() -> None:
    _live_lock.acquire()
    _forking[:] = list(_live)


def _after_fork_in_parent() -> None:
    _forking.clear()
    _live_lock.release()


def _after_fork_in_child() -> None:
    global _live_lock
    _inherited.extend(_forking)
    _forking.clear()
    _live.clear()
    _live_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; there is no fork on Windows
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def track(state: ThreadConnection) -> None:
    """Count ``state`` among this process's connections (a fork hands them to the child)."""
    with _live_lock:  # read at each call: a fork replaces the lock
        _live.add(state)


class SQLiteConnections:
    """The sqlite backend's part that opens, checks and hands out its connections."""

    _local: threading.local
    _path: Path
    _busy_timeout: float
    _sql: Sql
    _table: str

    def _enter(self) -> ThreadConnection:
        """Mark a call as inside ``sqlite3``; return this thread's state in this process.

        The caller runs its statements on ``state.conn`` and then calls
        ``state.slot.leave()`` (in a ``finally``).
        """
        try:
            state: ThreadConnection = self._local.state
        except AttributeError:
            return self._enter_slowly()
        slot = state.slot  # Slot.enter(), inlined: this is on every call's path
        slot.busy += 1
        # One read for both "this process's state" and "no fork under way": open_pid
        # is 0 during a fork and the child's own id after it (see _forkgate).
        if state.pid == _forkgate.open_pid:
            return state
        slot.busy -= 1
        return self._enter_slowly()

    def _enter_slowly(self) -> ThreadConnection:
        # A new thread, a fork under way, or a child's first call (its state, if
        # any, is the parent's): asks the system for the pid, waits for the fork.
        state: ThreadConnection | None = getattr(self._local, "state", None)
        if state is None or state.pid != os.getpid():
            state = self._open()  # never touch an inherited connection
        state.slot.enter()
        return state

    def _open(self) -> ThreadConnection:
        # New thread, or a child after fork: never touch an inherited connection.
        state = ThreadConnection()
        track(state)
        state.slot.enter()  # connecting is a call into sqlite3 like any other
        try:
            conn = self._connect()
            try:
                conn.execute("PRAGMA synchronous=NORMAL")
                self._ensure_schema(conn)
            except BaseException:
                conn.close()
                raise
            state.conn = conn
            state.reader = conn.cursor()
        finally:
            state.slot.busy -= 1  # Slot.leave(), inlined
        self._local.state = state
        return state

    def _connect(self) -> sqlite3.Connection:
        """Connect to ``LOCATION`` after the checks of it, its directory and its parents.

        Run for every new connection (a new thread, after ``close()``, in a child after
        ``fork``), never per operation. SQLite opens files by path, so a check cannot
        pin what it opens: the file and its directory are compared before and after
        connecting, and a difference (a swap, or another process of ours making the
        file again) means checking and connecting again, at most three times.
        """
        if not PINNABLE:  # Windows: no dir_fd; the POSIX modes checked here mean little
            make_private_dirs(self._path.parent)
            create_private_file(self._path)
            return self._sqlite_connect(str(self._path))
        for _ in range(_CONNECT_TRIES):
            # SQLite gives its -wal and -shm files the database file's mode, so the
            # 0600 the check makes a missing file with keeps all three private.
            target = check_private_file(self._path, hint=_OWN_DIRECTORY)
            conn = self._sqlite_connect(target.path)
            if target.unchanged():
                return conn
            conn.close()
        raise UnsafeLocation(
            f"database file {str(self._path)!r} was replaced while it was being opened, "
            f"{_CONNECT_TRIES} times in a row; something else is swapping it. Check who "
            f"can write its directory and parents, or set LOCATION to a private directory."
        )

    def _sqlite_connect(self, path: str) -> sqlite3.Connection:
        return sqlite3.connect(
            path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit; transactions are explicit BEGIN IMMEDIATE
            cached_statements=256,
            # Used by one thread only; this lets ThreadConnection close it from the
            # thread that drops the last reference (the cache's, when it is collected).
            check_same_thread=False,
        )

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, for tests and tools (memokit's own calls mark it)."""
        state = self._enter()
        state.slot.leave()
        return state.conn  # type: ignore[return-value]  # set before it is published

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        # Checked on every new connection (one read), not once per process: the file
        # may have been removed and made again since another connection looked.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(
                f"could not switch {str(self._path)!r} to WAL mode (got {mode!r}); "
                f"the file system must support shared memory (not a network share)"
            )
        names = self._sql.schema_names
        found = conn.execute(
            f"SELECT COUNT(*) FROM sqlite_master WHERE name IN {placeholders(len(names))}",  # noqa: S608 - "?" only
            names,
        ).fetchone()[0]
        if found != len(names):
            with self._transaction(conn):
                self._check_layout(conn)
                for statement in self._sql.schema:
                    conn.execute(statement)

    def _check_layout(self, conn: sqlite3.Connection) -> None:
        # A table of the same name made by someone else would fail later with
        # "no such column"; say which setting to change instead.
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({quote(self._table)})")]
        if columns == COLUMNS[:3]:
            conn.execute(self._sql.add_stamp)  # made before stamps: every row reads anew
            return
        if columns and columns != COLUMNS:
            raise ImproperlyConfigured(
                f"TABLE {self._table!r} already exists in {str(self._path)!r} with columns "
                f"{columns} that memokit did not make; choose another TABLE (in OPTIONS) or "
                f"another LOCATION"
            )

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock at BEGIN, so the busy timeout covers the whole
        # wait; a deferred transaction that upgrades later can fail with "locked" at once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself fails (a full disk can fail it): never leave the
            # connection inside a transaction that would hold the write lock.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
