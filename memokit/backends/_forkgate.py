"""A gate that lets ``os.fork`` wait until no thread is inside a library call.

SQLite keeps process-wide mutexes and per-file lock records in memory; a child
forked while another thread is inside ``sqlite3`` can find them taken for good
(it hangs) or stale ("database is locked"). The SQLite backend marks each of its
calls with :meth:`Slot.enter` / :meth:`Slot.leave`, and the before-fork hook here
closes the gate and waits until every slot of the process is idle, so a fork
happens only between calls.

Each thread has its own slot, so threads never wait for each other, and marking
a call costs two attribute updates and one read of a module global (a lock would
cost several times more than that on the hit path). The protocol is Dekker's:
a caller sets ``busy`` and then reads ``closed``; the hook sets ``closed`` and
then reads every ``busy``. With the interpreter's lock, one of the two always
sees the other's store, so no call is inside the library at the fork.

``busy`` counts the calls in progress, not a flag: a call can run inside another
on the same thread (a finalizer, an SQLite callback), and the outer one is still
inside the library when the inner one ends.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Final

_POLL: Final = 0.0002
"""Seconds between two looks at the slots while a fork waits."""


class Slot:
    """One thread's mark: ``busy``, how many guarded calls that thread is inside."""

    __slots__ = ("__weakref__", "busy", "thread")

    def __init__(self) -> None:
        self.busy = 0
        self.thread = threading.get_ident()
        with _registry_lock:
            _slots.add(self)

    def enter(self) -> None:
        """Mark the start of a guarded call; wait while a fork is under way."""
        self.busy += 1
        if closed:
            self.wait_for_fork()

    def leave(self) -> None:
        """Mark the end of a guarded call."""
        self.busy -= 1

    def wait_for_fork(self) -> None:
        """Wait while a fork is under way (the slow part of :meth:`enter`)."""
        me = threading.get_ident()
        if me == _forker:
            return  # the forking thread itself (the garbage collector, a callback)
        if self.busy > 1 or any(
            slot.busy and slot.thread == me for slot in list(_slots) if slot is not self
        ):
            # This thread is inside another call already (the garbage collector closes
            # a dropped connection mid-call): the fork waits for that call, so
            # waiting for the fork here would wait forever.
            return
        while closed:
            self.busy -= 1
            with _reopened:
                if closed:
                    _reopened.wait(0.05)
            self.busy += 1


closed = False
"""True from the before-fork hook to the end of the fork: new calls wait."""
open_pid = os.getpid()
"""This process's id while no fork is under way, and 0 from the before-fork hook to
the end of the fork, in the parent and in the child alike.

A caller that keeps per-process state (the SQLite backend's connections) may check
``slot.busy += 1`` then ``state.pid == open_pid`` instead of ``os.getpid()`` (a
system call, a tenth of an SQLite hit) and ``closed``: one read answers both, by
the same protocol as ``closed``. Any mismatch sends it to the slow path, which asks
``os.getpid()``; so does every call in a child before this module's after-fork hook
has run (a hook registered before memokit was imported may use a cache there)."""
_forker = 0
_slots: weakref.WeakSet[Slot] = weakref.WeakSet()
_registry_lock = threading.Lock()
_reopened = threading.Condition(threading.Lock())


def _before_fork() -> None:
    global closed, open_pid, _forker
    _registry_lock.acquire()  # no slot is added meanwhile (a new thread's waits)
    _forker = threading.get_ident()
    closed = True
    open_pid = 0
    others = [slot for slot in _slots if slot.thread != _forker]
    # Each call in flight ends within its own deadline (SQLite's busy timeout).
    while any(slot.busy for slot in others):
        time.sleep(_POLL)


def _reopen() -> None:
    global closed, open_pid, _forker
    with _reopened:
        open_pid = os.getpid()  # the child's own, in the child
        closed = False
        _forker = 0
        _reopened.notify_all()


def _after_fork_in_parent() -> None:
    _reopen()
    _registry_lock.release()


def _after_fork_in_child() -> None:
    global _registry_lock, _reopened
    # The child has only the forking thread; locks other threads held are gone.
    _registry_lock = threading.Lock()
    _reopened = threading.Condition(threading.Lock())
    _slots.clear()
    _reopen()


if hasattr(os, "register_at_fork"):  # POSIX; there is no fork on Windows
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
