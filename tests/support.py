"""Helpers that test modules in different directories share (the Redis tracking tests
of tests/backends and tests/tiers): waiting for a condition, checks in a forked child,
waiting for tier one to have been told of earlier writes."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any


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


def settle_pushes(tiered: Any, writer: Any, timeout: float = 5.0) -> None:
    """Return once the invalidation of every write ``writer`` made so far has reached
    ``tiered``'s tier one (Redis tracking).

    Those pushes come on their own time: one landing after a read would drop the copy
    a test is about to look at, or drop one for another reason than the test's. Redis
    sends them in the order of the writes, so once a fresh marker's push has reached
    tier one, every earlier one has too.
    """
    key = f"settle-{uuid.uuid4().hex}"
    marker = tiered.make_key(key)
    seen = threading.Event()
    forget_local = tiered.forget_local

    def recording(made_keys: Iterable[str]) -> None:
        made = list(made_keys)
        forget_local(made)
        if marker in made:
            seen.set()

    tiered.forget_local = recording
    try:
        writer.set(key, 1)
        assert seen.wait(timeout), "the marker's invalidation never reached tier one"
    finally:
        tiered.forget_local = forget_local
    writer.delete(key)  # out of the keyspace tests count (its push drops nothing held)
