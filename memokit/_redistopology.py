"""Throw-away Redis deployments for tests and benchmarks: a Cluster and a Sentinel set.

Both run real ``redis-server`` processes on free loopback ports with nothing
written to disk but the cluster's node files (in a temporary directory, removed
on exit). :func:`memokit.testing.redis_cluster` and
:func:`memokit.testing.redis_sentinel` re-export them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ServerNotFound

_NODE_TIMEOUT_MS = 1000
_DOWN_AFTER_MS = 1000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _client(port: int) -> Any:
    import redis  # only tests and benchmarks run these deployments

    return redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)


def _wait(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Anything a server that is not up yet makes redis-py raise.
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]  # a callable returning bool
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout} s")


@dataclass
class RedisNode:
    """One ``redis-server`` (or ``redis-server --sentinel``) process."""

    port: int
    args: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    client: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port``."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it answers PING."""
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, binary from PATH
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.client = _client(self.port)
        _wait(lambda: self.client.ping(), f"port {self.port} up", 10)

    def kill(self) -> None:
        """Kill the process at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.client is not None:
            self.client.close()

    def ask(self, *words: str) -> Any:
        """One command's reply (decoded by redis-py)."""
        return self.client.execute_command(*words)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = {"redis-cli": "redis-tools"}.get(name, name)
        raise ServerNotFound(
            f"{name} not found on PATH; install it with: apt-get install {package}"
        )
    return found


def _server_args(binary: str, port: int) -> list[str]:
    # A replica's first sync starts at once (the default waits 5 s for more replicas).
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip


def _synced(nodes: list[RedisNode]) -> bool:
    """Whether every replica among ``nodes`` has finished its sync with its primary."""
    infos = [n.client.info("replication") for n in nodes]
    return all(i.get("master_link_status") == "up" for i in infos if i["role"] == "slave")


@dataclass
class RedisCluster:
    """A running cluster: its nodes, and the seed URLs a ``LOCATION`` names."""

    nodes: list[RedisNode]

    @property
    def urls(self) -> list[str]:
        """Every node's URL (any of them seeds a client)."""
        return [node.url for node in self.nodes]

    def primaries(self) -> list[RedisNode]:
        """The nodes that are primaries now (alive ones only)."""
        return [n for n in self.alive() if n.client.info("replication")["role"] == "master"]

    def alive(self) -> list[RedisNode]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` with three primaries."""

        def ready() -> bool:
            alive = self.alive()
            if not all(n.client.cluster("info")["cluster_state"] == "ok" for n in alive):
                return False
            return len(self.primaries()) == 3

        _wait(ready, "the cluster was not ok", timeout)

    def wait_synced(self, timeout: float = 20.0) -> None:
        """Wait until every primary has a replica that finished its sync (WAIT 1 answers,
        and the replica may be promoted)."""

        def ready() -> bool:
            primaries = self.primaries()
            linked = all(n.client.info("replication")["connected_slaves"] == 1 for n in primaries)
            # Clients learn replicas from CLUSTER SLOTS: every node must list them there.
            listed = all(
                all(len(row) >= 4 for row in n.client.execute_command("CLUSTER SLOTS"))
                for n in self.alive()
            )
            return linked and listed and _synced(self.alive())

        _wait(ready, "the replicas did not sync", timeout)


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    """Run a six-node Redis Cluster (three primaries, three replicas) for the block."""
    binary = _binary("redis-server")
    cli = _binary("redis-cli")
    with tempfile.TemporaryDirectory(prefix="memokit-cluster-") as tmp:
        nodes = []
        for _ in range(6):
            port = _free_port()
            args = [
                *_server_args(binary, port),
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(Path(tmp) / f"nodes-{port}.conf"),
                "--cluster-node-timeout", str(_NODE_TIMEOUT_MS),
                # A bus port of its own: port + 10000 may be taken, or above 65535.
                "--cluster-port", str(_free_port()),
                "--dir", tmp,
            ]  # fmt: skip
            nodes.append(RedisNode(port, args))
        cluster = RedisCluster(nodes)
        try:
            for node in nodes:
                node.start()
            subprocess.run(  # noqa: S603 - fixed arguments
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in nodes),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
            cluster.wait_ok()
            for node in cluster.primaries():
                # CLUSTER SLOTS leaves out a replica at offset 0 (no write replicated
                # yet), and clients learn replicas from it: one write per primary.
                node.client.execute_command("FLUSHALL")
            cluster.wait_synced()
            yield cluster
        finally:
            for node in nodes:
                node.kill()


@dataclass
class RedisSentinelSet:
    """A running Sentinel set: one primary, two replicas, three sentinels."""

    service: str
    servers: list[RedisNode]
    sentinels: list[RedisNode]

    @property
    def urls(self) -> list[str]:
        """The sentinels' URLs, as a ``LOCATION`` names them."""
        return [s.url for s in self.sentinels]

    def primary_port(self) -> int:
        """The primary's port as the sentinels tell it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(Exception):  # that sentinel is down: ask the next
                return int(sentinel.client.sentinel_get_master_addr_by_name(self.service)[1])
        raise RuntimeError("no sentinel answered")

    def primary(self) -> RedisNode:
        """The primary's process."""
        port = self.primary_port()
        return next(n for n in self.servers if n.port == port)

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait until the primary has two synced replicas and every sentinel knows them."""

        def ready() -> bool:
            primary = self.primary()
            if primary.client.info("replication")["connected_slaves"] != 2:
                return False
            if not _synced(self.servers):
                return False
            return all(
                s.client.sentinel_master(self.service)["num-slaves"] >= 2
                and s.client.sentinel_master(self.service)["port"] == primary.port
                for s in self.sentinels
            )

        _wait(ready, "the Sentinel set did not settle", timeout)


@contextlib.contextmanager
def redis_sentinel(service: str = "memokit") -> Iterator[RedisSentinelSet]:
    """Run one primary, two replicas and three sentinels (quorum 2) for the block."""
    binary = _binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="memokit-sentinel-") as tmp:
        primary_port = _free_port()
        # --dir: a replica writes the RDB of its sync to disk, never in the caller's
        # working directory.
        servers = [RedisNode(primary_port, [*_server_args(binary, primary_port), "--dir", tmp])]
        for _ in range(2):
            port = _free_port()
            args = [
                *_server_args(binary, port), "--dir", tmp,
                "--replicaof", "127.0.0.1", str(primary_port),
            ]  # fmt: skip
            servers.append(RedisNode(port, args))
        sentinels = []
        for i in range(3):
            port = _free_port()
            conf = Path(tmp) / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
                f"sentinel monitor {service} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {service} {_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {service} 5000\n"
                f"sentinel parallel-syncs {service} 2\n"
            )
            sentinels.append(RedisNode(port, [binary, str(conf), "--sentinel"]))
        found = RedisSentinelSet(service, servers, sentinels)
        try:
            for node in servers:
                node.start()
            _wait(
                lambda: (
                    servers[0].client.info("replication")["connected_slaves"] == 2
                    and _synced(servers)
                ),
                "the replicas did not sync",
                20,
            )
            for node in sentinels:
                node.start()
            _wait(
                lambda: all(
                    s.client.sentinel_master(service)["num-other-sentinels"] == 2 for s in sentinels
                ),
                "the sentinels did not find each other",
                20,
            )
            found.wait_synced()
            yield found
        finally:
            for node in [*sentinels, *servers]:
                node.kill()
