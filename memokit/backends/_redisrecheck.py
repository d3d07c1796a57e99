"""Tier one's re-check on Redis (``memokit.backends.tiered``): stamps, not values.

A held slot is re-checked by the SHA-1 of its payload: a Lua script compares it
with the stored value's, in Redis, and sends back only the values that changed.
While invalidations are tracked, a second script also sends each key's remaining
time to live: a copy vouched for by the tracking is served at any age, and Redis
may delete an expired key (and push its invalidation) long after it expired.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn

import redis
import redis.asyncio

from ._tierstore import SAME, same

__all__ = [
    "EXPIRING_SCRIPT",
    "UNCHANGED_SCRIPT",
    "RechecksUnchanged",
    "aexpiring",
    "answer",
    "aunchanged",
    "expiring",
    "expiring_answer",
    "stamps",
    "unchanged",
]

UNCHANGED_SCRIPT: Final = """
local out = {}
for i, key in ipairs(KEYS) do
    local value = redis.pcall('GET', key)
    if type(value) ~= 'string' then
        out[i] = 0
    elseif ARGV[i] ~= '' and redis.sha1hex(value) == ARGV[i] then
        out[i] = 1
    else
        out[i] = value
    end
end
return out
"""
"""Per key: 0 when absent, 1 when the value still has the SHA-1 given, else the
value (Lua integers never clash with values, which Redis returns as strings)."""

EXPIRING_SCRIPT: Final = """
local out = {}
for i, key in ipairs(KEYS) do
    local value = redis.pcall('GET', key)
    local ttl = -2
    if type(value) ~= 'string' then
        value = 0
    else
        ttl = redis.call('PTTL', key)
        if ARGV[i] ~= '' and redis.sha1hex(value) == ARGV[i] then
            value = 1
        end
    end
    out[2 * i - 1] = value
    out[2 * i] = ttl
end
return out
"""
"""``UNCHANGED_SCRIPT`` with each key's ``PTTL`` after its answer, read in the same
script (so of the very value answered): milliseconds left, -1 for no expiry."""


def stamps(keys: list[str], held: Mapping[str, Any]) -> list[str]:
    """The script's arguments: the SHA-1 of each held payload ("" for none)."""
    return [_sha1(held[key]) if key in held else "" for key in keys]


def answer(keys: list[str], reply: list[Any]) -> dict[str, Any]:
    """The script's reply as ``_get_many`` gives it, ``SAME`` for an unchanged key."""
    found: dict[str, Any] = {}
    for key, item in zip(keys, reply, strict=True):
        if item == 1:
            found[key] = SAME
        elif item != 0:
            found[key] = item
    return found


def unchanged(client: redis.Redis, keys: list[str], held: Mapping[str, Any]) -> dict[str, Any]:
    """The re-check on ``client`` (a Sentinel's primary too): ``SAME`` per unchanged key.

    The script is made here, once per re-check (once per bound), so a client
    replaced after a fork or by a subclass is always the one used.
    """
    script = client.register_script(UNCHANGED_SCRIPT)
    return answer(keys, script(keys=keys, args=stamps(keys, held)))


async def aunchanged(
    client: redis.asyncio.Redis, keys: list[str], held: Mapping[str, Any]
) -> dict[str, Any]:
    """The re-check on an async client (the script is sent by its SHA-1, loaded once)."""
    script = client.register_script(UNCHANGED_SCRIPT)
    return answer(keys, await script(keys=keys, args=stamps(keys, held)))


def expiring_answer(keys: list[str], reply: list[Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """``EXPIRING_SCRIPT``'s reply: ``answer``'s, and the seconds each key found has
    left (a key without an expiry has none)."""
    found = answer(keys, reply[0::2])
    ttls = {
        key: ttl / 1000
        for key, ttl in zip(keys, reply[1::2], strict=True)
        if ttl >= 0 and key in found
    }
    return found, ttls


def expiring(
    client: redis.Redis, keys: list[str], held: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, float]]:
    """:func:`unchanged` on ``client``, with each found key's seconds left to live."""
    script = client.register_script(EXPIRING_SCRIPT)
    return expiring_answer(keys, script(keys=keys, args=stamps(keys, held)))


async def aexpiring(
    client: redis.asyncio.Redis, keys: list[str], held: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, float]]:
    """:func:`expiring` on an async client."""
    script = client.register_script(EXPIRING_SCRIPT)
    return expiring_answer(keys, await script(keys=keys, args=stamps(keys, held)))


def _sha1(payload: Any) -> str:
    data = payload if isinstance(payload, bytes) else str(payload).encode()
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


class RechecksUnchanged:
    """The Redis backends' re-check primitives for tier one (``memokit.backends.tiered``).

    ``_get_unchanged`` is ``_get_many`` with ``SAME`` for a key whose stored value
    still hashes as ``held[key]`` does, compared in Redis by one script. A backend
    whose batches span servers (the cluster) sets ``one_script_batches`` false and
    reads the values, compared here.

    ``_get_expiring`` is ``_get_unchanged`` that also answers, in the same round trip,
    the seconds each key found has left to live (None: not known). A tiered cache asks
    it while its copies may be vouched for by invalidation tracking: the tracking
    pushes an expiry only once Redis deletes the key, which may be long after.
    """

    one_script_batches: ClassVar[bool] = True

    if TYPE_CHECKING:  # what the backend that mixes this in provides
        _primary: redis.Redis
        _ignore_exc: bool

        def _fail(self, exc: Exception) -> NoReturn: ...
        def _get_many(self, keys: list[str]) -> dict[str, Any]: ...
        async def _aget_many(self, keys: list[str]) -> dict[str, Any]: ...
        async def _side(self) -> Any: ...

    def _get_unchanged(self, keys: list[str], held: Mapping[str, Any]) -> dict[str, Any]:
        if not self.one_script_batches:
            return same(self._get_many(keys), held)
        try:
            return unchanged(self._primary, keys, held)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return {}
            self._fail(exc)

    async def _aget_unchanged(self, keys: list[str], held: Mapping[str, Any]) -> dict[str, Any]:
        if not self.one_script_batches:
            return same(await self._aget_many(keys), held)
        try:
            return await aunchanged((await self._side()).primary, keys, held)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return {}
            self._fail(exc)

    def _get_expiring(
        self, keys: list[str], held: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float] | None]:
        if not self.one_script_batches:
            # No tracking where a batch spans servers: the bound caps every copy.
            return self._get_unchanged(keys, held), None
        try:
            return expiring(self._primary, keys, held)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return {}, None
            self._fail(exc)

    async def _aget_expiring(
        self, keys: list[str], held: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float] | None]:
        if not self.one_script_batches:
            return await self._aget_unchanged(keys, held), None
        try:
            return await aexpiring((await self._side()).primary, keys, held)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return {}, None
            self._fail(exc)
