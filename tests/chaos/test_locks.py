"""Lock holders killed (SIGKILL) or paused (SIGSTOP): the others wait at most LOCK_TIMEOUT.

The holder is a separate interpreter started with ``python -c`` on the memokit this
test run imports. It reports on stdout once it holds the lock, then the test
signals it. On 54ac4a8 a killed filesystem holder that had forked during its hold
blocked every other process for good, a paused one blocked them while it stayed
paused, and a ``lock_lease`` waiter waited a whole lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import FileSystemCache, cached

pytestmark = pytest.mark.chaos

ENV = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}

HOLDER = """
import json, os, signal, sys, time
import memokit
from memokit import cached

mode, config = sys.argv[1], json.loads(sys.argv[2])
cache = memokit.create_cache(config)
if mode in ("flock-fork", "flock-stop"):
    cache.set("k", 1)
    with cache._directory().locked(60):
        if mode == "flock-fork":
            # A worker forked during the hold, as a pre-fork server's would be.
            pid = os.fork()
            if pid == 0:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)  # let the test read the holder's pipes to their end
                os.dup2(null, 2)
                time.sleep(120)
                os._exit(0)
            print(pid, flush=True)
            time.sleep(120)
        else:
            print("holding", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
else:
    @cached(cache=cache, key="slow", lock_lease=30)
    def slow():
        print("holding", flush=True)
        time.sleep(120)
        return "holder"

    slow()
"""

_started: list[subprocess.Popen[str]] = []
_orphans: list[int] = []


def holder(mode: str, config: dict[str, Any]) -> tuple[subprocess.Popen[str], str]:
    """Start a holder; return it and the first line it printed once it holds the lock."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, mode, json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _started.append(process)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.communicate()[1]
    return process, line.strip()


def wait_until_stopped(process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError("the holder did not stop")


@pytest.fixture(autouse=True)
def reap() -> Iterator[None]:
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()
    while _orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_orphans.pop(), signal.SIGKILL)


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# -- the filesystem backend's flock --------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_killed_flock_holder_that_forked_costs_the_others_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "cache")
    config = {"BACKEND": "filesystem", "LOCATION": root}
    process, line = holder("flock-fork", config)
    _orphans.append(int(line))  # the holder's forked worker lives on
    process.kill()
    process.communicate()
    cache = FileSystemCache(root)
    # The worker's copy of the descriptor would keep the lock held for good.
    _, elapsed = timed(lambda: cache.set("k", 2))
    assert elapsed < 1
    assert cache.incr("k") == 3


@pytest.mark.timeout(60)
def test_a_paused_flock_holder_costs_the_others_at_most_lock_timeout(tmp_path: Path) -> None:
    root = str(tmp_path / "cache")
    process, _ = holder("flock-stop", {"BACKEND": "filesystem", "LOCATION": root})
    wait_until_stopped(process)
    cache = memokit.create_cache(
        {"BACKEND": "filesystem", "LOCATION": root, "OPTIONS": {"LOCK_TIMEOUT": 1}}
    )
    value, elapsed = timed(lambda: cache.get("k"))
    assert value == 1
    assert elapsed < 0.5  # reads take no lock
    with pytest.raises(TimeoutError, match="LOCK_TIMEOUT"):
        timed(lambda: cache.set("k", 2))
    runs: list[int] = []

    @cached(cache=cache)
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    value, elapsed = timed(lambda: square(3))
    assert value == 9
    assert 0.8 < elapsed < 3  # one wait, then fail open
    value, elapsed = timed(lambda: square(3))
    assert value == 9
    assert elapsed < 0.5  # the breaker is open: no second wait
    assert runs == [3, 3]

    async def async_set() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        with pytest.raises(TimeoutError):
            await cache.aset("k", 3)
        task.cancel()
        return ticks

    assert asyncio.run(async_set()) >= 30  # the event loop went on meanwhile
    process.kill()
    process.communicate()
    cache.set("k", 4)
    assert cache.get("k") == 4


# -- lock_lease= ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["SIGKILL", "SIGSTOP"])
def test_a_lost_lock_lease_holder_costs_the_others_at_most_lock_timeout(
    make_cache: Any, how: signal.Signals
) -> None:
    cache = make_cache(OPTIONS={"LOCK_TIMEOUT": 1})
    if not cache.capabilities.cross_process:
        pytest.skip("a lock_lease across processes needs a store they share")
    # The holder keeps the backend's own OPTIONS (a Sentinel's SERVICE_NAME), not LOCK_TIMEOUT.
    options = {k: v for k, v in make_cache.config["OPTIONS"].items() if k != "LOCK_TIMEOUT"}
    config = {**make_cache.config, "OPTIONS": options}
    process, _ = holder("lease", config)
    process.send_signal(how)
    if how == signal.SIGSTOP:
        wait_until_stopped(process)
    else:
        process.communicate()

    @cached(cache=cache, key="slow", lock_lease=30)
    def slow() -> str:
        return "waiter"

    value, elapsed = timed(slow)
    assert value == "waiter"
    assert 0.8 < elapsed < 3  # waited LOCK_TIMEOUT, not the 30 s lease
