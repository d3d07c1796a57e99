"""memokit.testing starts real servers on free ports and stops them."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from memokit.testing import free_port, start_server


def talk(server: Any, probe: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(probe)
        return sock.recv(64)


@pytest.mark.server
def test_redis_server_answers(redis_server: Any) -> None:
    assert talk(redis_server, b"PING\r\n").startswith(b"+PONG")
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}"


@pytest.mark.server
def test_memcached_server_answers(memcached_server: Any) -> None:
    assert talk(memcached_server, b"version\r\n").startswith(b"VERSION")


@pytest.mark.server
def test_valkey_server_answers(valkey_server: Any) -> None:
    assert talk(valkey_server, b"PING\r\n").startswith(b"+PONG")
    assert valkey_server.url == f"redis://127.0.0.1:{valkey_server.port}"


@pytest.mark.server
def test_kill_and_restart_on_the_same_port(redis_server: Any) -> None:
    port = redis_server.port
    redis_server.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    redis_server.restart()
    assert redis_server.port == port
    assert talk(redis_server, b"PING\r\n").startswith(b"+PONG")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        start_server("postgres")
