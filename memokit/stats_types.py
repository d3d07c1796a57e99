"""What ``f.stats()`` and :func:`memokit.stats.shared_stats` return: :class:`Stats`
and its :class:`ComputeTime`, and the names their counters are stored under."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

from .fnstate import _BUCKETS, ErrorCounts

FIELDS: Final = (
    "hits",
    "misses",
    "stale_hits",
    "refreshes",
    "refresh_failures",
    "early_recomputations",
    "backend_errors",
    "value_errors",
    "tier_hits",
    "compute_count",
    "compute_ns",
    *(f"compute_le_{i}" for i in range(_BUCKETS)),
)
"""The integer counters of one function, as stored in the backend (see :func:`shared_stats`)."""


@dataclass(frozen=True)
class ComputeTime:
    """How long the function ran on misses and refreshes."""

    count: int = 0
    """Computations timed (finished ones; a function that raised is not timed)."""
    total: float = 0.0
    """Seconds, summed."""
    buckets: tuple[int, ...] = (0,) * _BUCKETS
    """Computations per bucket: ``buckets[i]`` took at most ``BOUNDS[i]`` seconds and
    more than ``BOUNDS[i - 1]``; the last one took more than ``BOUNDS[-1]``."""

    @property
    def mean(self) -> float | None:
        """Seconds per computation, or None before the first."""
        return self.total / self.count if self.count else None

    def __add__(self, other: ComputeTime) -> ComputeTime:
        return ComputeTime(
            self.count + other.count,
            self.total + other.total,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )


@dataclass(frozen=True)
class Stats:
    """Statistics of one decorated function: of this process, or totals of all processes."""

    hits: int = 0
    """Calls served from the cache (a fresh entry, or another caller's computation)."""
    misses: int = 0
    """Calls that ran the function (``refresh()`` included)."""
    stale_hits: int = 0
    """Calls served an expired entry while it was recomputed (freshness policies)."""
    refreshes: int = 0
    """Entries recomputed ahead of or after their expiry while served stale."""
    refresh_failures: int = 0
    """Such recomputations that raised (the stale value stayed)."""
    early_recomputations: int = 0
    """Entries recomputed early, before their expiry (probabilistic early expiry)."""
    backend_errors: int = 0
    """Backend failures: connect, timeout, disk full, locked database."""
    value_errors: int = 0
    """Value failures: an unreadable entry, a value too large, a result the serializer refused."""
    tier_hits: int = 0
    """Hits whose entry and counters tier one held (no round trip; docs/tiers.md); counted
    in ``hits`` too."""
    compute: ComputeTime = ComputeTime()
    """Time the function ran on misses."""
    shared: bool = False
    """Whether these counts are added to totals in the backend (see ``sharing``)."""
    sharing: str = ""
    """Whether and how the counts are shared, in words; why not, when they are not."""

    @property
    def errors(self) -> ErrorCounts:
        """Backend and value errors, as ``cache_info().errors`` gives them."""
        return ErrorCounts(self.backend_errors, self.value_errors)

    @property
    def calls(self) -> int:
        """Hits, stale hits and misses."""
        return self.hits + self.stale_hits + self.misses

    @property
    def hit_ratio(self) -> float | None:
        """The share of calls served from the cache (stale hits count), None before any."""
        calls = self.calls
        return (self.hits + self.stale_hits) / calls if calls else None

    def __add__(self, other: Stats) -> Stats:
        counts = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("compute", "shared", "sharing")
        }
        return Stats(
            **counts,
            compute=self.compute + other.compute,
            shared=self.shared and other.shared,
            sharing=self.sharing if self.sharing == other.sharing else "",
        )

    def as_dict(self) -> dict[str, int]:
        """The counters by their stored names (:data:`FIELDS`)."""
        counts = {f: getattr(self, f) for f in FIELDS[:9]}
        counts["compute_count"] = self.compute.count
        counts["compute_ns"] = round(self.compute.total * 1e9)
        for i, n in enumerate(self.compute.buckets):
            counts[f"compute_le_{i}"] = n
        return counts

    @classmethod
    def from_dict(cls, counts: dict[str, int], **extra: Any) -> Stats:
        """Statistics from counters by their stored names (missing ones are 0)."""
        compute = ComputeTime(
            counts.get("compute_count", 0),
            counts.get("compute_ns", 0) / 1e9,
            tuple(counts.get(f"compute_le_{i}", 0) for i in range(_BUCKETS)),
        )
        return cls(
            hits=counts.get("hits", 0),
            misses=counts.get("misses", 0),
            stale_hits=counts.get("stale_hits", 0),
            refreshes=counts.get("refreshes", 0),
            refresh_failures=counts.get("refresh_failures", 0),
            early_recomputations=counts.get("early_recomputations", 0),
            backend_errors=counts.get("backend_errors", 0),
            value_errors=counts.get("value_errors", 0),
            tier_hits=counts.get("tier_hits", 0),
            compute=compute,
            **extra,
        )
