"""The async side of the Redis backend: one event loop's clients, closed with the loop.

redis-py's async connections are bound to the loop that opened them, so
:class:`memokit.backends.redis.RedisCache` keeps an :class:`AsyncSide` per loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import redis.asyncio
from redis.commands.core import AsyncScript


@dataclass
class AsyncSide:
    """The async clients and scripts of one event loop."""

    primary: redis.asyncio.Redis
    replicas: list[redis.asyncio.Redis]
    incr: AsyncScript
    get_or_add: AsyncScript
    persist: AsyncScript
    guard: AsyncGenerator[None, None]


async def disconnect_at_shutdown(clients: list[redis.asyncio.Redis]) -> AsyncGenerator[None, None]:
    # asyncio.run() closes every live async generator before it closes the loop;
    # this one uses that moment to close the loop's connections cleanly.
    try:
        yield
    finally:
        for client in clients:
            await client.connection_pool.disconnect()
