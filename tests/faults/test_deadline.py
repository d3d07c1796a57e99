"""The network backends' sockets: one deadline per request (memokit/backends/_deadline.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from memokit.backends._deadline import DeadlineSocket, DeadlineSocketModule, KernelDeadlineSocket
from memokit.faults import FaultProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]


@pytest.fixture(params=[DeadlineSocket, KernelDeadlineSocket])
def proxy(echo: tuple[str, int], request: pytest.FixtureRequest) -> Iterator[FaultProxy]:
    """A proxy to the echo server; ``connect`` makes sockets of the class in the param
    (redis-py's timeouts are Python's, pymemcache's the kernel's)."""
    with FaultProxy(*echo) as running:
        running.socket_class = request.param  # type: ignore[attr-defined]  # for connect()
        yield running


def connect(proxy: FaultProxy, timeout: float) -> DeadlineSocket:
    cls: type[DeadlineSocket] = proxy.socket_class  # type: ignore[attr-defined]
    sock = cls.adopt(socket.create_connection((proxy.host, proxy.port)))
    sock.settimeout(timeout)
    return sock


def read(sock: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        if not chunk:
            break
        received += chunk
    return received


def test_a_prompt_reply_is_read_whole(proxy: FaultProxy) -> None:
    with connect(proxy, 0.5) as sock:
        assert sock.gettimeout() == 0.5
        for _ in range(3):
            sock.sendall(b"x" * 5000)
            assert read(sock, 5000) == b"x" * 5000


def test_a_trickled_reply_times_out_at_the_deadline(proxy: FaultProxy) -> None:
    with connect(proxy, 0.3) as sock:
        proxy.set_faults(bandwidth=2000)  # 1,000 bytes back would take 0.5 s
        started = time.monotonic()
        sock.sendall(b"x" * 100)
        read(sock, 100)
        sock.sendall(b"y" * 1000)
        with pytest.raises(TimeoutError):
            read(sock, 1000)
        assert time.monotonic() - started < 0.3 + 0.1 + 0.1  # the first reply took 0.1 s


def test_a_plain_socket_would_wait_for_the_whole_trickle(proxy: FaultProxy) -> None:
    # The reason for DeadlineSocket: each read gets the timeout afresh.
    with socket.create_connection((proxy.host, proxy.port), timeout=0.3) as sock:
        proxy.set_faults(bandwidth=2000)
        started = time.monotonic()
        sock.sendall(b"y" * 1000)
        assert read(sock, 1000) == b"y" * 1000
        assert time.monotonic() - started > 0.3


def test_recv_into_shares_the_deadline(proxy: FaultProxy) -> None:
    with connect(proxy, 0.3) as sock:
        proxy.set_faults(bandwidth=2000)
        sock.sendall(b"z" * 1000)
        buffer = bytearray(1000)
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # noqa: PT012 - reads until the deadline
            while sock.recv_into(buffer):
                pass
        assert time.monotonic() - started < 0.3 + 0.1


def test_without_a_request_a_read_has_the_plain_timeout(proxy: FaultProxy) -> None:
    with connect(proxy, 0.2) as sock:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert time.monotonic() - started >= 0.15
        sock.settimeout(0.0)  # non-blocking, as a liveness check makes it
        with pytest.raises(BlockingIOError):
            sock.recv(1, socket.MSG_PEEK)


def test_the_socket_module_makes_deadline_sockets() -> None:
    module = DeadlineSocketModule()
    assert module.AF_INET == socket.AF_INET
    with module.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert isinstance(sock, KernelDeadlineSocket)


def test_kernel_timeouts_cost_no_poll_and_bound_a_request(proxy: FaultProxy) -> None:
    # The kernel keeps the timeout of a blocking socket: a send and a read are one
    # system call each (Python polls before each when it keeps the timeout itself).
    with connect(proxy, 0.3) as sock:
        if not isinstance(sock, KernelDeadlineSocket):
            pytest.skip("redis-py's sockets keep Python's timeout")
        assert sock.getblocking()
        assert sock.gettimeout() == 0.3
        sock.sendall(b"x" * 100)
        assert read(sock, 100) == b"x" * 100
        big = b"b" * (64 * 1024)  # over the kernel-send size: Python's bound for the whole
        sock.sendall(big)
        assert read(sock, len(big)) == big
        assert sock.getblocking()
        proxy.set_faults(delay=1.0)
        started = time.monotonic()
        sock.sendall(b"late")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert 0.25 < time.monotonic() - started < 0.3 + 0.2


def test_kernel_timeouts_keep_connect_errors(proxy: FaultProxy) -> None:
    from memokit.testing import free_port

    with DeadlineSocketModule().socket(socket.AF_INET, socket.SOCK_STREAM) as fresh:
        fresh.settimeout(0.2)
        with pytest.raises(ConnectionRefusedError):
            fresh.connect(("127.0.0.1", free_port()))  # nothing listens there
        assert fresh.getblocking()
        assert fresh.gettimeout() == 0.2
