"""Single flight: concurrent callers that miss one key run the computation once.

The first caller of a key (the leader) runs the computation; callers that arrive
while it runs wait for it and get its result, or its exception. Threads wait on
an event; asyncio tasks await the leader's task through ``asyncio.shield``, so a
cancelled waiter (the first caller included) never cancels the computation for
the others.

The flight key is whatever identifies one result. ``@cached`` uses
``(id(cache), key, version, versions)``, where ``versions`` is the tuple of
invalidation counters the caller read along with the entry: a caller whose read
began after an invalidation holds newer versions, hence another flight key, and
never joins a computation that began before the invalidation.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "thread", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.thread = threading.get_ident()


class SingleFlight:
    """Merges concurrent calls of one key across threads."""

    __slots__ = ("__weakref__", "_flights", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight[Any]] = {}
        _instances.add(self)

    def run(self, key: Hashable, compute: Callable[[], T]) -> tuple[T, bool]:
        """Return ``(result, led)``: ``led`` is True for the caller that computed.

        If the computation raises, the leader and every waiter get the exception.
        A call made from inside the computation of the same key (recursion) runs
        on its own rather than wait for itself.
        """
        with self._lock:
            flight = self._flights.get(key)
            if flight is None or flight.thread == threading.get_ident():
                flight = None
                mine: _Flight[T] = _Flight()
                self._flights.setdefault(key, mine)
        if flight is not None:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value, False  # type: ignore[return-value]  # set with done
        try:
            mine.value = value = compute()
            return value, True
        except BaseException as exc:
            mine.error = exc
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is mine:
                    del self._flights[key]
            mine.done.set()

    def __len__(self) -> int:
        """Number of computations in progress."""
        return len(self._flights)


class AsyncSingleFlight:
    """Merges concurrent calls of one key across the tasks of an event loop.

    Flights are kept per running loop, so several threads, each with its own
    loop, can share one instance.
    """

    __slots__ = ("__weakref__", "_flights", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[Any]] = {}
        _instances.add(self)

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Return ``(result, led)``, as :meth:`SingleFlight.run`, for coroutines."""
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        led = False
        with self._lock:
            task = self._flights.get(slot)
            if task is None:
                task = loop.create_task(_call(compute))
                self._flights[slot] = task
                led = True
                task.add_done_callback(lambda done: self._finished(slot, done))
        # The shield keeps a cancelled caller (the first one too) from cancelling the
        # computation that the others wait for.
        result: T = await asyncio.shield(task)
        return result, led

    def _finished(self, slot: tuple[asyncio.AbstractEventLoop, Hashable], task: Any) -> None:
        with self._lock:
            if self._flights.get(slot) is task:
                del self._flights[slot]
        if not task.cancelled():
            # Mark the exception as retrieved: when every waiter was cancelled nobody
            # awaits it, and asyncio would log "exception was never retrieved".
            task.exception()

    def __len__(self) -> int:
        """Number of computations in progress."""
        return len(self._flights)


async def _call(compute: Callable[[], Awaitable[T]]) -> T:
    return await compute()


_instances: weakref.WeakSet[SingleFlight | AsyncSingleFlight] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # The child has only the forking thread: flights led by others would never end.
    for flights in list(_instances):
        flights._lock = threading.Lock()
        flights._flights.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
