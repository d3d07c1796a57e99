"""Single flight: concurrent callers that miss one key run the computation once.

The first caller of a key (the leader) runs the computation; callers that arrive
while it runs (the waiters) wait for it, as long as it takes, and get its result
or its exception. Each waiter gets its own copy of the result, decoded from the
payload the leader encoded once (the stored entry, or a pickle when nothing was
stored), so no two callers share a mutable object; immutable values are shared,
as on a hit. Threads wait on an event; asyncio tasks await the leader's task
through ``asyncio.shield``, so a cancelled waiter (the first caller included)
never cancels the computation for the others.

A wait that would close a cycle is never started: when the flight's leader is
itself waiting, directly or through other flights, for a flight that this caller
leads (or the caller leads that very flight: recursion), the caller computes for
itself. Which flights a caller leads travels in a ``ContextVar``, so tasks and
copied contexts started inside a computation count as part of it. That is the
only case in which one key runs twice at once; each table (``SingleFlight``,
``AsyncSingleFlight``) counts it in ``cycles``.

A caller that read a miss just before the leader stored and finished would start
a second flight; to close that window the caller notes ``ended`` before its read,
and a new leader whose flights ended meanwhile is told to look at the cache again.

The flight key is whatever identifies one result. ``@cached`` uses
``(id(cache), key, version, versions)``, where ``versions`` is the tuple of
invalidation counters the caller read along with the entry: a caller whose read
began after an invalidation holds newer versions, hence another flight key, and
never joins a computation that began before the invalidation.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import pickle
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, TypeVar

T = TypeVar("T")

LED: Final = 0
"""The caller ran the computation (or, with nothing to share, computed for itself)."""
JOINED: Final = 1
"""The caller waited for another's computation and got a copy of its result."""
ALONE: Final = 2
"""Waiting would have closed a cycle: the caller computed for itself."""

_IMMUTABLE: Final = frozenset({type(None), bool, int, float, complex, str, bytes})


class Shared:
    """A result encoded once, from which each waiter decodes a copy of its own."""

    __slots__ = ("decode", "payload")

    def __init__(self, payload: Any, decode: Callable[[Any], Any]) -> None:
        self.payload = payload
        self.decode = decode

    def copy(self) -> Any:
        """Return a fresh copy of the result (the same object, for an immutable one)."""
        return self.decode(self.payload)


def _same(value: Any) -> Any:
    return value


def _immutable(value: Any, depth: int = 0) -> bool:
    cls = type(value)
    if cls in _IMMUTABLE:
        return True
    if (cls is tuple or cls is frozenset) and depth < 3:
        return all(_immutable(item, depth + 1) for item in value)
    return False


def share(value: Any) -> Shared | None:
    """Encode a result that was not stored, for the waiters; None if it cannot be pickled."""
    if _immutable(value):
        return Shared(value, _same)
    try:
        return Shared(pickle.dumps(value, pickle.HIGHEST_PROTOCOL), pickle.loads)
    except Exception:
        return None  # each waiter then computes for itself rather than share the object


Compute = Callable[[bool], tuple[T, "Shared | None"]]
"""What a leader runs: given whether to look at the cache again, ``(value, shared)``."""


class _Flight:
    __slots__ = ("blocked_on", "done", "error", "shared", "task", "thread", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.shared: Shared | None = None
        self.waiters = 0
        # Flights that a context leading this one waits for, with how many waits.
        self.blocked_on: dict[_Flight, int] = {}
        self.thread = threading.get_ident()
        self.task: asyncio.Task[Any] | None = None


# Every flight of the process: one lock for the tables and the wait-for graph, so
# that a cycle check and the wait it allows are one step. Held for a few dict
# operations at a time, never while anything runs or waits.
_lock = threading.Lock()
_leading: contextvars.ContextVar[tuple[_Flight, ...]] = contextvars.ContextVar(
    "memokit_leading", default=()
)


def _closes_cycle(flight: _Flight, leading: tuple[_Flight, ...]) -> bool:
    """True if ``flight`` waits, through any chain of flights, for one in ``leading``."""
    if not leading:
        return False  # a caller that leads nothing cannot be waited for
    mine = set(leading)
    stack = [flight]
    seen = {flight}
    while stack:
        current = stack.pop()
        if current in mine:
            return True
        for after in current.blocked_on:
            if after not in seen:
                seen.add(after)
                stack.append(after)
    return False


def _block(leading: tuple[_Flight, ...], flight: _Flight) -> None:
    for mine in leading:
        mine.blocked_on[flight] = mine.blocked_on.get(flight, 0) + 1


def _unblock(leading: tuple[_Flight, ...], flight: _Flight) -> None:
    for mine in leading:
        left = mine.blocked_on.get(flight, 0) - 1
        if left > 0:
            mine.blocked_on[flight] = left
        else:
            mine.blocked_on.pop(flight, None)


class SingleFlight:
    """Merges concurrent calls of one key across threads."""

    __slots__ = ("__weakref__", "_flights", "cycles", "ended")

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}
        self.ended = 0
        """Moves each time a flight ends; read it before the read that missed."""
        self.cycles = 0
        """Callers that computed for themselves because waiting would close a cycle."""
        _instances.add(self)

    def run(self, key: Hashable, compute: Compute[T], since: int | None = None) -> tuple[T, int]:
        """Return ``(result, role)``: LED, JOINED or ALONE (see the module).

        ``since`` is ``ended`` as read before the caller's read of the cache; a
        leader whose flights ended since then is asked to look at the cache again.
        """
        leading = _leading.get()
        mine: _Flight | None = None  # stays None when this call joins or runs alone
        recheck = False
        with _lock:
            flight = self._flights.get(key)
            if flight is None:
                mine = self._flights[key] = _Flight()
                recheck = since is not None and since != self.ended
            elif flight.thread == threading.get_ident() or _closes_cycle(flight, leading):
                self.cycles += 1
                flight = None
                mine = None
            else:
                flight.waiters += 1
                _block(leading, flight)
        if flight is not None:
            try:
                flight.done.wait()
            finally:
                with _lock:
                    _unblock(leading, flight)
            if flight.error is not None:
                raise flight.error
            if flight.shared is None:  # a result that cannot be copied
                return compute(True)[0], LED
            return flight.shared.copy(), JOINED
        if mine is None:
            return compute(False)[0], ALONE
        token = _leading.set((*leading, mine))
        try:
            try:
                value, shared = compute(recheck)
            finally:
                _leading.reset(token)
        except BaseException as exc:
            mine.error = exc
            self._end(key, mine)
            mine.done.set()
            raise
        try:
            if self._end(key, mine):
                # Encoded before the leader's caller can change the value.
                mine.shared = shared if shared is not None else share(value)
        finally:
            mine.done.set()
        return value, LED

    def _end(self, key: Hashable, mine: _Flight) -> int:
        """Take the flight off the table; return how many waiters joined it."""
        with _lock:
            if self._flights.get(key) is mine:
                del self._flights[key]
            self.ended += 1
            return mine.waiters

    def __len__(self) -> int:
        """Number of computations in progress."""
        return len(self._flights)


