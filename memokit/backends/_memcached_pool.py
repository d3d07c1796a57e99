"""One memcached server's connections: a pool that costs a deque operation per command.

pymemcache's ``PooledClient`` is thread-safe, but each command runs a generator
context manager and takes the pool's lock twice (about 1.6 µs, a tenth of a
loopback ``get``). :class:`FastPool` keeps its constructor, its options and its
pool for the commands memokit never sends, and runs the others on a connection
popped off a free list.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Any

# pymemcache ships no type hints (no py.typed): its names are Any here.
from pymemcache.client.base import (  # type: ignore[import-untyped]
    RECV_SIZE,
    PooledClient,
    _readline,
    _readvalue,
)
from pymemcache.exceptions import MemcacheUnknownError  # type: ignore[import-untyped]


class FastPool(PooledClient):  # type: ignore[misc]  # pymemcache's classes are Any here
    """``PooledClient`` whose commands take an idle connection from a free list.

    pymemcache's pool runs a generator context manager and takes its lock twice
    per command: about 1.6 µs, a tenth of a loopback ``get``. Here a command pops
    an idle client off a deque and pushes it back (both atomic, no lock); a
    client whose command raised is closed, never reused (its socket may hold half
    a reply), as pymemcache's ``destroy_on_fail`` does. Used only with pymemcache's
    default pool settings: ``max_pool_size``, ``pool_idle_timeout`` or
    ``lock_generator`` keep its own pool. Other commands go through that pool.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle: collections.deque[Any] = collections.deque()

    def _borrow(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._create_client()

    def _dropped(self, client: Any) -> None:
        with contextlib.suppress(Exception):  # closing a broken socket can fail too
            client.close()

    def get(self, key: Any, default: Any = None) -> Any:
        """``get`` on an idle connection."""
        client = self._borrow()
        try:
            result = _get(client, key, default)
        except BaseException:
            self._dropped(client)
            raise
        self._idle.append(client)
        return result

    def close(self) -> None:
        """Close the idle connections and pymemcache's pool."""
        idle = self._idle
        while idle:
            try:
                client = idle.pop()
            except IndexError:  # taken by another thread meanwhile
                break
            self._dropped(client)
        super().close()

    disconnect_all = close


def _get(client: Any, key: Any, default: Any) -> Any:
    """pymemcache's ``Client.get(key, default)``, for the reply that comes in one read.

    pymemcache reads every reply with a general loop (any number of keys, ``gets``,
    ``stats``): a fifth of a loopback ``get``. A one-key reply, ``END`` or one value
    then ``END``, almost always comes whole in the first read; it is parsed here, and
    anything else goes on through pymemcache's own readers from where it stopped.
    """
    name = client.check_key(key, client.key_prefix)
    if client.sock is None:
        client._connect()
    sock = client.sock
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
    # The general case, as pymemcache's _fetch_cmd reads it: a reply split over
    # reads, an error line, or anything unexpected (which raises).
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


def _pooled(name: str) -> Any:
    def call(self: FastPool, *args: Any, **kwargs: Any) -> Any:
        client = self._borrow()
        try:
            result = getattr(client, name)(*args, **kwargs)
        except BaseException:
            self._dropped(client)
            raise
        self._idle.append(client)
        return result

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}`` on an idle connection."
    return call


for _name in (
    "get_many",
    "gets",
    "set",
    "set_many",
    "add",
    "cas",
    "touch",
    "delete",
    "delete_many",
    "incr",
    "decr",
    "flush_all",
):
    setattr(FastPool, _name, _pooled(_name))
FastPool.get_multi = FastPool.get_many
FastPool.set_multi = FastPool.set_many
FastPool.delete_multi = FastPool.delete_many
