"""Tier one's re-check on memcached (``memokit.backends.tiered``): cas tokens, not values.

memcached 1.6's meta command ``mg <key> c`` answers a key's cas token without its
value; every store, ``incr``, ``decr`` and ``touch`` gives the item a new one. So
a slot held with a cas token is re-checked by one pipelined request of ``mg``
commands closed by ``mn`` (one round trip per server for the batch), and only the
keys whose token moved are read again, with their values (``mg <key> c f v``), in
a second request. pymemcache has no meta API: the requests are written and read
here, on one connection borrowed from the backend's pool, with pymemcache's own
line and value readers (and the socket's deadline per request, ``_deadline``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

# pymemcache ships no type hints (no py.typed): its names are Any here.
from pymemcache.client.base import _readline, _readvalue  # type: ignore[import-untyped]
from pymemcache.exceptions import MemcacheUnknownError  # type: ignore[import-untyped]

from ._tierstore import SAME

__all__ = ["NoMeta", "on_connection", "stamped"]

T = TypeVar("T")


_GET = b"mg "


class NoMeta(MemcacheUnknownError):  # type: ignore[misc]  # pymemcache's classes are Any here
    """The server does not know meta commands (memcached before 1.6)."""


def on_connection(pool: Any, func: Callable[..., T], *args: Any) -> T:
    """``func(connection, *args)`` on an idle connection of ``pool`` (a ``FastPool`` or
    pymemcache's ``PooledClient``); a connection whose command raised is not reused."""
    borrow = getattr(pool, "_borrow", None)
    if borrow is None:
        with pool.client_pool.get_and_release(destroy_on_fail=True) as conn:
            return func(conn, *args)
    conn = borrow()
    try:
        result = func(conn, *args)
    except BaseException:
        pool._dropped(conn)
        raise
    pool._idle.append(conn)
    return result


def stamped(
    conn: Any, keys: list[str], stamps: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(found, cas tokens seen)`` of ``keys`` on one connection: ``SAME`` for a key
    whose token is still the one in ``stamps``, the value (read again) for the others."""
    found: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    changed = _request(conn, keys, stamps, found, seen)
    if changed:
        _request(conn, changed, {}, found, seen)
    return found, seen


def _request(
    conn: Any,
    keys: list[str],
    stamps: Mapping[str, Any],
    found: dict[str, Any],
    seen: dict[str, Any],
) -> list[str]:
    names = [conn.check_key(key, conn.key_prefix) for key in keys]
    parts = [
        _GET + name + (b" c\r\n" if key in stamps else b" c f v\r\n")
        for key, name in zip(keys, names, strict=True)
    ]
    parts.append(b"mn\r\n")
    changed = []
    try:
        if conn.sock is None:
            conn._connect()
        sock = conn.sock
        if sock is None:  # pymemcache's _connect() sets it or raises
            raise MemcacheUnknownError(b"no connection")
        sock.sendall(b"".join(parts))
        buf = b""
        for key, name in zip(keys, names, strict=True):
            buf, line = _readline(sock, buf)
            if line == b"EN":
                continue
            if line == b"ERROR":  # an unknown command
                raise NoMeta(line)  # absent, or expired: the server's clock
            head, _, rest = line.partition(b" ")
            if head == b"HD":
                cas = _flag(rest.split(), b"c", line)
                if cas == stamps[key]:
                    found[key] = SAME
                    seen[key] = cas
                else:
                    changed.append(key)
            elif head == b"VA":
                size, *flags = rest.split()
                buf, value = _readvalue(sock, buf, int(size))
                found[key] = conn.serde.deserialize(name, value, int(_flag(flags, b"f", line)))
                seen[key] = _flag(flags, b"c", line)
            else:
                raise MemcacheUnknownError(line[:32])
        buf, line = _readline(sock, buf)
        if line != b"MN" or buf:
            raise MemcacheUnknownError(line[:32])
    except Exception:
        conn.close()  # the stream may hold half a reply
        raise
    return changed


def _flag(flags: list[bytes], letter: bytes, line: bytes) -> bytes:
    for flag in flags:
        if flag[:1] == letter:
            return flag[1:]
    raise MemcacheUnknownError(line[:32])
