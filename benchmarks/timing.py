"""Timing: calibrated, interleaved repeats of one statement per candidate; medians.

The method follows the project's performance notes: every candidate of a group
is calibrated to about the same time per repeat, then the repeats run
round-robin across the candidates (a noise burst from a neighbour hits every
candidate of a round alike), and a figure is the median of the repeats. Ratios
are only ever taken between candidates of the same group in the same run.
"""

from __future__ import annotations

import itertools
import statistics
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("memokit", "django", "peer", "floor")
"""What a candidate is: memokit itself, Django's matching piece, another peer, or the floor."""


@dataclass(frozen=True)
class Config:
    """How long to measure: set once per run from ``--quick`` or the full defaults."""

    repeats: int
    target_s: float  # time per repeat and candidate
    thread_s: float  # one throughput point
    thread_repeats: int
    stampede_trials: int
    footprint_entries: int
    expiring_trials: int = 1  # about 0.5 s per trial and candidate

    @classmethod
    def full(cls) -> Config:
        return cls(7, 0.1, 1.0, 3, 3, 100_000, 2)

    @classmethod
    def quick(cls) -> Config:
        return cls(3, 0.02, 0.25, 1, 1, 100_000, 1)


@dataclass
class Candidate:
    """One thing to time: ``stmt`` runs with ``ns`` as its globals.

    ``prepare(n)`` runs untimed before every batch of ``n`` calls and may put
    names into ``ns`` (fresh keys, for example); ``chunk`` bounds the batch.
    """

    name: str
    role: str
    stmt: str
    ns: dict[str, Any]
    prepare: Callable[[int], None] | None = None
    chunk: int = 2_000_000
    timer: timeit.Timer = field(init=False, repr=False)
    wall: float = field(init=False, default=0.0)
    """Seconds the last ``run`` took, preparation included."""
    first_sample: float | None = field(init=False, default=None)
    """ns of a calibration run that was already a whole repeat, kept as a sample."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        self.timer = timeit.Timer(self.stmt, globals=self.ns)

    def run(self, n: int) -> float:
        """Seconds taken by ``n`` calls (preparation excluded)."""
        start = time.perf_counter()
        total = 0.0
        done = 0
        while done < n:
            batch = min(self.chunk, n - done)
            if self.prepare is not None:
                self.prepare(batch)
            total += self.timer.timeit(batch)  # timeit turns the GC off while timing
            done += batch
        self.wall = time.perf_counter() - start
        return total


def calibrate(candidate: Candidate, target_s: float, max_calls: int = 2_000_000) -> int:
    """Number of calls whose run, preparation included, takes about ``target_s``; at least 1."""
    n = 1
    while True:
        timed = candidate.run(n)
        # Preparation counts here: a delete that needs a slow set per call must not
        # make the run spend minutes preparing.
        elapsed = candidate.wall
        if elapsed >= target_s / 5 or n >= max_calls:
            break
        n *= 10 if elapsed < target_s / 50 else 2
    if n == 1 and timed >= target_s:
        # One call already fills a repeat: this run is a whole sample, keep it
        # (a set_many of 1,000 files takes seconds; repeating it once more is waste).
        candidate.first_sample = timed * 1e9
    per_call = elapsed / n
    return max(1, min(max_calls, round(target_s / per_call) if per_call > 0 else max_calls))


def measure(candidates: list[Candidate], config: Config) -> list[dict[str, Any]]:
    """Median ns per call of each candidate, repeats interleaved across them."""
    calls = [calibrate(c, config.target_s) for c in candidates]
    samples = [[c.first_sample] if c.first_sample else [] for c in candidates]
    k = len(candidates)
    for r in range(config.repeats):
        # Rotate the order so that no candidate always runs first after a pause.
        for i in itertools.chain(range(r % k, k), range(r % k)):
            if len(samples[i]) < config.repeats:
                samples[i].append(candidates[i].run(calls[i]) * 1e9 / calls[i])
    return [
        {
            "name": c.name,
            "role": c.role,
            "median": statistics.median(s),
            "spread": round(spread(s), 3),
            "samples": [round(x, 2) for x in s],
            "calls": n,
        }
        for c, s, n in zip(candidates, samples, calls, strict=True)
    ]


def spread(samples: list[float]) -> float:
    """(max - min) / median of one candidate's repeats."""
    med = statistics.median(samples)
    return (max(samples) - min(samples)) / med if med else 0.0
