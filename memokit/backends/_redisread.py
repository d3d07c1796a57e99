"""Redis's reads on the hit path, and the payload rules they decode by.

redis-py runs every command through ``execute_command``: a retry wrapper (memokit
never retries: its pools are built with none), its own metrics, a check for one
command with per-connection state, response callbacks (``GET`` and ``MGET`` have
none) and a re-packing of the arguments in Python. For an ``MGET`` of 100 keys
that is about a fifth of the call on loopback. :func:`read` borrows a connection
from the same pool and sends the packed command itself, so everything the
connection does stays as it is: connecting, the deadline sockets (_deadline.py),
health checks, and disconnecting on any error or cancellation while a reply is
owed, so that a connection never goes back to the pool with a reply unread.

``get_many`` of a clean batch sends one ``MGET`` and reads its reply in key order,
without the ``{made key: key}`` and ``{made key: payload}`` dicts the shared
algorithm (_steps.py) builds for backends that answer in any order.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import redis
from redis.utils import HIREDIS_AVAILABLE

from ..framing import INT64_MAX, INT64_MIN
from ..serializers import FRAME_MAGIC, Serializer
from ._primitives import UNREADABLE, is_entry
from ._remote import deserialised, keeps_cancellation, unreadable_payload
from ._steps import concatenated

_hiredis_pack: Callable[[Any], bytes] | None = None
if HIREDIS_AVAILABLE:
    import hiredis

    _hiredis_pack = hiredis.pack_command

_loads = pickle.loads


def _packed(conn: Any, args: tuple[Any, ...]) -> Any:
    # hiredis encodes str as UTF-8: the only encoding the pools take (_redisconf.py).
    if _hiredis_pack is not None:
        return (_hiredis_pack(args),)
    return conn.pack_command(*args)


def read(client: Any, *args: Any) -> Any:
    """Send one command (``GET``, ``MGET``, a script's ``EVALSHA``) and return its reply."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a cluster client: it routes each command by its key
        return client.execute_command(*args)
    conn = pool.get_connection()
    try:
        conn.send_packed_command(_packed(conn, args))
        return conn.read_response()
    except redis.ResponseError:
        raise  # the whole reply was read: the connection is in step
    except BaseException:
        conn.disconnect()  # a reply may still be owed: never lend it out again
        raise
    finally:
        pool.release(conn)


async def aread(client: Any, *args: Any) -> Any:
    """``read`` on an asyncio client."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return await client.execute_command(*args)
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(_packed(conn, args))
        return await conn.read_response()
    except redis.ResponseError:
        raise
    except BaseException:
        await conn.disconnect(nowait=True)  # cancelled: no waiting on the socket
        raise
    finally:
        await pool.release(conn)


class ReadsInOrder:
    """RedisCache's payload rules and its in-order ``get_many``."""

    mget_in_order: ClassVar[bool] = True
    """False for a subclass whose ``_get_many`` is not one ``MGET`` (Redis Cluster)."""

    if TYPE_CHECKING:
        serializer: Serializer
        _raw_ints: bool
        _bare_pickles: bool
        _display: str
        _ignore_exc: bool

        def _reader(self) -> redis.Redis: ...
        def _areader(self, side: Any) -> Any: ...
        async def _side(self) -> Any: ...
        def _fail(self, exc: Exception) -> NoReturn: ...
        def _unreadable(self, made: str, exc: BaseException, then: str = ...) -> None: ...
        def _delete_many(self, keys: list[str]) -> None: ...
        async def _adelete_many(self, keys: list[str]) -> None: ...

    # -- payloads --------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"Redis {self._display}"

    def _encode(self, value: Any) -> Any:
        if self._raw_ints and type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return value  # redis-py sends it as decimal text; INCRBY can add to it
        return self.serializer.dumps(value)

    def _decode(self, payload: Any) -> Any:
        failed = None
        if self._bare_pickles and type(payload) is bytes and payload[:1] == b"\x80":
            # PickleSerializer.loads inlined (written out again in _in_order).
            try:
                return _loads(payload)  # pickle trusts the store (docs/security.md)
            except Exception as exc:
                failed = exc
        return self._decode_after(payload, failed)

    def _decode_after(self, payload: Any, failed: Exception | None) -> Any:
        """Decode ``payload`` the slow way; ``failed`` is what the inlined
        ``pickle.loads`` raised on it, if it ran: it never runs twice."""
        if failed is not None and payload[:2] != FRAME_MAGIC:
            raise unreadable_payload(failed, self._where) from None
        # A frame (pickle refused its first opcode, nothing ran), a raw int, or
        # another serializer's payload.
        if type(payload) is int:
            return payload  # an encoded raw int not yet sent (get_or_set's stored form)
        # Pickle at protocol 2+ and every frame start with \x80; anything else is a raw int.
        raw_int = self._raw_ints and payload[:1] != b"\x80"
        return deserialised(int if raw_int else self.serializer.loads, payload, self._where)

    def _in_order(
        self, made: list[str], keys: list[Any], payloads: list[Any]
    ) -> tuple[dict[Any, Any], list[str]]:
        """The values of an ``MGET`` reply, and the made keys that could not be read."""
        values: dict[Any, Any] = {}
        unread: list[str] = []
        bare = self._bare_pickles
        for m, key, payload in zip(made, keys, payloads, strict=True):
            if payload is None:
                continue
            failed = None
            if bare and payload[:1] == b"\x80":  # _decode's fast step, inlined
                try:
                    values[key] = _loads(payload)
                    continue
                except Exception as exc:
                    failed = exc
            try:
                values[key] = self._decode_after(payload, failed)
            except UNREADABLE as exc:
                if not is_entry(payload):
                    self._unreadable(m, exc)
                    unread.append(m)
        return values, unread

    def _batch(self, keys: Iterable[Any], version: int | None) -> list[str] | None:
        if not self.mget_in_order or type(keys) is not list:
            return None
        return concatenated(self, keys, version)  # type: ignore[arg-type]  # a BaseCache

    # -- get_many ----------------------------------------------------------------------

    def _unread(self, exc: redis.RedisError) -> dict[Any, Any]:
        if self._ignore_exc:
            return {}  # IGNORE_EXC: a failed read is a miss
        self._fail(exc)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys that are present; missing keys are left out.

        Entries that cannot be read are left out and removed, as ``get`` does.
        """
        made = self._batch(keys, version)
        if made is None:
            values: dict[Any, Any] = super().get_many(keys, version)  # type: ignore[misc]
            return values  # BaseCache's, through the shared algorithm
        try:
            payloads = read(self._reader(), "MGET", *made)
        except redis.RedisError as exc:
            return self._unread(exc)
        values, unread = self._in_order(made, keys, payloads)  # type: ignore[arg-type]
        if unread:
            self._delete_many(unread)
        return values

    @keeps_cancellation
    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Async ``get_many``."""
        made = self._batch(keys, version)
        if made is None:
            found: dict[Any, Any] = await super().aget_many(keys, version)  # type: ignore[misc]
            return found
        side = await self._side()
        try:
            payloads = await aread(self._areader(side), "MGET", *made)
        except redis.RedisError as exc:
            return self._unread(exc)
        values, unread = self._in_order(made, keys, payloads)  # type: ignore[arg-type]
        if unread:
            await self._adelete_many(unread)
        return values
