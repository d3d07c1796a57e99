"""Process B of the coherence tests: runs one operation per line of stdin.

Started as a script (``python tier_peer.py SETTINGS``); prints ``ready`` and then,
for each command, the ``time.monotonic()`` at which the operation returned (the
clock is system-wide on Linux, so process A compares it with its own). Without a
tier: a process that knows nothing of tier one writes the same store.
"""

from __future__ import annotations

import json
import sys
import time

import memokit


@memokit.cached(name="tiers.shared", tags=("t:{x}", "ns"))
def shared(x: int) -> tuple[str, int]:
    return ("peer", x)


def main() -> None:
    memokit.configure({"default": json.loads(sys.argv[1])})
    cache = memokit.cache
    print("ready", flush=True)
    for line in sys.stdin:
        op, _, arg = line.strip().partition(" ")
        if op == "set":
            cache.set("k", arg)
        elif op == "delete":
            cache.delete("k")
        elif op == "invalidate":
            shared.invalidate(1)
        elif op == "invalidate_all":
            shared.invalidate_all()
        elif op == "tag":
            memokit.invalidate_tags("t:1")
        elif op == "namespace":
            memokit.incr_version("ns")
        elif op == "clear":
            cache.clear()
        elif op == "quit":
            return
        else:
            raise SystemExit(f"unknown op {op!r}")
        print(repr(time.monotonic()), flush=True)


if __name__ == "__main__":
    main()
