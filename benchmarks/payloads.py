"""Payload options side by side (issue 17): signed against plain pickle, compressed against not.

- a 1 KiB dict, ``get`` and ``set``, on SQLite and Redis: plain pickle, then signed pickle;
  beside the ``get`` s, the floor of any signed read: the plain ``get`` followed by one
  HMAC-SHA256 check of the signed payload, with the stdlib's cheapest route (the keyed
  states made once, copied per check), which no signed read can go under;
- a 64 KiB value (500 small dicts) on Redis, ``get`` and ``set``: uncompressed, zlib, zstd,
  on loopback and through the fault-injection proxy limited to 100 Mbit/s.

Each group's candidates are memokit caches on one store, differing only in ``OPTIONS``;
"zlib" deflates with zlib-ng where it is installed (the ``bench`` extra pins it), as
memokit does for its users.
The stored size of the large value under each compressor is recorded too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from .ops import fmt_ns
from .timing import Candidate, Config, measure

SMALL = {f"field_{i:02d}": f"value number {i:04d} of the record" for i in range(24)}
"""About 1 KiB pickled."""
LARGE = [
    {
        "id": i,
        "name": f"customer {i}",
        "email": f"customer{i}@example.com",
        "city": ("Lyon", "Oslo", "Porto", "Quito")[i % 4],
        "score": round(i * 1.37, 2),
        "tags": ["new", "active"] if i % 3 else ["active"],
        "active": i % 2 == 0,
        "note": f"joined in {2000 + i % 25}, prefers to be reached by {('email', 'phone')[i % 2]}",
    }
    for i in range(500)
]
"""500 small dicts: about 64 KiB pickled."""

MBIT_100 = 100_000_000 / 8
"""100 Mbit/s in bytes per second."""

_COMPRESSORS = (
    ("uncompressed", {}),
    ("zlib", {"COMPRESSOR": "zlib"}),
    ("zstd", {"COMPRESSOR": "zstd"}),
)


def _cache(backend: str, location: str, options: dict[str, Any]) -> Any:
    import memokit

    return memokit.create_cache(
        {"BACKEND": backend, "LOCATION": location, "TIMEOUT": 300, "OPTIONS": options}
    )


HMAC_FLOOR = "pickle + HMAC check (floor)"


def _hmac_check(secret: bytes, payload: bytes) -> Any:
    """A function checking ``payload``'s trailing HMAC-SHA256 under ``secret`` (RFC 2104,
    the two keyed states made once): the cost a signed read adds at the least."""
    key = secret.ljust(hashlib.sha256().block_size, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    size = hashlib.sha256().digest_size

    def check(data: bytes = payload) -> bool:
        mac = inner.copy()
        mac.update(data[:-size])
        out = outer.copy()
        out.update(mac.digest())
        return hmac.compare_digest(out.digest(), data[-size:])

    return check


def _group(
    op: str,
    caches: list[tuple[str, Any]],
    value: Any,
    config: Config,
    floor: Candidate | None = None,
) -> dict[str, Any]:
    candidates = []
    for i, (name, cache) in enumerate(caches):
        key = f"payload:{op}:{i}"
        cache.set(key, value)
        stmt = "c.get(K)" if op.split("_")[1] == "get" else "c.set(K, V)"
        candidates.append(Candidate(name, "memokit", stmt, {"c": cache, "K": key, "V": value}))
    if floor is not None:
        candidates.append(floor)
    results = measure(candidates, config)
    print(f"  {op:<26}" + "  ".join(f"{r['name']}: {fmt_ns(r['median'])}" for r in results))
    return {"op": op, "results": results}


def memokit_signed_payload(secret: str) -> bytes:
    """What memokit stores for the 1 KiB dict under ``SECRET`` (a frame, its HMAC last)."""
    from memokit.framing import build_serializer

    return build_serializer(None, secret=secret).dumps(SMALL)


def run(config: Config, workdir: Path, redis_server: Any) -> dict[str, Any]:
    """Time every group; return them with the large value's stored sizes."""
    from memokit.faults import FaultProxy

    secret = secrets.token_hex(32)
    check = _hmac_check(secret.encode(), memokit_signed_payload(secret))
    groups = []
    made: list[Any] = []
    proxy = None
    try:
        for backend, location in (
            ("sqlite", str(workdir / "payloads.sqlite3")),
            ("redis", f"{redis_server.url}/3"),
        ):
            pair = [
                ("pickle", _cache(backend, location, {})),
                ("signed pickle", _cache(backend, location, {"SECRET": secret})),
            ]
            made += [c for _, c in pair]
            for op in ("get", "set"):
                floor = None
                if op == "get":
                    plain = pair[0][1]
                    plain.set("payload:floor", SMALL)
                    floor = Candidate(
                        HMAC_FLOOR,
                        "floor",
                        "c.get(K); check()",
                        {"c": plain, "K": "payload:floor", "check": check},
                    )
                    assert check(), "the floor's check must pass, as a signed read's does"
                groups.append(_group(f"{backend}_{op}_1k", pair, SMALL, config, floor))
        proxy = FaultProxy(redis_server.host, redis_server.port).start()
        sizes = {}
        for where, url in (
            ("loopback", f"{redis_server.url}/3"),
            ("100mbit", f"{proxy.url('redis')}/3"),
        ):
            trio = [(name, _cache("redis", url, opts)) for name, opts in _COMPRESSORS]
            made += [c for _, c in trio]
            if where == "100mbit":
                proxy.set_faults(bandwidth=MBIT_100)
            for op in ("get", "set"):
                groups.append(_group(f"redis_{op}_64k_{where}", trio, LARGE, config))
            sizes = {name: len(cache.serializer.dumps(LARGE)) for name, cache in trio}
    finally:
        for cache in made:
            cache.close()
        if proxy is not None:
            proxy.stop()
    return {"kind": "payloads", "groups": groups, "stored_bytes": sizes}
