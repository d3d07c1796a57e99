"""Several memcached servers: pymemcache's ``HashClient``, with memokit's failure policy.

``HashClient`` places each key on one server by rendezvous hashing and keeps a
connection pool per server. Its own failure handling is replaced here, because
it does two things a cache of version counters cannot allow:

- between the retries of a failed server, calls on its keys answer as misses
  or as failed writes **without raising**: a ``delete`` or a counter bump that
  never happened looks done;
- after ``retry_attempts`` failures it takes the server **out of the ring**:
  its keys move to the other servers until ``dead_timeout`` brings it back.
  A counter recreated and bumped on the stand-in is then left behind when the
  keys move home, where the server kept the old counter, and entries that an
  invalidation had outdated become valid again.

:class:`Ring` never removes a server, so a key always lives on the same one.
A server that fails (refused, reset, timed out) is skipped for the cache's
breaker window: calls on its keys raise :class:`NodeDown` at once, without
I/O; then one call probes it, and a success takes it back. The other servers
are untouched, so a server that is down costs only its share of the keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
from pymemcache.exceptions import (  # type: ignore[import-untyped]
    MemcacheError,
    MemcacheUnexpectedCloseError,
)

from ._memcached_meta import on_connection
from ._memcached_meta import stamped as meta_stamped

logger = logging.getLogger("memokit")

TRANSPORT_ERRORS = (OSError, MemcacheUnexpectedCloseError)
"""What marks a server down: it could not be reached, or it dropped the connection."""


def server_name(server: Any) -> str:
    """``host:port`` or the socket path, as LOCATION gives it."""
    if isinstance(server, tuple):
        return f"{server[0]}:{server[1]}"
    return str(server)


class NodeDown(MemcacheError):  # type: ignore[misc]  # pymemcache's classes are Any here
    """A call on a server that failed: just now (``__cause__`` says how) or lately (no I/O)."""

    def __init__(self, server: Any, reason: str) -> None:
        super().__init__(f"server {server_name(server)} {reason}")
        self.server = server_name(server)


class Ring(HashClient):  # type: ignore[misc]
    """``HashClient`` whose servers stay in the ring; a failed one is skipped for a window."""

    def __init__(
        self,
        servers: Iterable[Any],
        *,
        window: Callable[[], float],
        partial_reads: bool,
        name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(list(servers), use_pooling=True, **kwargs)
        self._window = window
        self._partial_reads = partial_reads  # IGNORE_EXC: a failed server's keys read as misses
        self._name = name
        self._down: dict[Any, float] = {}  # server -> time.monotonic() until which it is skipped
        self._down_lock = threading.Lock()

    # -- the failure policy ------------------------------------------------------------

    def _enter(self, server: Any) -> None:
        """Raise NodeDown while ``server`` is skipped; let one caller probe after the window."""
        until = self._down.get(server)
        if until is None:
            return
        now = time.monotonic()
        if now < until:
            raise NodeDown(server, "failed lately and is skipped until it is probed again")
        with self._down_lock:
            until = self._down.get(server)
            if until is None:
                return  # back meanwhile
            if now < until:
                raise NodeDown(server, "failed lately and is being probed by another call")
            self._down[server] = now + self._window()  # this call probes; the others skip

    def _run(self, client: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        server = client.server
        self._enter(server)
        try:
            result = func(*args, **kwargs)
        except TRANSPORT_ERRORS as exc:
            self._failed(server, exc)
            raise NodeDown(server, f"failed ({type(exc).__name__})") from exc
        if server in self._down:
            self._answered(server)
        return result

    def _failed(self, server: Any, exc: BaseException) -> None:
        window = self._window()
        with self._down_lock:
            first = server not in self._down
            self._down[server] = time.monotonic() + window
        if first:
            logger.warning(
                "memokit: memcached server %s of cache %s failed (%s); calls on its keys "
                "fail open for %.3g s, then it is probed again; its keys stay on it",
                server_name(server),
                self._name,
                type(exc).__name__,
                window,
            )

    def _answered(self, server: Any) -> None:
        with self._down_lock:
            back = self._down.pop(server, None) is not None
        if back:
            logger.warning(
                "memokit: memcached server %s of cache %s answers again",
                server_name(server),
                self._name,
            )

    # HashClient routes every single-key command and each server's batch through these.

    def _safely_run_func(
        self, client: Any, func: Callable[..., Any], default_val: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return self._run(client, func, *args, **kwargs)

    def _safely_run_set_many(self, client: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run(client, client.set_many, values, *args, **kwargs)

    # -- batches: one request per server -------------------------------------------------

    def _by_server(self, keys: Iterable[Any]) -> dict[Any, list[Any]]:
        batches: defaultdict[Any, list[Any]] = defaultdict(list)
        for key in keys:
            # Never None here: only HashClient's ignore_exc with no server left gives None.
            client: Any = self._get_client(key)
            batches[client.server].append(key)
        return batches

    def _client_of(self, server: Any) -> Any:
        return self.clients[self._make_client_key(server)]

    def get_many(self, keys: Iterable[Any], gets: bool = False, *args: Any, **kwargs: Any) -> Any:
        """One ``get`` per server holding some of ``keys``."""
        found: dict[Any, Any] = {}
        for server, batch in self._by_server(keys).items():
            client = self._client_of(server)
            read = client.gets_many if gets else client.get_many
            try:
                found.update(self._run(client, read, batch, *args, **kwargs))
            except NodeDown:
                if not self._partial_reads:
                    raise
        return found

    get_multi = get_many

    def stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tier one's re-check (``_memcached_meta.stamped``), one request per server."""
        found: dict[str, Any] = {}
        seen: dict[str, Any] = {}
        for server, batch in self._by_server(keys).items():
            pool = self._client_of(server)
            try:
                part, tokens = self._run(pool, on_connection, pool, meta_stamped, batch, stamps)
            except NodeDown:
                if not self._partial_reads:
                    raise
                continue
            found.update(part)
            seen.update(tokens)
        return found, seen

    def delete_many(self, keys: Iterable[Any], *args: Any, **kwargs: Any) -> bool:
        """One batch of ``delete`` per server; every reachable server is done before raising."""
        return self._each(
            (self._client_of(server), "delete_many", (batch, *args))
            for server, batch in self._by_server(keys).items()
        )

    delete_multi = delete_many

    def flush_all(self, *args: Any, **kwargs: Any) -> None:
        """Empty every server; every reachable one is emptied before a failure is raised."""
        self._each((client, "flush_all", args) for client in self.clients.values())

    def _each(self, calls: Iterable[tuple[Any, str, tuple[Any, ...]]]) -> bool:
        # An invalidation must do all it can: a failed server does not stop the others.
        failure: BaseException | None = None
        for client, method, args in calls:
            try:
                self._run(client, getattr(client, method), *args)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return True

    def close(self) -> None:
        """Close every pool, failed servers' included (no I/O)."""
        for client in self.clients.values():
            client.close()

    disconnect_all = close
