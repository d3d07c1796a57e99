"""The fault-injection proxy itself (memokit.faults), against a small echo server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from memokit.faults import FaultProxy, Faults

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(*echo) as running:
        yield running


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_listens_on_a_free_loopback_port(proxy: FaultProxy) -> None:
    assert proxy.port > 0
    assert proxy.url() == f"127.0.0.1:{proxy.port}"
    assert proxy.url("redis") == f"redis://127.0.0.1:{proxy.port}"
    with connect(proxy) as sock:
        assert roundtrip(sock, b"hello") == b"hello"
    assert proxy.accepted == 1


def test_refuses_addresses_off_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("192.0.2.1", 6379)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("127.0.0.1", 6379, host="0.0.0.0")  # noqa: S104 - the refused case


def test_bad_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        Faults(delay=-1)
    with pytest.raises(ValueError, match="truncate"):
        Faults(truncate=-1)
    with pytest.raises(ValueError, match="bandwidth"):
        Faults(bandwidth=0)
    assert Faults().healthy
    assert not Faults(drop=True).healthy


def test_delay(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert roundtrip(sock, b"warm") == b"warm"
        proxy.set_faults(delay=0.1)
        started = time.monotonic()
        assert roundtrip(sock, b"slow") == b"slow"
        # Delayed on the way there and on the way back.
        assert time.monotonic() - started >= 0.2
        proxy.heal()
        started = time.monotonic()
        assert roundtrip(sock, b"fast") == b"fast"
        assert time.monotonic() - started < 0.1


def test_drop_black_holes_open_and_new_connections(proxy: FaultProxy) -> None:
    with connect(proxy, timeout=0.2) as sock:
        assert roundtrip(sock, b"before") == b"before"
        proxy.set_faults(drop=True)
        sock.sendall(b"lost")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        with connect(proxy, timeout=0.2) as fresh:  # the connect itself succeeds
            fresh.sendall(b"lost too")
            with pytest.raises(TimeoutError):
                fresh.recv(100)
        proxy.heal()
        assert roundtrip(sock, b"after") == b"after"


def test_truncate_cuts_the_reply_and_closes(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        proxy.set_faults(truncate=3)
        sock.sendall(b"abcdefgh")
        received = b""
        while chunk := sock.recv(100):
            received += chunk
        assert received == b"abc"


def test_truncate_counts_bytes_across_replies(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        proxy.set_faults(truncate=3)
        assert roundtrip(sock, b"ab") == b"ab"
        sock.sendall(b"cdef")
        received = b""
        while chunk := sock.recv(100):
            received += chunk
        assert received == b"c"


def test_truncate_to_nothing(proxy: FaultProxy) -> None:
    proxy.set_faults(truncate=0)
    with connect(proxy) as sock:
        sock.sendall(b"abc")
        assert sock.recv(100) == b""


def test_reset_aborts_open_and_new_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert roundtrip(sock, b"x") == b"x"
        proxy.set_faults(reset=True)
        deadline = time.monotonic() + 2
        with pytest.raises(ConnectionResetError):  # noqa: PT012 - the reset lands within a tick
            while time.monotonic() < deadline:
                sock.sendall(b"x")
                if not sock.recv(100):
                    break
                time.sleep(0.01)
    # A new connection is reset on arrival: seen by connect() itself when the
    # reset comes before the handshake's end is reported, else by the first read.
    with pytest.raises(ConnectionResetError), connect(proxy) as sock:
        sock.recv(100)
    proxy.heal()
    with connect(proxy) as sock:
        assert roundtrip(sock, b"back") == b"back"


def test_bandwidth_limit(proxy: FaultProxy) -> None:
    data = b"x" * 4000
    with connect(proxy) as sock:
        proxy.set_faults(bandwidth=20_000)
        started = time.monotonic()
        assert roundtrip(sock, data) == data
        # 4,000 bytes at 20,000 bytes/s in pieces of 400: the last piece leaves 0.18 s
        # after the first (the two directions overlap).
        assert time.monotonic() - started >= 0.17


def test_stop_closes_every_connection(echo: tuple[str, int]) -> None:
    proxy = FaultProxy(*echo).start()
    sock = connect(proxy)
    assert roundtrip(sock, b"x") == b"x"
    proxy.set_faults(drop=True)
    proxy.stop()
    assert proxy.open_connections == 0
    assert sock.recv(100) == b""
    sock.close()
