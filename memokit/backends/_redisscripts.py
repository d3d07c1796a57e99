"""Redis's Lua scripts (``incr``, ``get_or_set``, ``touch``), sent as ``read`` sends ``GET``.

A redis-py ``Script`` call goes through ``Redis.evalsha`` and ``execute_command``:
the same dispatch :mod:`._redisread` skips for reads (retry wrapper, metrics,
per-command checks, re-packing the arguments in Python), after a tuple of keys
and arguments is built and a ``Pipeline`` class imported on every call. On
loopback that is a large share of an ``incr``. :func:`run_script` sends the
packed ``EVALSHA`` through :func:`._redisread.read`, on a connection borrowed
from the client's pool, with the connection's own rules unchanged (connecting,
deadlines, health checks, and disconnecting on any error while a reply is owed).

A server that does not have the script (restarted, ``SCRIPT FLUSH``) answers
``NOSCRIPT`` without running anything: the script is loaded (scripts are the
server's, whichever connection loads them) and run again, as redis-py's
``Script`` does. A cluster client (no single pool) keeps redis-py's ``Script``
call, which routes by key.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError

from ._redisread import aread, read


def _evalsha(script: Any, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def run_script(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """Run ``script`` (registered on ``client``) with ``keys`` and ``args``; return its reply."""
    if getattr(client, "connection_pool", None) is None:  # a cluster client: routes by key
        return script(keys=keys, args=args)
    command = _evalsha(script, keys, args)
    try:
        return read(client, *command)
    except NoScriptError:
        # Nothing ran, and the whole error reply was read. The SHA is the text's own,
        # so loading it leaves ``script.sha`` right.
        read(client, "SCRIPT", "LOAD", script.script)
        return read(client, *command)


async def arun_script(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """``run_script`` on an asyncio client."""
    if getattr(client, "connection_pool", None) is None:
        return await script(keys=keys, args=args)
    command = _evalsha(script, keys, args)
    try:
        return await aread(client, *command)
    except NoScriptError:
        await aread(client, "SCRIPT", "LOAD", script.script)
        return await aread(client, *command)
