"""The filesystem backend's directory handle and cross-process lock.

Each process opens ``LOCATION`` once as a directory handle that does not follow
links (see ``_files.open_location``), and every file operation is relative to it,
so a directory swapped in at ``LOCATION`` later is never read. The handle belongs
to the state every cache on that directory shares in one process; it is closed
when the last of those caches is closed or dropped. A child after ``fork`` closes
its copies at once (before any code of the child could close or reuse their
numbers) and opens ``LOCATION`` again, through the checks, when it first uses it.

A directory's lock is an exclusive ``flock`` on ``LOCATION/.memokit.lock``, plus a
thread lock (``flock`` does not exclude threads sharing a descriptor). Every wait
for it has a deadline (``LOCK_TIMEOUT``), after which ``TimeoutError`` is raised;
the lock file is opened for each hold and closed after it, so no descriptor
outlives an operation. Descriptors that may hold an ``flock`` are tracked, and a
child forked meanwhile closes its copies at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from ._files import FILE_MODE, open_location

if sys.platform != "win32":
    import fcntl

LOCK_NAME = ".memokit.lock"


class Directory:
    """What every instance on one directory shares inside one process."""

    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        if fd is None:
            fd = open_location(path)
        self.fd = fd
        """The directory handle; every name below is relative to it."""
        self.lock_path = os.path.join(path, LOCK_NAME)  # for messages only
        self.pid = os.getpid()
        # Closed when the last cache using this state lets go of it (close() or drop);
        # a child closes its copy right after the fork (see _after_fork_in_child).
        self._closer = weakref.finalize(self, os.close, fd)
        self._closer.atexit = False
        _handles.add(self)
        self._revive_lock = threading.Lock()
        # Threads of this process queue here, so that only one of them polls the flock.
        self.thread_lock = threading.Lock()
        # Entry count seen at the last listing, entries this process added since, and
        # entries it deleted since. Listing a directory costs about as much as writing
        # a file, so it is done only when these say that MAX_ENTRIES may have been
        # reached. ``added`` only grows until the next listing: deletions (possibly of
        # other processes' entries) must not postpone the periodic listing.
        self.known: int | None = None
        self.added = 0
        self.deleted = 0
        # Misses of reads, to ask now and then whether the directory was removed (a
        # lost update between threads only moves the next question by one).
        self.misses = 0
        self.refused = False
        """The directory was removed and what is at ``LOCATION`` now failed the checks."""

    def removed(self) -> bool:
        """Whether the directory of the handle was removed (a removed one has no link)."""
        return os.fstat(self.fd).st_nlink == 0

    def revive(self) -> None:
        """After the directory was removed, open ``LOCATION`` again in place of it.

        As Django re-creates a removed cache directory, the next operation makes it
        again, privately; an existing one must pass every check of a first opening,
        or :class:`~memokit.exceptions.UnsafeLocation` is raised. ``dup2`` puts
        the new directory under the same descriptor number, so a thread using the
        handle meanwhile sees one directory or the other, never a closed number.
        Nothing happens while the directory still exists: a directory renamed away
        stays the store, and one swapped in at ``LOCATION`` is never followed.
        """
        with self._revive_lock:
            if not self.removed():
                return  # another thread revived it, or it was never removed
            self.refused = True  # until LOCATION passes the checks again
            fresh = open_location(self.path)
            try:
                os.dup2(fresh, self.fd, inheritable=False)
            finally:
                os.close(fresh)
            self.refused = False
            self.known = None

    def open(self, name: str, flags: int) -> int:
        """Open a file in the directory, with mode 0600 (a tracked descriptor)."""
        try:
            return open_tracked(name, flags, self.fd)
        except FileNotFoundError:
            if not flags & os.O_CREAT or not self.removed():
                raise
        self.revive()
        return open_tracked(name, flags, self.fd)

    def names(self) -> list[str]:
        """The names in the directory (none when it was removed)."""
        # A description of our own: the handle's offset would be shared by every
        # thread, and by the parent after a fork, for the listing.
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            return os.listdir(fd)
        except FileNotFoundError:
            return []
        finally:
            os.close(fd)

    def open_lock_file(self) -> int:
        """Open the lock file (made again if the directory was removed); a tracked fd."""
        return self.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC)

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """Hold the directory's lock; raise ``TimeoutError`` after ``timeout`` seconds.

        The lock file is opened for each hold and closed after it, so no descriptor
        outlives an operation: none leaks when caches come and go, and a forked child
        can pin the lock only if it is forked during a hold (it then closes its copy).
        """
        deadline = time.monotonic() + timeout
        if not self.thread_lock.acquire(timeout=timeout):
            raise self._timeout(timeout)
        try:
            fd = self._flock(deadline, timeout)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            self.thread_lock.release()

    @contextlib.contextmanager
    def locked_or_skipped(self) -> Iterator[bool]:
        """Hold the lock if it is free at once; yield whether it is held (never waits)."""
        if not self.thread_lock.acquire(blocking=False):
            yield False
            return
        try:
            fd = self.open_lock_file()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                close_tracked(fd)
                yield False
                return
            try:
                yield self._same_file(fd)
            finally:
                _unlock(fd)
        finally:
            self.thread_lock.release()

    def _flock(self, deadline: float, timeout: float) -> int:
        """Open the lock file and take its flock by ``deadline``; return the descriptor."""
        delay = _FIRST_POLL
        slept = 0.0  # also bounds the wait when the clock is frozen (freezegun in tests)
        while True:
            fd = self.open_lock_file()
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        # flock has no timed wait, and a blocking one cannot be
                        # interrupted from another thread: poll, as SQLite's busy
                        # handler does, with a growing and slightly random pause.
                        remaining = min(deadline - time.monotonic(), timeout - slept)
                        if remaining <= 0:
                            raise self._timeout(timeout) from None
                        pause = min(delay * random.uniform(0.5, 1.0), remaining)
                        time.sleep(pause)
                        slept += pause
                        delay = min(delay * 2, _LAST_POLL)
                if self._same_file(fd):
                    if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
                        os.fchmod(fd, FILE_MODE)
                    return fd
                # The directory (or the lock file) was removed and made again: a lock on
                # the old file excludes nobody, so take the lock on the new one.
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BaseException:
                close_tracked(fd)
                raise
            close_tracked(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            current = os.stat(LOCK_NAME, dir_fd=self.fd, follow_symlinks=False).st_ino
        except FileNotFoundError:
            return False
        return current == os.fstat(fd).st_ino

    def _timeout(self, timeout: float) -> TimeoutError:
        # TimeoutError is an OSError: @cached fails open on it, as on any disk error.
        return TimeoutError(
            errno.ETIMEDOUT,
            f"the filesystem cache lock {self.lock_path!r} was not free within "
            f"{timeout:g} s (another process holds it: stopped, hung or very slow); "
            f"OPTIONS['LOCK_TIMEOUT'] sets this wait",
        )


_FIRST_POLL = 0.0005
_LAST_POLL = 0.02

# One state per (directory, process), kept while some cache uses it.
_directories: weakref.WeakValueDictionary[tuple[Path, int], Directory] = (
    weakref.WeakValueDictionary()
)
_directories_lock = threading.Lock()
# Every state with an open handle, for a child to close its copies after fork.
_handles: weakref.WeakSet[Directory] = weakref.WeakSet()


def directory_for(path: Path) -> tuple[Directory, bool]:
    """This process's state for ``path``, and whether it was just made.

    ``path`` is opened through every check of ``_files.open_location``. A state of
    this process on the same directory is shared; one on another directory
    (``LOCATION`` was replaced, and the new one passed the checks) is left to the
    caches that still use it.
    """
    fd = open_location(path)
    key = (path, os.getpid())
    try:
        with _directories_lock:
            shared = _directories.get(key)
            if shared is not None and shared.fd >= 0 and _same_directory(shared.fd, fd):
                os.close(fd)
                return shared, False
            shared = _directories[key] = Directory(path, fd)
            return shared, True
    except BaseException:  # pragma: no cover - an interrupt between open and Directory
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def _same_directory(fd: int, other: int) -> bool:
    mine, theirs = os.fstat(fd), os.fstat(other)
    return mine.st_nlink > 0 and (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


# Descriptors that may hold an flock (the lock file during a hold, a temporary file
# while it is written). A child forked meanwhile closes its copies at once: a copy
# would keep the lock held after the parent released it by dying.
_open_fds: set[int] = set()
_fds_lock = threading.Lock()


def open_tracked(name: str, flags: int, dir_fd: int) -> int:
    """``os.open`` with mode 0600, remembered until :func:`close_tracked` (see above)."""
    with _fds_lock:  # held across the fork too, so no descriptor escapes the set
        fd = os.open(name, flags, FILE_MODE, dir_fd=dir_fd)
        _open_fds.add(fd)
    return fd


def close_tracked(fd: int) -> None:
    """Close a descriptor from :func:`open_tracked`."""
    with _fds_lock:
        _open_fds.discard(fd)
        os.close(fd)


def _before_fork() -> None:
    _fds_lock.acquire()


def _after_fork_in_parent() -> None:
    _fds_lock.release()


def _after_fork_in_child() -> None:
    global _directories_lock, _fds_lock
    # Closing a copy never releases the parent's flock (that happens only when the
    # parent unlocks or closes its own); it only stops this child from pinning it.
    for fd in _open_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_fds.clear()
    # The parent's directory handles: closed now, while their numbers are surely
    # still theirs (a daemonising library may close every descriptor and reuse the
    # numbers later, and a finalizer must never close a number that is not ours).
    for shared in list(_handles):
        if shared._closer.detach() is not None:
            with contextlib.suppress(OSError):
                os.close(shared.fd)
        shared.fd = -1  # any use now fails (EBADF) instead of reaching another file
    # Another thread may have held these at the fork; the child has only this thread.
    _fds_lock = threading.Lock()
    _directories_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _unlock(fd: int) -> None:
    """Release the flock on ``fd`` and close it, even if the release fails."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        close_tracked(fd)
