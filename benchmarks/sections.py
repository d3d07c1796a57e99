"""The sections a run can pick, each with the check that tells whether it can run yet.

A section for a memokit feature that does not exist yet is skipped with a line
saying so; when the feature lands, the check passes and the section runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cluster, decorators, expiring, footprint, ops, payloads, threads, tiers
from .stores import SERVERS
from .timing import Config

ISSUES = {"filesystem": 5, "sqlite": 5, "redis": 6, "memcached": 6}


@dataclass
class Context:
    """What sections share: the timing config, a scratch directory, running servers."""

    config: Config
    workdir: Path
    servers: dict[str, Any] = field(default_factory=dict)

    def server(self, binary: str) -> Any:
        """A running ``redis-server`` or ``memcached``, started on first use."""
        if binary not in self.servers:
            from memokit.testing import start_server

            self.servers[binary] = start_server(binary)
        return self.servers[binary]

    def server_for(self, backend: str) -> Any:
        return self.server(SERVERS[backend]) if backend in SERVERS else None

    def stop_servers(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def backend_missing(backend: str) -> str | None:
    """Why ``backend``'s section cannot run, or None."""
    from memokit.backends import BACKENDS

    if backend not in BACKENDS:
        return f"memokit has no {backend!r} backend yet (issue {ISSUES.get(backend, '?')})"
    binary = SERVERS.get(backend)
    if binary and shutil.which(binary) is None:
        return f"{binary} is not installed (apt-get install {SERVERS[backend]})"
    return None


def feature_missing(name: str, issue: int) -> Callable[[], str | None]:
    def check() -> str | None:
        import memokit

        return (
            None if hasattr(memokit, name) else f"memokit.{name} does not exist yet (issue {issue})"
        )

    return check


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    missing: Callable[[], str | None]
    run: Callable[[Context], dict[str, Any]]


def _backend_section(backend: str) -> Section:
    return Section(
        backend,
        f"Raw operations: {backend}",
        lambda: backend_missing(backend),
        lambda ctx: ops.run_backend(backend, ctx.config, ctx.workdir, ctx.server_for(backend)),
    )


def _run_threads(ctx: Context) -> dict[str, Any]:
    groups = []
    skipped = []
    for backend in threads.GROUPS:
        reason = backend_missing(backend)
        if reason:
            skipped.append(f"{backend}: {reason}")
            continue
        groups.append(threads.run_group(backend, ctx.config, ctx.workdir, ctx.server_for(backend)))
    return {"kind": "threads", "groups": groups, "skipped": skipped}


SECTIONS = [
    Section(
        "hits",
        "Memoised hits",
        feature_missing("cached", 7),
        lambda ctx: decorators.run_hits(ctx.config),
    ),
    Section(
        "cached_property",
        "cached_property hits",
        feature_missing("cached_property", 8),
        lambda ctx: decorators.run_cached_property(ctx.config),
    ),
    *(_backend_section(b) for b in ("memory", "filesystem", "sqlite", "redis", "memcached")),
    Section("threads", "Throughput with 1 and 8 threads", lambda: None, _run_threads),
    Section(
        "stampede",
        "Cold-key stampede",
        feature_missing("cached", 7),
        lambda ctx: decorators.run_stampede(ctx.config),
    ),
    Section(
        "expiring",
        "Hot key expiring",
        feature_missing("cached", 7),
        lambda ctx: expiring.run(ctx.config),
    ),
    Section(
        "stats",
        "Statistics on the hit path",
        feature_missing("stats", 20),
        lambda ctx: decorators.run_stats(ctx.config, ctx.workdir),
    ),
    Section(
        "payloads",
        "Payloads: signing and compression",
        lambda: backend_missing("redis") or backend_missing("sqlite"),
        lambda ctx: payloads.run(ctx.config, ctx.workdir, ctx.server("redis-server")),
    ),
    Section(
        "cluster",
        "Redis Cluster beside a single server",
        lambda: (
            backend_missing("redis-cluster")
            or backend_missing("redis")
            or (None if shutil.which("redis-cli") else "redis-cli is not installed")
        ),
        lambda ctx: cluster.run(ctx.config, ctx.server("redis-server")),
    ),
    Section(
        "tiers",
        "Two tiers: tier one in front of Redis",
        lambda: backend_missing("redis"),
        lambda ctx: tiers.run(ctx.config, ctx.server("redis-server")),
    ),
    Section(
        "footprint",
        "Memory per entry",
        lambda: None,
        lambda ctx: footprint.run(ctx.config),
    ),
]
"""Every section, in the order a run goes through them and the page shows them."""

BY_NAME = {s.name: s for s in SECTIONS}
