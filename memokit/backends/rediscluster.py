"""The Redis Cluster backend (``BACKEND: "redis-cluster"``), on redis-py's cluster clients.

``LOCATION`` names seed nodes (``redis://host:port``, one or several); the client
learns the rest of the cluster from them and follows it through failovers.

Slots. Every key is sent with a hash tag before it, ``{`` + 8 hex digits + ``}``
(:data:`memokit.keys.HASH_TAG_LENGTH`), chosen by :func:`wire_key`; ``make_key``
keeps Django's format, the tag exists on the wire only. An entry made
by ``@cached``'s default key builder, its lock and its function's counter share
one tag, hence one slot and one node, so a decorated read without tags is one
round trip and ``invalidate_all`` one command. Tag counters have slots of their
own (a read with tags costs at most one more round trip per node involved; a tag
invalidation is one ``INCRBY`` on one key, atomic). Any other key (a ``key=``
template, the low-level API) is tagged by itself.

Commands over many keys are split per node, one pipeline (one round trip) per
node: in turn for the sync API, concurrently for the async one; no thread is
started. ``clear()`` empties every primary (a cluster has only database 0).
Nothing is retried, as in the single-server backend; a node that is down or
failing over is a ``BackendUnavailable`` (decorators fail open) until the
cluster has promoted a replica and the client has read the new slot map.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import os
import re
import threading
from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Final, NoReturn

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.cluster import PipelineCommand
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry

from .._secrets import redact
from ..counterkeys import FUNCTION_COUNTER
from ..exceptions import BackendError, BackendUnavailable, ImproperlyConfigured
from ..keyencoding import KEY_FORMAT
from ._redisasync import AsyncSide
from ._redisconf import GET_OR_ADD_SCRIPT, INCR_SCRIPT, PERSIST_SCRIPT, milliseconds, scrub
from ._redisread import read
from ._rediswait import ARun, Run, pipeline_runner
from ._remote import keeps_cancellation
from .base import MISSING, Capabilities
from .redis import RedisCache

# The entry part of a made key: "k2:" at its start or after a separator.
_ENTRY_START: Final = re.compile(rf"(?:^|[^0-9A-Za-z])k{KEY_FORMAT}:").search

# incr of a value INCRBY cannot add to, without WATCH (cluster pipelines hold no
# transaction): write the new value only if the old one is still there.
_SWAP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


@functools.lru_cache(maxsize=8192)
def wire_key(made: str) -> str:
    """Return the key sent to the cluster for the made key ``made``: a hash tag before it.

    An entry made by ``@cached``'s default key builder (``...k2:<identity>(<args>)``
    or ``...k2:<identity>#<digest>``), its lock, and its function's counter
    (``...memokit.fn:<identity>``) are reduced to the same text, the identity up
    to its first ``(`` or ``#``, so they share a slot; any other key is tagged by
    itself. A wrong guess (a ``KEY_PREFIX`` holding ``k2:``) costs round trips, never
    correctness: commands over several keys are split per node whatever the tags.
    """
    found = made.find(FUNCTION_COUNTER)
    if found >= 0:
        basis = _function_part(made[found + len(FUNCTION_COUNTER) :])
    else:
        entry = _ENTRY_START(made)
        basis = "=" + made if entry is None else _function_part(made[entry.end() :])
    digest = hashlib.blake2b(basis.encode("utf-8", "surrogatepass"), digest_size=4)
    return "{" + digest.hexdigest() + "}" + made


def _function_part(rest: str) -> str:
    cut = len(rest)
    for mark in "(#":
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    return "f:" + rest[:cut]


_ONE_KEY: Final = frozenset({b"GET", b"SET", b"DEL", b"EXISTS", b"PEXPIRE", b"PERSIST", b"PTTL"})
_SCRIPTS: Final = frozenset({b"EVALSHA", b"EVAL"})


def _tagged(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The command ``args`` with its keys as :func:`wire_key` makes them."""
    name = args[0]
    word = (name.encode() if isinstance(name, str) else bytes(name)).upper()
    if word in _ONE_KEY:
        return (name, wire_key(args[1]), *args[2:])
    if word in _SCRIPTS:
        count = int(args[2])
        keys = tuple(wire_key(k) for k in args[3 : 3 + count])
        return (*args[:3], *keys, *args[3 + count :])
    return args


def _by_node(manager: Any, keys: list[str]) -> dict[Any, list[tuple[list[str], list[str]]]]:
    """``keys`` grouped by the node that owns them, then by slot: (keys, wire keys)."""
    slots: dict[int, tuple[list[str], list[str]]] = {}
    for key in keys:
        wire = wire_key(key)
        group = slots.setdefault(key_slot(wire.encode()), ([], []))
        group[0].append(key)
        group[1].append(wire)
    nodes: dict[Any, list[tuple[list[str], list[str]]]] = {}
    for slot, group in slots.items():
        try:
            node = manager.get_node_from_slot(slot)
        except RedisClusterException as exc:  # the slot has no primary now
            raise redis.ConnectionError(str(exc)) from exc
        nodes.setdefault(node, []).append(group)
    return nodes


def _collect(
    found: dict[str, Any], slots: list[tuple[list[str], list[str]]], replies: list[Any]
) -> None:
    for (keys, _), payloads in zip(slots, replies, strict=True):
        for key, payload in zip(keys, payloads, strict=True):
            if payload is not None:
                found[key] = payload


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


_TOPOLOGY_ERRORS = (
    RedisClusterException,
    ClusterError,
    TryAgainError,
    AskError,  # and MOVED: a slot that moved since the map was read
)
"""What a cluster answers while a slot has no primary (failing over, not yet covered)."""


class _SyncCluster(redis.cluster.RedisCluster):
    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*_tagged(args), **kwargs)  # type: ignore[no-untyped-call]  # unannotated
        except RedisClusterException as exc:  # not a RedisError: made one, as unavailability
            raise redis.ConnectionError(str(exc)) from exc

    # redis-py splits these into per-slot pipelines, past execute_command; memokit
    # sends them for one key at a time.
    def delete(self, *keys: Any) -> int:
        return sum(int(self.execute_command("DEL", key)) for key in keys)

    def exists(self, *keys: Any) -> int:
        return sum(int(self.execute_command("EXISTS", key)) for key in keys)


