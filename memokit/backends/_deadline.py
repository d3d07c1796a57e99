"""One deadline per request on the network backends' sockets.

redis-py and pymemcache give each ``recv`` the socket timeout afresh, so a
server (or a network) that trickles a reply a few bytes at a time keeps a call
for as long as the reply takes. A :class:`DeadlineSocket` makes the timeout a
deadline for the whole request instead: it starts when the request is sent, and
every read of the reply shares it, so a call waits at most about one timeout.

A read made right after the send, the common case, costs nothing more: the
socket's own timeout is only lowered for the reads that come later.
"""

from __future__ import annotations

import functools
import socket
import time
from typing import Any

# A read starting this soon after the send keeps the full socket timeout: it may
# overshoot the deadline by this much, and saves two system calls on every reply.
_SLACK = 0.05
_LAST_LOOK = 0.001


# The base methods, looked up once: they run on every reply. (sendall is looked
# up at each call, so that a test can still count what is sent.)
_monotonic = time.monotonic
_PEEK = int(socket.MSG_PEEK)  # a plain int: & on the IntFlag runs Python code
_settimeout = socket.socket.settimeout
_recv = socket.socket.recv
_recv_into = socket.socket.recv_into


class DeadlineSocket(socket.socket):
    """A TCP or Unix socket whose reads share one deadline per request."""

    __slots__ = ("_deadline", "_limit")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._limit: float | None = None
        self._deadline = 0.0
        super().__init__(*args, **kwargs)

    @classmethod
    def adopt(cls, sock: socket.socket) -> DeadlineSocket:
        """Return a DeadlineSocket for the connection ``sock`` (which is consumed)."""
        timeout = sock.gettimeout()
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.settimeout(timeout)
        return adopted

    def settimeout(self, value: float | None) -> None:
        """Set the timeout, which is also the time each request gets in all."""
        self._limit = value
        _settimeout(self, value)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send a request; the reads of its reply have the timeout from now on, in all."""
        if self._limit:
            self._deadline = _monotonic() + self._limit
        socket.socket.sendall(self, data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Read, within what is left of the request's deadline."""
        limit = self._limit
        # No limit, no request sent yet, or a liveness check: the plain timeout.
        if limit and self._deadline and not flags & _PEEK:
            left = self._deadline - _monotonic()
            if left < limit - _SLACK:
                self._shorten(left)
                try:
                    return _recv(self, bufsize, flags)
                finally:
                    _settimeout(self, limit)
        return _recv(self, bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Read into ``buffer``, within what is left of the request's deadline."""
        limit = self._limit
        if limit and self._deadline and not flags & _PEEK:
            left = self._deadline - _monotonic()
            if left < limit - _SLACK:
                self._shorten(left)
                try:
                    return _recv_into(self, buffer, nbytes, flags)
                finally:
                    _settimeout(self, limit)
        return _recv_into(self, buffer, nbytes, flags)

    def _shorten(self, left: float) -> None:
        # Past the deadline, a reply already received is still taken (the caller may
        # only have been slow to read it); the socket raises TimeoutError otherwise.
        _settimeout(self, max(left, _LAST_LOOK))


class DeadlineSocketModule:
    """The ``socket`` module, except that its sockets are :class:`DeadlineSocket` s.

    For clients that take a socket module (pymemcache's ``socket_module``).
    """

    socket = DeadlineSocket

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)


@functools.cache
def with_deadlines(connection_class: type[Any]) -> type[Any]:
    """Return a subclass of a redis-py connection class whose sockets have deadlines.

    It wraps the plain socket ``_connect`` returns; a class whose ``_connect``
    returns something else (TLS) keeps its own.
    """

    def _connect(self: Any) -> Any:
        sock = super(subclass, self)._connect()  # pyright: ignore[reportAttributeAccessIssue]  # subclass is made below
        if type(sock) is socket.socket:
            return DeadlineSocket.adopt(sock)
        return sock

    subclass: type[Any] = type(
        connection_class.__name__,
        (connection_class,),
        {
            "_connect": _connect,
            "__module__": connection_class.__module__,
            "plain_class": connection_class,  # for a connection that only polls (tracking)
        },
    )
    return subclass
