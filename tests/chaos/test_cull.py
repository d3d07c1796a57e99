"""The filesystem backend's entry bound with four writer processes, one deleting the others'.

The documented bound: ``MAX_ENTRIES`` plus ``MAX_ENTRIES / 8`` (at least 16) per
writing process. Each writer is a separate interpreter driven by the test, one
command per line, so the phases that broke the bound on 54ac4a8 (one process
deletes the entries the others made, then everyone writes) run in a fixed order.
Every writer lists the directory after each of its writes and reports the largest
count it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import memokit

pytestmark = pytest.mark.chaos

ENV = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
MAX_ENTRIES = 300
WRITERS = 4
BOUND = MAX_ENTRIES + WRITERS * max(16, MAX_ENTRIES // 8)

WRITER = """
import json, os, sys
import memokit

location, max_entries = sys.argv[1], int(sys.argv[2])
cache = memokit.create_cache(
    {"BACKEND": "filesystem", "LOCATION": location, "OPTIONS": {"MAX_ENTRIES": max_entries}}
)
largest = 0
for line in sys.stdin:
    command, prefix, start, stop = line.split()
    keys = [f"{prefix}{i}" for i in range(int(start), int(stop))]
    if command == "write":
        for key in keys:
            cache.set(key, key)
            largest = max(largest, sum(n.endswith(".mkc") for n in os.listdir(location)))
    else:
        cache.delete_many(keys)
    print(json.dumps(largest), flush=True)
"""


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    location = str(tmp_path / "cache")
    memokit.create_cache({"BACKEND": "filesystem", "LOCATION": location})  # make it first
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, location, str(MAX_ENTRIES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(WRITERS)
    ]
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def run(processes: list[subprocess.Popen[str]], commands: list[str | None]) -> list[int]:
    """Send each process its command (None: nothing) at once; return the counts seen."""
    for process, command in zip(processes, commands, strict=True):
        if command is not None:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()
    seen = []
    for process, command in zip(processes, commands, strict=True):
        if command is not None:
            assert process.stdout is not None
            seen.append(json.loads(process.stdout.readline()))
    return seen


@pytest.mark.timeout(60)
def test_four_writers_one_deleting_the_others_entries_stay_within_the_bound(
    writers: list[subprocess.Popen[str]],
) -> None:
    deleter = 0
    largest = 0
    for phase in range(2):
        # Everyone writes; the deleter removes what the others wrote (as an
        # invalidation would); the others fill the directory again; then the deleter
        # writes. On 54ac4a8 the deleter counted the others' entries it removed as
        # its own and did not list the directory again before it had added as many.
        seen = run(writers, [f"write p{phase}a{n}- 0 150" for n in range(WRITERS)])
        for n in range(WRITERS):
            if n != deleter:
                run(writers, [f"delete p{phase}a{n}- 0 150"] + [None] * (WRITERS - 1))
        seen += run(writers, [None] + [f"write p{phase}b{n}- 0 150" for n in range(1, WRITERS)])
        seen += run(writers, [f"write p{phase}c- 0 300"] + [None] * (WRITERS - 1))
        largest = max(largest, *seen)
    assert largest <= BOUND, f"{largest} entries; the bound is {BOUND}"
