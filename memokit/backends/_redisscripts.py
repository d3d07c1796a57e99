"""Redis's Lua scripts (``incr``, ``get_or_set``, ``touch``), sent as ``read`` sends ``GET``.

A redis-py ``Script`` call goes through ``Redis.evalsha`` and ``execute_command``:
the same dispatch :mod:`._redisread` skips for reads (retry wrapper, metrics,
per-command checks, re-packing the arguments in Python), after a tuple of keys
and arguments is built and a ``Pipeline`` class imported on every call. On
loopback that is a large share of an ``incr``. :func:`run_script` borrows a
connection from the client's pool and sends the packed ``EVALSHA`` itself, with
the connection's own rules unchanged (connecting, deadlines, health checks, and
disconnecting on any error while a reply is owed).

A server that does not have the script (restarted, ``SCRIPT FLUSH``) answers
``NOSCRIPT`` without running anything: the script is loaded and run again on the
same connection, as redis-py's ``Script`` does. A cluster client (no single pool)
keeps redis-py's ``Script`` call, which routes by key.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import NoScriptError

from ._redisread import _packed


def _evalsha(script: Any, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def run_script(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """Run ``script`` (registered on ``client``) with ``keys`` and ``args``; return its reply."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a cluster client: the Script routes by key
        return script(keys=keys, args=args)
    conn = pool.get_connection()
    try:
        conn.send_packed_command(_packed(conn, _evalsha(script, keys, args)))
        try:
            return conn.read_response()
        except NoScriptError:
            # Nothing ran; the whole error reply was read. The SHA is the text's
            # own, so loading it leaves ``script.sha`` right.
            conn.send_packed_command(_packed(conn, ("SCRIPT", "LOAD", script.script)))
            conn.read_response()
            conn.send_packed_command(_packed(conn, _evalsha(script, keys, args)))
            return conn.read_response()
    except redis.ResponseError:
        raise  # the whole reply was read: the connection is in step
    except BaseException:
        conn.disconnect()  # a reply may still be owed: never lend it out again
        raise
    finally:
        pool.release(conn)


async def arun_script(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """``run_script`` on an asyncio client."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return await script(keys=keys, args=args)
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(_packed(conn, _evalsha(script, keys, args)))
        try:
            return await conn.read_response()
        except NoScriptError:
            await conn.send_packed_command(_packed(conn, ("SCRIPT", "LOAD", script.script)))
            await conn.read_response()
            await conn.send_packed_command(_packed(conn, _evalsha(script, keys, args)))
            return await conn.read_response()
    except redis.ResponseError:
        raise
    except BaseException:
        await conn.disconnect(nowait=True)  # cancelled: no waiting on the socket
        raise
    finally:
        await pool.release(conn)
