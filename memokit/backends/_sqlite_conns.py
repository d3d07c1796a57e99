"""The sqlite backend's connections: one per thread and process, and what a fork does.

A connection inherited through ``fork`` is never used nor closed by the child,
since closing it could disturb the parent's locks and WAL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref

from ._forkgate import Slot


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
