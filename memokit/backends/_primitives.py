"""What a backend implements: the storage primitives, their defaults and async forms.

Primitives take keys that are already made and validated, payloads that are
already encoded, and timeouts that are already normalised to a positive number
of seconds or ``None``; they never see ``DEFAULT_TIMEOUT`` or a timeout of zero
or less. Required: ``_get``, ``_set``, ``_add``, ``_touch``, ``_delete``,
``_incr`` (which keeps the entry's expiry) and ``_clear``. Batch primitives
(``_get_many``, ``_set_many``, ``_delete_many``, ``_has_key``, ``_add_or_get``)
loop over those by default; a backend overrides them with one query or one round
trip. Each primitive has an async form (``_aget`` ...) that runs the sync one in
a worker thread when the backend does blocking I/O, inline otherwise; a backend
with a native asyncio client overrides them.

An algorithm over primitives is written once, as a generator of ``Steps`` that
yields each primitive call as ``("_name", *args)`` and receives its result;
``run`` performs the calls with the sync primitives, ``arun`` with the async ones
(``_aname``). A primitive's exception is raised inside the generator at its yield.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import pickle
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Final, TypeVar

from ._capabilities import Capabilities

T = TypeVar("T")

Steps = Generator[tuple[Any, ...], Any, T]
"""An algorithm over primitives: it yields ``("_get", key)`` and is sent the result."""


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""What a primitive returns for a key that is absent or expired."""

UNREADABLE: Final[tuple[type[Exception], ...]] = (pickle.UnpicklingError, EOFError)
"""What ``_decode`` raises for a payload it cannot read (``UnreadableEntry`` is one)."""

ENTRY_MAGIC: Final = b"\x80\xe6"
"""The start of every entry a decorated call stores as bytes (:mod:`memokit.entry`)."""


def is_entry(payload: Any) -> bool:
    """Whether ``payload`` is a decorated call's stored entry (its header is memokit's).

    The plain API reads values only: it takes such a payload for a miss and leaves
    it in place, unreported (``memokit.Entry.read`` reads entries).
    """
    return isinstance(payload, bytes | bytearray | memoryview) and payload[:2] == ENTRY_MAGIC


# "_get" -> "_aget": the async form of each primitive a step may name.
_ASYNC = {
    name: "_a" + name[1:]
    for name in (
        "_get",
        "_set",
        "_add",
        "_touch",
        "_delete",
        "_incr",
        "_clear",
        "_get_many",
        "_set_many",
        "_delete_many",
        "_has_key",
        "_add_or_get",
    )
}


def run(cache: object, steps: Steps[T]) -> T:
    """Run ``steps`` to the end with ``cache``'s sync primitives; return what it returns."""
    try:
        step = next(steps)
        while True:
            try:
                result = getattr(cache, step[0])(*step[1:])
            except Exception as exc:  # the algorithm decides; unhandled, it propagates
                step = steps.throw(exc)
            else:
                step = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # the generator's return type


async def arun(cache: object, steps: Steps[T]) -> T:
    """``run`` with ``cache``'s async primitives (``_aget`` for a ``_get`` step ...)."""
    try:
        step = next(steps)
        while True:
            try:
                result = await getattr(cache, _ASYNC[step[0]])(*step[1:])
            except Exception as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _add_or_get(key: str, payload: Any, timeout: float | None) -> Steps[Any]:
    if (yield "_add", key, payload, timeout):
        return MISSING
    return (yield "_get", key)


class Primitives(abc.ABC):
    """The primitives of a backend (``BaseCache`` builds the public API on them)."""

    capabilities: ClassVar[Capabilities]

    @abc.abstractmethod
    def _get(self, key: str) -> Any:
        """Return the payload stored at ``key``, or ``MISSING``.

        Whatever ``_get`` returns, ``_set`` must accept: ``incr_version`` moves
        payloads between keys without decoding them.
        """

    @abc.abstractmethod
    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        """Store ``payload`` for ``timeout`` seconds (None: forever)."""

    @abc.abstractmethod
    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        """Store ``payload`` only when ``key`` holds no live entry; return whether it did."""

    @abc.abstractmethod
    def _touch(self, key: str, timeout: float | None) -> bool:
        """Give a live entry a new expiry; return False when there is none."""

    @abc.abstractmethod
    def _delete(self, key: str) -> bool:
        """Remove ``key``; return whether a live entry was there."""

    @abc.abstractmethod
    def _incr(self, key: str, delta: int | float) -> Any:
        """Add ``delta`` to a live entry, keeping its expiry; return the result or ``MISSING``.

        A value that cannot be added to raises ``TypeError``, whatever the store says.
        """

    def _incr_counter(self, key: str, delta: int) -> Any:
        """``_incr`` of an invalidation counter (``memokit.counters``).

        A store with replicas returns only once a replica holds the change, so that
        a failover cannot undo an invalidation, and raises ``BackendError`` when none
        acknowledges it in time. The default is ``_incr``: no replicas.
        """
        return self._incr(key, delta)

    @abc.abstractmethod
    def _clear(self) -> None:
        """Remove every entry of the store, whatever its prefix or version."""

    def _count(self) -> int | None:
        """How many entries the store holds (expired ones not yet removed included);
        None when the backend cannot tell. For ``memokit info`` only, never a call path."""
        return None

    def _clear_some(self, limit: int) -> int | None:
        """Remove up to ``limit`` entries of the store; return how many (0: it is empty).

        None when the backend can only clear at once (``_clear``). The command line's
        ``clear`` calls it until it returns 0, to show progress on a long purge.
        """
        return None

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        found = {}
        for key in keys:
            payload = self._get(key)
            if payload is not MISSING:
                found[key] = payload
        return found

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        """Store every item; return the keys that failed."""
        for key, payload in items.items():
            self._set(key, payload, timeout)
        return []

    def _delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self._delete(key)

    def _has_key(self, key: str) -> bool:
        return self._get(key) is not MISSING

    def _add_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        """``_add``; when a live entry was there, return its payload (else ``MISSING``).

        ``get_or_set`` uses it on a miss; a server backend does both in one round trip.
        """
        return run(self, _add_or_get(key, payload, timeout))

    # -- async forms ------------------------------------------------------------

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self.capabilities.blocking_io:
            return await asyncio.to_thread(func, *args)
        return func(*args)

    async def _aget(self, key: str) -> Any:
        return await self._run(self._get, key)

    async def _aset(self, key: str, payload: Any, timeout: float | None) -> None:
        await self._run(self._set, key, payload, timeout)

    async def _aadd(self, key: str, payload: Any, timeout: float | None) -> bool:
        return await self._run(self._add, key, payload, timeout)

    async def _atouch(self, key: str, timeout: float | None) -> bool:
        return await self._run(self._touch, key, timeout)

    async def _adelete(self, key: str) -> bool:
        return await self._run(self._delete, key)

    async def _aincr(self, key: str, delta: int | float) -> Any:
        return await self._run(self._incr, key, delta)

    async def _aincr_counter(self, key: str, delta: int) -> Any:
        return await self._aincr(key, delta)  # a backend with replicas overrides both

    async def _aclear(self) -> None:
        await self._run(self._clear)

    async def _aget_many(self, keys: list[str]) -> dict[str, Any]:
        return await self._run(self._get_many, keys)

    async def _aset_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        return await self._run(self._set_many, items, timeout)

    async def _adelete_many(self, keys: list[str]) -> None:
        await self._run(self._delete_many, keys)

    async def _ahas_key(self, key: str) -> bool:
        return await self._run(self._has_key, key)

    async def _aadd_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        return await arun(self, _add_or_get(key, payload, timeout))