class _AsyncCluster(redis.asyncio.cluster.RedisCluster):
    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*_tagged(args), **kwargs)
        except RedisClusterException as exc:
            raise redis.ConnectionError(str(exc)) from exc

    async def delete(self, *keys: Any) -> int:
        return sum([int(await self.execute_command("DEL", key)) for key in keys])

    async def exists(self, *keys: Any) -> int:
        return sum([int(await self.execute_command("EXISTS", key)) for key in keys])


async def _close_at_shutdown(
    client: redis.asyncio.cluster.RedisCluster,
) -> AsyncGenerator[None, None]:
    # As redis.py's guard: asyncio.run() closes it before the loop closes.
    try:
        yield
    finally:
        await client.aclose()


def _url_options(url: str) -> dict[str, Any]:
    """The client options a seed URL carries (credentials, TLS), without its address."""
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured(
            f"LOCATION {redact(url)}: a Redis Cluster is reached over TCP; write "
            f"redis://host:port (or rediss:// for TLS) for each seed node"
        )
    parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]  # unannotated
    options = {k: v for k, v in parsed.items() if k in ("username", "password")}
    if scheme == "rediss":
        options["ssl"] = True
    return options


class RedisClusterCache(RedisCache):
    """A cache on a Redis Cluster (seed nodes in ``LOCATION``)."""

    capabilities: ClassVar[Capabilities] = RedisCache.capabilities
    one_script_batches: ClassVar[bool] = False  # a batch spans nodes: no one script
    mget_in_order: ClassVar[bool] = False  # nor one MGET: _get_many splits it by node

    def _cluster_options(self) -> dict[str, Any]:
        options = dict(self._client_options)
        # redis-py retries a failed command ten times by default: memokit never
        # retries (a retried INCRBY counts twice); MOVED and ASK are still followed.
        options["retry"] = _no_retry()
        options.update(_url_options(self._servers[0]))
        return options

    def _seeds(self) -> list[tuple[str, int]]:
        seeds = []
        for url in self._servers:
            _url_options(url)
            parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]  # unannotated
            seeds.append((parsed.get("host", "127.0.0.1"), int(parsed.get("port", 6379))))
        return seeds

    def _use_pools(self, pools: list[redis.ConnectionPool]) -> None:
        # The pools were built to check the OPTIONS (no I/O). A cluster client
        # reads the slot map when it is made, so it is made at the first command.
        self._seeds()  # a LOCATION the cluster client cannot use raises now
        self._made: tuple[Any, dict[str, Any]] | None = None
        self._making = threading.Lock()
        self._replicas = []

    def _client(self) -> tuple[Any, dict[str, Any]]:
        made = self._made
        if made is not None:
            return made
        with self._making:
            if self._made is None:
                nodes = [redis.cluster.ClusterNode(h, p) for h, p in self._seeds()]  # type: ignore[no-untyped-call]  # unannotated
                try:
                    client: Any = _SyncCluster(startup_nodes=nodes, **self._cluster_options())
                except RedisClusterException as exc:  # no seed answered
                    raise redis.ConnectionError(str(exc)) from exc
                scripts = {
                    name: client.register_script(text)
                    for name, text in (
                        ("incr", INCR_SCRIPT),
                        ("get_or_add", GET_OR_ADD_SCRIPT),
                        ("persist", PERSIST_SCRIPT),
                        ("swap", _SWAP_SCRIPT),
                    )
                }
                self._made = (client, scripts)
            return self._made

    @property
    def _primary(self) -> Any:  # type: ignore[override]  # made on first use
        return self._client()[0]

    @property
    def _cluster(self) -> Any:
        return self._client()[0]

    @property
    def _incr_script(self) -> Any:  # type: ignore[override]  # made on first use
        return self._client()[1]["incr"]

    @property
    def _get_or_add_script(self) -> Any:  # type: ignore[override]  # made on first use
        return self._client()[1]["get_or_add"]

    @property
    def _persist_script(self) -> Any:  # type: ignore[override]  # made on first use
        return self._client()[1]["persist"]

    # -- counter bumps: on the owning node, WAIT 1 when its slot has a replica ----

    def _counter_target(self, key: str) -> tuple[Run, str, int]:
        wire = wire_key(key)
        manager = self._cluster.nodes_manager
        slot = key_slot(wire.encode())
        try:
            node = manager.get_node_from_slot(slot)
        except RedisClusterException as exc:
            raise BackendUnavailable(f"Redis Cluster {self._display}: {exc}") from None
        replicas = 1 if len(manager.slots_cache.get(slot, ())) > 1 else 0
        return pipeline_runner(node.redis_connection), wire, replicas

    async def _acounter_target(self, key: str) -> tuple[ARun, str, int]:
        client = await self._acluster()
        await client.initialize()  # the slot map, once per client
        wire = wire_key(key)
        slot = key_slot(wire.encode())
        manager = client.nodes_manager
        try:
            node = manager.get_node_from_slot(slot)
        except RedisClusterException as exc:
            raise BackendUnavailable(f"Redis Cluster {self._display}: {exc}") from None
        replicas = 1 if len(manager.slots_cache.get(slot, ())) > 1 else 0

        async def run(commands: list[tuple[Any, ...]]) -> list[Any]:
            queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
            await node.execute_pipeline(queued)
            return [command.result for command in queued]

        return run, wire, replicas

    # A bump sent on a stale slot map (a failover moved the slot, the old primary is
    # gone) is sent once more after the map is read again. Unlike ``incr()``, which
    # is never retried, a counter that moved twice invalidates the same entries.
    _STALE_MAP: Final = (MovedError, redis.ConnectionError)

    def _incr_counter(self, key: str, delta: int) -> Any:
        try:
            return super()._incr_counter(key, delta)
        except BackendError as exc:
            if not isinstance(exc.__cause__, self._STALE_MAP):
                raise
        self._forget_slots()
        return super()._incr_counter(key, delta)

    async def _aincr_counter(self, key: str, delta: int) -> Any:
        try:
            return await super()._aincr_counter(key, delta)
        except BackendError as exc:
            if not isinstance(exc.__cause__, self._STALE_MAP):
                raise
        client = await self._acluster()
        with contextlib.suppress(Exception):
            await client.nodes_manager.initialize()
        return await super()._aincr_counter(key, delta)

    def _forget_slots(self) -> None:
        # The next command reads the slot map again (as redis-py does on its errors).
        with contextlib.suppress(Exception):
            self._cluster.nodes_manager.initialize()

    def _fail(self, exc: Exception) -> NoReturn:
        if isinstance(exc, _TOPOLOGY_ERRORS):
            raise BackendUnavailable(
                f"Redis Cluster {self._display} is unavailable: {scrub(exc, self._secrets)}"
            ) from exc
        super()._fail(exc)

    # -- many keys: one pipeline per node, in turn ---------------------------------

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        # One MGET per slot, the MGETs of one node in one pipeline (one round trip),
        # the nodes in turn: lighter than redis-py's cluster pipeline (a GET per key).
        try:
            found: dict[str, Any] = {}
            for node, slots in _by_node(self._cluster.nodes_manager, keys).items():
                client = node.redis_connection
                if len(slots) == 1:  # a decorated call's keys share a slot
                    replies = [read(client, "MGET", *slots[0][1])]
                else:
                    with client.pipeline(transaction=False) as pipe:
                        for _, wires in slots:
                            pipe.execute_command("MGET", *wires)
                        replies = pipe.execute()
                _collect(found, slots, replies)
        except _ERRORS as exc:
            self._forget_slots_after(exc)
            if self._ignore_exc:
                return {}
            self._fail(exc)
        return found

    def _forget_slots_after(self, exc: BaseException) -> None:
        # Sent past redis-py's cluster client: a moved slot or a dead node is
        # told to the slot map here, as that client does on its own errors.
        if isinstance(exc, (*_TOPOLOGY_ERRORS, redis.ConnectionError, redis.TimeoutError)):
            self._forget_slots()

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        px = milliseconds(timeout)
        try:
            with self._cluster.pipeline() as pipe:
                for key, payload in items.items():
                    pipe.set(wire_key(key), payload, px=px)
                replies = pipe.execute(raise_on_error=False)
            failed = [k for k, r in zip(items, replies, strict=True) if isinstance(r, Exception)]
            if failed:
                self._delete_many(failed)  # as memcached: no old value survives a failed update
                self._log_refusal(replies)
        except _ERRORS as exc:
            self._fail(exc)
        return failed

    def _delete_many(self, keys: list[str]) -> None:
        try:
            with self._cluster.pipeline() as pipe:
                for key in keys:
                    pipe.delete(wire_key(key))
                pipe.execute()
        except _ERRORS as exc:
            self._fail(exc)

    def _clear(self) -> None:
        try:
            self._cluster.flushdb(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        except _ERRORS as exc:
            self._fail(exc)

    def _count(self) -> int:
        # DBSIZE on every primary (a replica holds the same keys), summed.
        try:
            sizes = [
                self._cluster.get_redis_connection(node).dbsize()
                for node in self._cluster.get_primaries()
            ]
        except _ERRORS as exc:
            self._fail(exc)
        return sum(int(size) for size in sizes)

    def _clear_some(self, limit: int) -> int:
        # clear() flushes every primary: so do these batches, a primary at a time. A
        # key is deleted on its own node, each in its own DEL (one multi-key DEL may not
        # cross slots), all of one node's in one pipeline.
        removed = 0
        try:
            for node in self._cluster.get_primaries():
                client = self._cluster.get_redis_connection(node)
                keys = list(itertools.islice(client.scan_iter(count=limit), limit - removed))
                if keys:
                    with client.pipeline(transaction=False) as pipe:
                        for key in keys:
                            pipe.delete(key)
                        removed += sum(int(n) for n in pipe.execute())
                if removed >= limit:
                    break
        except _ERRORS as exc:
            self._fail(exc)
        return removed

    def _incr_in_python(self, key: str, delta: int | float) -> Any:
        while True:
            payload = self._cluster.get(key)
            if payload is None:
                return MISSING
            value = self._decode(payload) + delta
            swap = self._client()[1]["swap"]
            if swap(keys=[key], args=[payload, self._encode(value)]):
                return value

    def track_invalidations(self, listener: Any, *, within: float = 1.0) -> None:
        """None: a cluster's client tracking is per node, with keys on the wire tagged and
        slots that move; memokit does not track there, and a two-tier cache in front of a
        cluster re-checks its copies within its bound (docs/tiers.md)."""
        return None

    def close(self, **kwargs: Any) -> None:
        """Close the connections to every node; the next call opens new ones."""
        made, self._made = self._made, None
        if made is not None:
            made[0].close()

    # -- async: one cluster client per event loop, nodes' pipelines concurrently ---

    async def _side(self) -> AsyncSide:
        loop = asyncio.get_running_loop()
        ident = (os.getpid(), loop)
        side = self._async_sides.get(ident)
        if side is not None:
            return side
        client = _AsyncCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in self._seeds()],
            **self._cluster_options(),
        )
        guard = _close_at_shutdown(client)
        await guard.__anext__()
        side = AsyncSide(
            primary=client,  # type: ignore[arg-type]  # the same commands, routed by slot
            replicas=[],
            incr=client.register_script(INCR_SCRIPT),
            get_or_add=client.register_script(GET_OR_ADD_SCRIPT),
            persist=client.register_script(PERSIST_SCRIPT),
            guard=guard,
        )
        with self._async_lock:
            for old in [i for i in self._async_sides if i[1].is_closed() or i[0] != ident[0]]:
                del self._async_sides[old]
            self._async_sides[ident] = side
        return side

    async def _acluster(self) -> _AsyncCluster:
        return (await self._side()).primary  # type: ignore[return-value]  # set in _side

    @keeps_cancellation
    async def _aget_many(self, keys: list[str]) -> dict[str, Any]:
        # As the sync twin, the nodes concurrently.
        client = await self._acluster()
        try:
            await client.initialize()
            groups = _by_node(client.nodes_manager, keys)

            async def ask(node: Any, slots: list[tuple[list[str], list[str]]]) -> list[Any]:
                queued = [PipelineCommand(i, "MGET", *w) for i, (_, w) in enumerate(slots)]
                await node.execute_pipeline(queued)
                for command in queued:
                    if isinstance(command.result, Exception):
                        raise command.result
                return [command.result for command in queued]

            answers = await asyncio.gather(*(ask(n, s) for n, s in groups.items()))
            found: dict[str, Any] = {}
            for slots, replies in zip(groups.values(), answers, strict=True):
                _collect(found, slots, replies)
        except _ERRORS as exc:
            if isinstance(exc, (*_TOPOLOGY_ERRORS, redis.ConnectionError, redis.TimeoutError)):
                with contextlib.suppress(Exception):
                    await client.nodes_manager.initialize()
            if self._ignore_exc:
                return {}
            self._fail(exc)
        return found

    @keeps_cancellation
    async def _aset_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        client = await self._acluster()
        px = milliseconds(timeout)
        try:
            pipe = client.pipeline()
            for key, payload in items.items():
                pipe.set(wire_key(key), payload, px=px)
            replies = await pipe.execute(raise_on_error=False)
            failed = [k for k, r in zip(items, replies, strict=True) if isinstance(r, Exception)]
            if failed:
                await self._adelete_many(failed)
                self._log_refusal(replies)
        except _ERRORS as exc:
            self._fail(exc)
        return failed

    @keeps_cancellation
    async def _adelete_many(self, keys: list[str]) -> None:
        client = await self._acluster()
        try:
            pipe = client.pipeline()
            for key in keys:
                pipe.delete(wire_key(key))
            await pipe.execute()
        except _ERRORS as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _aclear(self) -> None:
        client = await self._acluster()
        try:
            await client.flushdb(target_nodes=redis.asyncio.cluster.RedisCluster.PRIMARIES)
        except _ERRORS as exc:
            self._fail(exc)

    async def _aincr_in_python(self, side: AsyncSide, key: str, delta: int | float) -> Any:
        client = side.primary
        swap = client.register_script(_SWAP_SCRIPT)
        while True:
            payload = await client.get(key)
            if payload is None:
                return MISSING
            value = self._decode(payload) + delta
            if await swap(keys=[key], args=[payload, self._encode(value)]):
                return value

    async def aclose(self, **kwargs: Any) -> None:
        """Close the sync client and this event loop's client."""
        self.close(**kwargs)
        side = self._async_sides.pop((os.getpid(), asyncio.get_running_loop()), None)
        if side is not None:
            await side.primary.aclose()


_ERRORS = (redis.RedisError, RedisClusterException)
