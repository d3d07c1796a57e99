"""A TCP proxy that injects network faults, for testing code against a real server.

Put it between a client and a server on loopback, then switch faults on and off
while the client runs::

    with FaultProxy(server.host, server.port) as proxy:
        cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": proxy.url("redis")})
        proxy.set_faults(Faults(drop=True))   # black-holed: nothing arrives any more
        ...
        proxy.set_faults()                    # healthy again

The proxy listens on a free loopback port (found by binding port 0) and serves
each direction of each connection from a thread of its own. The faults (see :class:`Faults`):

- ``delay``: every chunk waits this many seconds before it is passed on;
- ``drop``: the connection stays open, but nothing is passed on either way;
- ``truncate``: N more bytes of replies are passed on, then the connection closed;
- ``reset``: connections are aborted with a TCP reset (new ones at once);
- ``bandwidth``: bytes per second, in each direction of each connection.

The proxy is for tests on loopback only; it refuses any other address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["FaultProxy", "Faults"]

_TICK = 0.02  # how often a connection looks at the faults in force while idle
_CHUNK = 65536
_SEND_TIMEOUT = 5.0


@dataclass(frozen=True)
class Faults:
    """The faults a :class:`FaultProxy` applies; the default is a healthy network."""

    delay: float = 0.0
    """Seconds each chunk waits before it is passed on (both directions)."""
    drop: bool = False
    """Pass nothing on, either way, while keeping the connections open (a black hole)."""
    truncate: int | None = None
    """Pass on N more bytes of replies on each connection, then close it."""
    reset: bool = False
    """Abort every connection with a TCP reset, open ones at once and new ones on arrival."""
    bandwidth: float | None = None
    """Bytes per second in each direction of each connection; None for no limit."""

    def __post_init__(self) -> None:
        if not 0 <= self.delay < float("inf"):
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {self.delay!r}")
        if self.truncate is not None and (type(self.truncate) is not int or self.truncate < 0):
            raise ValueError(f"truncate must be None or an int >= 0, not {self.truncate!r}")
        if self.bandwidth is not None and not 0 < self.bandwidth < float("inf"):
            raise ValueError(
                f"bandwidth must be None or bytes per second > 0, not {self.bandwidth!r}"
            )

    @property
    def healthy(self) -> bool:
        """True when no fault is on."""
        return self == _HEALTHY


_HEALTHY = Faults()


def _abort(sock: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send a reset instead of a FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Connection:
    """One client connection and its upstream twin: a thread for each direction."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = 0  # directions still being served
        self._ended = False

    def start(self) -> None:
        self._spawn(self._serve)

    def join(self) -> None:
        while True:
            threads = list(self._threads)
            for thread in threads:
                thread.join()
            if len(self._threads) == len(threads):
                return

    def _spawn(self, target: Callable[[], None]) -> None:
        with self._lock:
            self._running += 1
        thread = threading.Thread(target=self._guard, args=(target,), daemon=True)
        thread.name = "memokit-fault-proxy"
        self._threads.append(thread)
        thread.start()

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except (OSError, ValueError):
            pass  # a side went away (ValueError: select() on a socket closed meanwhile)
        finally:
            self._end()
            with self._lock:
                self._running -= 1
                last = not self._running
            if last:
                self.proxy._forget(self)

    def _serve(self) -> None:
        if self.proxy.faults.reset:
            return  # _end() aborts it
        upstream = socket.create_connection(self.proxy.target, timeout=_SEND_TIMEOUT)
        self.upstream = upstream
        for sock in (self.client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Bounded, so that a peer that stops reading cannot hold a thread.
            sock.settimeout(_SEND_TIMEOUT)
        self._spawn(lambda: self._pump(upstream, self.client, reply=True))
        self._pump(self.client, upstream, reply=False)

    def _pump(self, source: socket.socket, target: socket.socket, *, reply: bool) -> None:
        proxy = self.proxy
        budget: int | None = None  # reply bytes left to pass on under ``truncate``
        while not proxy._stopping.is_set() and not self._ended:
            if proxy.faults.reset:
                return
            readable, _, _ = select.select([source], [], [], _TICK)
            if not readable:
                continue
            data = source.recv(_CHUNK)
            if not data:
                return  # one side closed: close the other, as TCP would
            faults = proxy.faults
            if faults.delay and not faults.drop:
                time.sleep(faults.delay)
                faults = proxy.faults  # it may have changed meanwhile
            if faults.reset:
                return
            if faults.drop:
                continue
            if reply and faults.truncate is not None:
                # Counted in bytes, not chunks: a reply may come in pieces.
                budget = faults.truncate if budget is None else budget
                data = data[:budget]
                budget -= len(data)
                self._send(target, data, faults)
                if budget == 0:
                    return
                continue
            budget = None
            self._send(target, data, faults)

    def _send(self, target: socket.socket, data: bytes, faults: Faults) -> None:
        if faults.bandwidth is None:
            target.sendall(data)
            return
        # Small pieces at a steady pace, so a reader sees a trickle, not one late burst.
        piece = max(1, int(faults.bandwidth * _TICK))
        for start in range(0, len(data), piece):
            part = data[start : start + piece]
            target.sendall(part)
            time.sleep(len(part) / faults.bandwidth)

    def _end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        reset = self.proxy.faults.reset
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if reset:
                _abort(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class FaultProxy:
    """A TCP proxy on a free loopback port in front of ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        for address in (host, target_host):
            if not ipaddress.ip_address(socket.gethostbyname(address)).is_loopback:
                raise ValueError(f"FaultProxy is for loopback addresses only, not {address!r}")
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.faults: Faults = _HEALTHY
        """The faults in force; change them with :meth:`set_faults`."""
        self.accepted = 0
        """Connections accepted so far."""
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()

    def url(self, scheme: str | None = None) -> str:
        """``host:port`` of the proxy, or ``scheme://host:port`` (``proxy.url("redis")``)."""
        address = f"{self.host}:{self.port}"
        return f"{scheme}://{address}" if scheme else address

    def start(self) -> FaultProxy:
        """Listen on a free port and start accepting connections; return ``self``."""
        if self._listener is not None:
            raise RuntimeError("the proxy is already running")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(128)
        listener.settimeout(_TICK)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._accept, args=(listener,), name="memokit-fault-proxy-accept", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for the proxy's threads."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.join()

    def set_faults(self, faults: Faults | None = None, **changes: object) -> Faults:
        """Put ``faults`` (or ``Faults(**changes)``) in force now; return them.

        Open connections follow at once: a reply already on its way is passed on
        under the new faults, and ``reset`` aborts every open connection.
        """
        if faults is None:
            faults = Faults(**changes)  # type: ignore[arg-type]  # checked by Faults itself
        elif changes:
            raise TypeError("give either a Faults object or keyword arguments, not both")
        self.faults = faults
        return faults

    def heal(self) -> None:
        """Switch every fault off."""
        self.faults = _HEALTHY

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._connections)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            connection = _Connection(self, client)
            with self._lock:
                self._connections.add(connection)
            connection.start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.url()} -> {self.target[0]}:{self.target[1]} {self.faults}>"
