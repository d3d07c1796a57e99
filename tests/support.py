"""Helpers that test modules in different directories share (the Redis tracking tests
of tests/backends and tests/tiers): waiting for a condition, checks in a forked child."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def until(check: Callable[[], object], timeout: float, what: str, *, poll: float = 0.002) -> None:
    """Return once ``check()`` is true; raise AssertionError naming ``what`` after ``timeout``
    seconds. ``poll``: the sleep between checks (0 only yields to other threads)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def in_forked_child(act: Callable[[], None]) -> None:
    """Run ``act()`` in a forked child and wait for it; what it raised (its repr) fails
    the parent's test. The child leaves with ``os._exit``: nothing of the parent's runs there."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        report = "ok"
        try:
            act()
        except BaseException as exc:  # reported to the parent
            report = repr(exc)
        os.write(write, report.encode()[:1000])
        os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            assert pipe.read().decode() == "ok"
    finally:
        os.waitpid(pid, 0)
