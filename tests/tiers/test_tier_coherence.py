"""Coherence across processes: what process B changes, process A sees within the bound.

Process A (this one) reads through tier one with ``BOUND`` 0.2 s; process B (a
separate interpreter, ``tier_peer.py``, without a tier) changes the shared store.
After B's operation returns, every read A *starts* later than the bound after it
must give the new answer; reads within the bound may give either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit.config import DEFAULT_CACHES

from .conftest import SHARED, second_tier

BOUND = 0.2
PEER = Path(__file__).with_name("tier_peer.py")
ENV = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}

computed = [0]


@memokit.cached(name="tiers.shared", tags=("t:{x}", "ns"))
def shared(x: int) -> tuple[str, int]:
    computed[0] += 1
    return ("a", computed[0])


class Peer:
    """Process B: one operation per call, returning when B's operation returned."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self._line() == "ready"

    settings: dict[str, Any]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line, f"the peer exited ({self.proc.wait(timeout=10)})"
        return line

    def run(self, op: str) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(op + "\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc.stdin.close()
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@pytest.fixture(scope="module", params=SHARED)
def peer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Peer]:
    """Process B on a fresh store, one per backend (starting one costs about 0.5 s)."""
    settings = second_tier(request, request.param, tmp_path_factory.mktemp("tiers"))
    started = Peer(settings)
    started.settings = settings
    try:
        yield started
    finally:
        started.close()
        memokit.configure(DEFAULT_CACHES)


Check = tuple[Callable[[], Any], Callable[[Any], bool]]


@pytest.fixture(autouse=True)
def tiered(peer: Peer) -> None:
    """Process A reads through tier one (a new one per test); on Redis, once its
    tracking is up, so every test sees the assisted case (copies vouched for by
    pushes, fast-index records that never expire) and never a race with it."""
    memokit.configure({"default": {**peer.settings, "TIER": {"BOUND": BOUND}}})
    tier = memokit.caches["default"]
    if hasattr(tier.inner, "track_invalidations"):  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while not tier.assisted:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "tracking did not come up"
            time.sleep(0.005)


def _watch(done: float, *checks: Check) -> None:
    """Read until the bound after ``done`` has passed by 0.1 s; no read that started
    after the bound may be old (``is_old``), and some must have started after it."""
    late = 0
    while True:
        for read, is_old in checks:
            start = time.monotonic()
            if start > done + BOUND + 0.1:
                assert late > 0
                return
            value = read()
            if start > done + BOUND:
                late += 1
                assert not is_old(value), f"read {start - done:.3f} s after: {value!r}"
        time.sleep(0.005)


def test_tier_one_serves_within_the_bound(peer: Peer) -> None:
    cache = memokit.cache
    tiered = memokit.caches["default"]
    if hasattr(tiered.inner, "track_invalidations"):  # type: ignore[attr-defined]
        # Redis pushes changes: once tracking is on, no reset drops the copy below.
        deadline = time.monotonic() + 5
        while not tiered.assisted and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.005)
    cache.set("k", "v0")
    # On Redis the push of this very write may drop the copy once: read again.
    for _ in range(3):
        assert cache.get("k") == "v0"
    assert tiered.tier.hits >= 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("op", ["set", "delete"])
def test_low_level_writes_of_another_process(peer: Peer, op: str) -> None:
    cache = memokit.cache
    cache.set("k", "v0")
    assert cache.get("k") == "v0"  # held in tier one
    done = peer.run("set v1" if op == "set" else "delete")
    _watch(done, (lambda: cache.get("k"), lambda value: value == "v0"))
    assert cache.get("k") == ("v1" if op == "set" else None)


@pytest.mark.parametrize("op", ["invalidate", "invalidate_all", "tag", "namespace", "clear"])
def test_invalidations_of_another_process(peer: Peer, op: str) -> None:
    cache = memokit.cache
    first = shared(1)
    assert shared(1) == first  # held in tier one
    cache.set("k", "v0")
    done = peer.run(op)
    checks: list[Check] = [(lambda: shared(1), lambda value: value == first)]
    if op == "clear":
        checks.append((lambda: cache.get("k"), lambda value: value == "v0"))
    _watch(done, *checks)