AsyncCompute = Callable[[bool], Awaitable[tuple[T, "Shared | None"]]]


class AsyncSingleFlight:
    """Merges concurrent calls of one key across the tasks of an event loop.

    Flights are kept per running loop, so several threads, each with its own
    loop, can share one instance.
    """

    __slots__ = ("__weakref__", "_flights", "cycles", "ended")

    def __init__(self) -> None:
        self._flights: dict[tuple[asyncio.AbstractEventLoop, Hashable], _Flight] = {}
        self.ended = 0
        self.cycles = 0
        _instances.add(self)

    async def run(
        self, key: Hashable, compute: AsyncCompute[T], since: int | None = None
    ) -> tuple[T, int]:
        """Return ``(result, role)``, as :meth:`SingleFlight.run`, for coroutines."""
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        leading = _leading.get()
        role = JOINED
        recheck = False
        with _lock:
            flight = self._flights.get(slot)
            if flight is None:
                role = LED
                flight = self._flights[slot] = _Flight()
                recheck = since is not None and since != self.ended
            elif flight.task is asyncio.current_task() or _closes_cycle(flight, leading):
                self.cycles += 1
                role = ALONE
            else:
                flight.waiters += 1
            if role != ALONE:
                _block(leading, flight)
        if role == ALONE:
            return (await compute(False))[0], ALONE
        if role == LED:
            # The computation runs in a task of its own, in a copy of this context
            # that also says it leads the new flight. Made outside the lock: an
            # eager task factory runs the task's first steps at once. No other task
            # of this loop can look for the flight's task before it is set.
            context = contextvars.copy_context()
            context.run(_leading.set, (*leading, flight))
            task = loop.create_task(self._lead(slot, flight, compute, recheck), context=context)
            flight.task = task
            task.add_done_callback(lambda done: self._finished(slot, flight, done))
        try:
            # The shield keeps a cancelled caller (the first one too) from cancelling
            # the computation that the others wait for.
            value, shared = await asyncio.shield(flight.task)  # type: ignore[arg-type]  # set above
        finally:
            with _lock:
                _unblock(leading, flight)
        if role == LED:
            return value, LED
        if shared is None:  # a result that cannot be copied
            return (await compute(True))[0], LED
        return shared.copy(), JOINED

    async def _lead(
        self,
        slot: tuple[asyncio.AbstractEventLoop, Hashable],
        flight: _Flight,
        compute: AsyncCompute[T],
        recheck: bool,
    ) -> tuple[T, Shared | None]:
        try:
            value, shared = await compute(recheck)
        finally:
            # Ended here rather than in a done callback: no caller may join once
            # the result is out, so the waiters counted now are all there will be.
            with _lock:
                if self._flights.get(slot) is flight:
                    del self._flights[slot]
                self.ended += 1
                waiters = flight.waiters
        if waiters and shared is None:
            shared = share(value)
        return value, shared

    def _finished(
        self, slot: tuple[asyncio.AbstractEventLoop, Hashable], flight: _Flight, task: Any
    ) -> None:
        # A task cancelled before it started never ran _lead's cleanup.
        with _lock:
            if self._flights.get(slot) is flight:
                del self._flights[slot]
        if not task.cancelled():
            # Mark the exception as retrieved: when every waiter was cancelled nobody
            # awaits it, and asyncio would log "exception was never retrieved".
            task.exception()

    def __len__(self) -> int:
        """Number of computations in progress."""
        return len(self._flights)


_instances: weakref.WeakSet[SingleFlight | AsyncSingleFlight] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # The child has only the forking thread: flights led by others would never end.
    global _lock
    _lock = threading.Lock()
    for flights in list(_instances):
        flights._flights.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
