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
import struct
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


_KERNEL_SEND_MAX = 16 * 1024
"""A request up to this size is sent with the kernel's timeout; a larger one, which may
take several sends, with Python's (one bound for the whole of ``sendall``)."""
_connect = socket.socket.connect


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    if not whole and not micros:
        micros = 1  # a zero timeval means "no timeout" to the kernel
    return struct.pack("@ll", whole, micros)


_NO_TIMEOUT = struct.pack("@ll", 0, 0)


class KernelDeadlineSocket(DeadlineSocket):
    """A :class:`DeadlineSocket` whose timeout the kernel keeps (``SO_RCVTIMEO``,
    ``SO_SNDTIMEO``) on a blocking socket.

    Python enforces a socket timeout with a ``poll()`` before every send and every
    read: two system calls more per request, about 1 µs on loopback, where a
    memcached ``get`` takes about 15 µs. Here a send and a read are one system
    call each; the kernel's ``EAGAIN`` at the timeout is raised as Python's
    ``TimeoutError``, and connecting keeps Python's timeout.
    """

    __slots__ = ()

    def settimeout(self, value: float | None) -> None:
        """Set the timeout, which is also the time each request gets in all."""
        self._limit = value
        if value:
            _settimeout(self, None)  # blocking: the kernel times the calls out
            self._kernel_timeout(_timeval(value))
        else:
            self._kernel_timeout(_NO_TIMEOUT)
            _settimeout(self, value)

    def gettimeout(self) -> float | None:
        """The timeout given to ``settimeout``."""
        return self._limit

    def _kernel_timeout(self, timeval: bytes) -> None:
        self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    def connect(self, address: Any) -> None:
        """Connect within the timeout (Python's: the kernel's would stop at EINPROGRESS)."""
        limit = self._limit
        if limit:
            _settimeout(self, limit)
        try:
            _connect(self, address)
        finally:
            if limit:
                _settimeout(self, None)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send a request; the reads of its reply have the timeout from now on, in all."""
        limit = self._limit
        if not limit:
            socket.socket.sendall(self, data, flags)
            return
        self._deadline = _monotonic() + limit
        if len(data) > _KERNEL_SEND_MAX:
            _settimeout(self, limit)  # several sends: one bound for them all
            try:
                socket.socket.sendall(self, data, flags)
            finally:
                _settimeout(self, None)
            return
        try:
            socket.socket.sendall(self, data, flags)
        except BlockingIOError:
            raise TimeoutError("timed out") from None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Read, within what is left of the request's deadline."""
        limit = self._limit
        if limit and self._deadline and not flags & _PEEK:
            left = self._deadline - _monotonic()
            if left < limit - _SLACK:
                self._shorten(left)
                try:
                    return self._kernel_recv(bufsize, flags)
                finally:
                    self._kernel_timeout(_timeval(limit))
        if limit:
            return self._kernel_recv(bufsize, flags)
        return _recv(self, bufsize, flags)

    def _kernel_recv(self, bufsize: int, flags: int) -> bytes:
        try:
            return _recv(self, bufsize, flags)
        except BlockingIOError:
            raise TimeoutError("timed out") from None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Read into ``buffer``, within what is left of the request's deadline."""
        limit = self._limit
        if not limit:
            return _recv_into(self, buffer, nbytes, flags)
        shortened = False
        if self._deadline and not flags & _PEEK:
            left = self._deadline - _monotonic()
            if left < limit - _SLACK:
                self._shorten(left)
                shortened = True
        try:
            return _recv_into(self, buffer, nbytes, flags)
        except BlockingIOError:
            raise TimeoutError("timed out") from None
        finally:
            if shortened:
                self._kernel_timeout(_timeval(limit))

    def _shorten(self, left: float) -> None:
        self._kernel_timeout(_timeval(max(left, _LAST_LOOK)))


class DeadlineSocketModule:
    """The ``socket`` module, except that its sockets are :class:`KernelDeadlineSocket` s.

    For clients that take a socket module (pymemcache's ``socket_module``).
    """

    socket = KernelDeadlineSocket

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
