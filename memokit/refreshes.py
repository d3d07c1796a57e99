"""Background refreshes: the stale window's and early recomputation's recomputations.

A call that serves a stale entry, or draws an early recomputation
(:mod:`memokit.freshness`), asks here for a refresh of its key and returns at
once. The refresh runs the function and stores its result, replacing the entry:

- **one at a time per key**: a key already being refreshed in this process is
  not refreshed twice. With ``lock_lease=`` the refresh also takes the key's
  lock in the backend (:mod:`memokit.locks`) without waiting: a refresh that
  finds it taken is skipped, another process is computing the value.
- **once per entry**: a refresh asked for by a caller that read an entry which
  has been replaced since (a refresh of this or another process ended between
  that caller's read and its request) is skipped: it would recompute a value
  just computed.
- **bounded**: at most :data:`MAX_REFRESHES` refreshes are pending or running
  in a process, sync and async together; a refresh that does not fit is
  skipped, and the stale value is served (a later call asks again).
- a sync function's refresh runs on a pool of daemon threads, started as needed
  (at most :data:`MAX_REFRESHES`); a coroutine function's runs as a task on the
  caller's event loop. A loop that shuts down (``asyncio.run``) cancels a
  pending refresh task like any other; a loop closed without that drops it
  quietly.
- a child process made by ``fork`` starts with no refresh pending.
- a refresh that fails (the function raises, the backend fails) keeps the stale
  value, is counted in ``refresh_failures`` and logged once per key until one
  succeeds. Backend failures feed the breaker as on any call
  (:mod:`memokit.resilience`).

The refresh reads the versions again before it runs the function, as
``refresh()`` does: a refresh that starts after an invalidation stores its
value under the new versions.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, Final

from .backends.base import MISSING, UNREADABLE, BaseCache
from .counters import aread_entry, read_entry
from .entry import timed_value
from .fnstate import CachedState, _count
from .locks import lock_key_for
from .misses import Steps, _arun, _call, _Io, _io, _run, _store_steps
from .resilience import breaker_for, fail_open, is_backend_failure
from .singleflight import _leading
from .stats import refresh_failed
from .stats_hooks import refresh_failed_extra

logger = logging.getLogger("memokit")

MAX_REFRESHES: Final = 8
"""Refreshes pending or running at once in one process; one that does not fit is skipped."""

_MAX_LOGGED: Final = 1024


class _Job:
    """One refresh: claimed (``active``) until it ends, or its loop closed without it."""

    __slots__ = ("loop", "slot")

    def __init__(self, slot: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None) -> None:
        self.slot = slot
        self.loop = loop


_lock = threading.Lock()
_active: dict[tuple[Any, ...], _Job] = {}
_logged: dict[tuple[Any, ...], None] = {}
"""Keys whose failed refresh was logged, until one of theirs succeeds."""


def _claim(slot: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None) -> _Job | None:
    """Reserve a refresh of ``slot``; None when one runs already or none fits."""
    with _lock:
        _sweep()
        if slot in _active or len(_active) >= MAX_REFRESHES:
            return None
        job = _active[slot] = _Job(slot, loop)
        return job


def _release(job: _Job) -> None:
    with _lock:
        if _active.get(job.slot) is job:
            del _active[job.slot]


def _sweep() -> None:
    """Drop the refreshes of loops closed without running them: they never end by themselves.

    Called holding ``_lock``. A dropped task closes quietly when collected (see :func:`astart`).
    """
    for other, job in list(_active.items()):
        if job.loop is not None and job.loop.is_closed():
            del _active[other]
    for task in [task for task in _tasks if task.get_loop().is_closed()]:
        _tasks.discard(task)


def pending() -> int:
    """Refreshes pending or running in this process now."""
    with _lock:
        _sweep()
        return len(_active)


_POLL: Final = 0.005


def wait_idle(timeout: float = 10.0) -> None:
    """Block until no background refresh is pending in this process (for tests).

    Raise ``TimeoutError`` after ``timeout`` seconds: a refresh that never ends is
    a bug to see, not to wait on.
    """
    # Counted in sleeps, not read off a clock: a test's frozen clock must not stop it.
    for _ in range(math.ceil(timeout / _POLL)):
        if not pending():
            return
        time.sleep(_POLL)
    if pending():
        raise TimeoutError(f"a background refresh was still pending after {timeout} s")


async def await_idle(timeout: float = 10.0) -> None:
    """The async twin of :func:`wait_idle`: lets the loop run the refresh tasks."""
    for _ in range(math.ceil(timeout / _POLL)):
        if not pending():
            return
        await asyncio.sleep(_POLL)
    if pending():
        raise TimeoutError(f"a background refresh was still pending after {timeout} s")


# -- the thread pool -------------------------------------------------------------------


class _Pool:
    """Daemon threads, started as needed, running the queued refreshes."""

    def __init__(self) -> None:
        self.ready = threading.Condition(threading.Lock())
        self.queue: collections.deque[Callable[[], None]] = collections.deque()
        self.threads = 0
        self.idle = 0

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False when it cannot run (no thread could be started for it)."""
        with self.ready:
            self.queue.append(job)
            if self.idle:
                self.ready.notify()
                return True
            if self.threads >= MAX_REFRESHES:
                return True  # a busy worker takes it next
            self.threads += 1
        worker = threading.Thread(target=self._work, name="memokit-refresh", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # at interpreter shutdown (3.12+), or past a thread limit
            with self.ready:
                self.threads -= 1
                if job not in self.queue:
                    return True  # a busy worker took it meanwhile
                self.queue.remove(job)
            return False
        return True

    def _work(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.idle += 1
                    try:
                        self.ready.wait()
                    finally:
                        self.idle -= 1
                job = self.queue.popleft()
            job()  # never raises: _refresh catches what the refresh raises


_pool = _Pool()


def _fresh_context() -> contextvars.Context:
    """The caller's context, leading no flight (the refresh is a computation of its own)."""
    context = contextvars.copy_context()
    context.run(_leading.set, ())
    return context


def start(
    state: CachedState, cache: BaseCache, key: str, args: Any, kwargs: Any, seen: float
) -> bool:
    """Start a background refresh of a sync function's call; False when skipped.

    ``seen`` is the ``created`` time of the entry the caller read.
    """
    job = _claim((id(state), id(cache), key, state.version), None)
    if job is None:
        return False
    context = _fresh_context()

    def run() -> None:
        context.run(_refresh, state, cache, key, args, kwargs, seen, job)

    if not _pool.submit(run):
        _release(job)  # skipped: the caller is served the stale value all the same
        return False
    return True


def astart(
    state: CachedState, cache: BaseCache, key: str, args: Any, kwargs: Any, seen: float
) -> bool:
    """Start a background refresh of a coroutine function's call as a task; False when skipped."""
    loop = asyncio.get_running_loop()
    job = _claim((id(state), id(cache), key, state.version), loop)
    if job is None:
        return False
    coroutine = _arefresh(state, cache, key, args, kwargs, seen, job)
    # Started here, up to its first pause: a loop closed before the task ran
    # then finds a started coroutine, which closes without "never awaited".
    coroutine.send(None)
    task = loop.create_task(coroutine, context=_fresh_context())
    # Cancelled by asyncio.run at shutdown; closed quietly by a loop closed without it.
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # asyncio's own switch
    with _lock:  # loops in other threads add and sweep too
        _tasks.add(task)
    task.add_done_callback(_forget)
    return True


def _forget(task: asyncio.Task[None]) -> None:
    with _lock:
        _tasks.discard(task)


_tasks: set[asyncio.Task[None]] = set()
"""Strong references: the loop keeps only weak ones to its tasks."""


class _Pause:
    """Awaiting it gives the loop one turn (a bare yield, which a task accepts)."""

    def __await__(self) -> Generator[None, None, None]:
        yield


def _refresh(
    state: CachedState,
    cache: BaseCache,
    key: str,
    args: Any,
    kwargs: Any,
    seen: float,
    job: _Job,
) -> None:
    try:
        _ended(state, cache, key, _run(_refresh_steps(state, cache, key, args, kwargs, seen)))
    except BaseException as exc:  # SystemExit too: it would end a pool worker for good
        _failed(state, cache, key, exc, backend=True)
    finally:
        _release(job)


async def _arefresh(
    state: CachedState,
    cache: BaseCache,
    key: str,
    args: Any,
    kwargs: Any,
    seen: float,
    job: _Job,
) -> None:
    try:
        await _Pause()
        steps = _refresh_steps(state, cache, key, args, kwargs, seen)
        _ended(state, cache, key, await _arun(steps))
    except Exception as exc:
        _failed(state, cache, key, exc, backend=True)
    finally:
        _release(job)


def _refresh_steps(
    state: CachedState, cache: BaseCache, key: str, args: Any, kwargs: Any, seen: float
) -> Steps[Exception | None]:
    """Read the versions, run the function, store its result (replacing the entry).

    Skipped when the entry read is no longer the one made at ``seen``: it was
    refreshed since the caller read it.

    Return the function's exception, if it raised, or the backend's when the
    value could not be stored: the cache's other failures (reading, locking)
    raise, as they are the backend's.
    """
    version = state.version
    lock = state.lock
    token = None
    if lock is not None:
        token = uuid.uuid4().hex
        taken = yield _io(cache.add, cache.aadd, lock_key_for(key), token, lock.lease, version)
        if not taken:
            return None  # another process refreshes (or computes) this key
    try:
        payload, versions = yield _Io(
            partial(read_entry, state, cache, key, args, kwargs),
            partial(aread_entry, state, cache, key, args, kwargs),
        )
        if _replaced(payload, versions, cache, seen):
            return None
        state.refreshes += 1
        started = time.perf_counter()
        try:
            value = yield _call(state, args, kwargs)
        except Exception as exc:
            return exc  # the function's own failure, never the backend's
        took = time.perf_counter() - started
        guard = breaker_for(cache)
        try:
            # Unguarded: a value that could not be stored is a failed refresh (the
            # stale value stays), whether or not calls fail open.
            yield from _store_steps(state, cache, key, value, versions, True, None, took)
        except Exception as exc:
            if not is_backend_failure(exc):
                raise
            fail_open(guard, exc)  # counted by _store_steps; this feeds the breaker
            return exc
        if guard.failures:
            guard.record_success()
        return None
    finally:
        if token is not None and lock is not None:
            yield _io(lock.release, lock.arelease, cache, key, version, token)


def _replaced(payload: Any, versions: Any, cache: BaseCache, seen: float) -> bool:
    """Whether ``payload`` is a valid entry other than the one made at ``seen``."""
    try:
        found = timed_value(payload, versions, cache)
    except UNREADABLE:
        return False  # damaged: the refresh replaces it
    return found is not MISSING and found[1].created != seen


def _ended(state: CachedState, cache: BaseCache, key: str, error: Exception | None) -> None:
    if error is None:
        _succeeded(state, key)
    else:
        _failed(state, cache, key, error, backend=False)


def _failed(
    state: CachedState, cache: BaseCache, key: str, exc: BaseException, backend: bool
) -> None:
    """Count and log (once per key until a success) a refresh that failed; the
    metrics hooks hear of every one (memokit.stats)."""
    refresh_failed(state, exc, log=False)
    if backend and is_backend_failure(exc):
        _count(state, exc)
        fail_open(breaker_for(cache), exc)
    mark = (id(state), key)
    with _lock:
        if mark in _logged:
            return
        if len(_logged) >= _MAX_LOGGED:
            _logged.clear()
        _logged[mark] = None
    name = getattr(state.func, "__qualname__", repr(state.func))
    logger.warning(
        "memokit: the background refresh of %s (key %r) failed (%s: %s); the stale value "
        "is served until its window ends",
        name,
        key,
        type(exc).__name__,
        exc,
        extra=refresh_failed_extra(state.identity),
    )


def _succeeded(state: CachedState, key: str) -> None:
    if _logged:
        with _lock:
            _logged.pop((id(state), key), None)


def _reset_after_fork() -> None:
    # The child has only the forking thread: no worker, no refresh of the parent's.
    global _lock, _pool
    _lock = threading.Lock()
    _active.clear()
    _logged.clear()
    _tasks.clear()
    _pool = _Pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
