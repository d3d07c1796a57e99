"""memcached's one-key ``get``, ``set``, ``incr`` and ``decr``, written and read here.

pymemcache writes and reads every command with general code: any number of keys,
every storage verb, ``gets``, ``stats``, noreply. For one key that costs about a
fifth of a loopback round trip. The reply to one of these commands almost always
comes whole in the first read; it is parsed here, and anything else (a reply over
several reads, an error line) goes on through pymemcache's own line and value
readers from where the first read stopped, raising pymemcache's errors. The
caller (``FastPool``) closes a connection whose command raised: its stream may
hold half a reply.
"""

from __future__ import annotations

from typing import Any

# pymemcache ships no type hints (no py.typed): its names are Any here.
from pymemcache.client.base import (  # type: ignore[import-untyped]
    RECV_SIZE,
    _readline,
    _readvalue,
)
from pymemcache.exceptions import MemcacheUnknownError  # type: ignore[import-untyped]

__all__ = ["arith", "get", "store"]

_STORED = b"STORED\r\n"
_NOT_STORED = b"NOT_STORED\r\n"


def _sock(client: Any) -> Any:
    if client.sock is None:
        client._connect()
    return client.sock


def get(client: Any, key: Any, default: Any) -> Any:
    """pymemcache's ``Client.get(key, default)``."""
    name = client.check_key(key, client.key_prefix)
    sock = _sock(client)
    sock.sendall(b"get " + name + b"\r\n")
    buf = sock.recv(RECV_SIZE)
    if buf == b"END\r\n":
        return default
    end = buf.find(b"\r\n")
    if buf[:6] == b"VALUE " and end > 0:
        head = buf[:end].split()
        if len(head) == 4 and head[1] == name:
            size = int(head[3])
            start = end + 2
            if len(buf) == start + size + 7 and buf[start + size :] == b"\r\nEND\r\n":
                return client.serde.deserialize(key, buf[start : start + size], int(head[2]))
    return _get_rest(client, key, name, buf, default)


def _get_rest(client: Any, key: Any, name: bytes, buf: bytes, default: Any) -> Any:
    sock = client.sock
    result = default
    while True:
        buf, line = _readline(sock, buf)
        client._raise_errors(line, b"get")
        if line == b"END":
            if buf:
                raise MemcacheUnknownError(buf[:32])  # more than one reply: out of step
            return result
        head = line.split()
        if len(head) != 4 or head[0] != b"VALUE" or head[1] != name:
            raise MemcacheUnknownError(line[:32])
        buf, value = _readvalue(sock, buf, int(head[3]))
        result = client.serde.deserialize(key, value, int(head[2]))


def store(client: Any, verb: bytes, key: Any, value: Any, expire: int) -> bool:
    """pymemcache's ``Client.set`` (``verb`` b"set") with a reply: True when stored."""
    name = client.check_key(key, client.key_prefix)
    data, flags = client.serde.serialize(name, value)
    if not isinstance(data, bytes):
        data = str(data).encode(client.encoding)
    head = b"%b %b %d %b %d\r\n" % (
        verb,
        name,
        flags,
        client._check_integer(expire, "expire"),
        len(data),
    )
    sock = _sock(client)
    sock.sendall(head + data + b"\r\n")
    buf = sock.recv(RECV_SIZE)
    if buf == _STORED:
        return True
    if buf == _NOT_STORED:
        return False
    buf, line = _readline(sock, buf)
    client._raise_errors(line, verb)
    if buf or line not in (b"STORED", b"NOT_STORED"):
        raise MemcacheUnknownError(line[:32])
    return bool(line == b"STORED")


def arith(client: Any, verb: bytes, key: Any, delta: int) -> int | None:
    """pymemcache's ``Client.incr``/``decr`` (``verb``) with a reply: None when missing."""
    name = client.check_key(key, client.key_prefix)
    sock = _sock(client)
    sock.sendall(b"%b %b %b\r\n" % (verb, name, client._check_integer(delta, "value")))
    buf = sock.recv(RECV_SIZE)
    line = buf[:-2]
    if buf[-2:] != b"\r\n" or b"\r\n" in line:  # split over reads, or out of step
        buf, line = _readline(sock, buf)
        if buf:
            raise MemcacheUnknownError(buf[:32])
    client._raise_errors(line, verb)
    if line == b"NOT_FOUND":
        return None
    if not line.isdigit():
        raise MemcacheUnknownError(line[:32])
    return int(line)
