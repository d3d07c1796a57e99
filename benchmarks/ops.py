"""Raw operations per backend: every store of ``stores.BUILDERS[backend]``, op by op."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from .stores import BUILDERS, OPS, SIZES, Store
from .timing import Candidate, Config, measure

_fresh = itertools.count()


def _namespace(store: Store, tag: str) -> dict[str, Any]:
    ref = store.ref
    ns: dict[str, Any] = {
        "c": store.client,
        **store.helpers,
        "K": ref(f"{tag}:hit"),
        "M": ref(f"{tag}:miss"),
        "N": ref(f"{tag}:n"),
        "V": store.value,
        "fresh": iter(()),
    }
    many = [ref(f"{tag}:many:{i}") for i in range(max(SIZES))]
    for n in SIZES:
        ns[f"KS{n}"] = many[:n]
        ns[f"D{n}"] = dict.fromkeys(many[:n], store.value)
    store.drop([ns["M"]])
    store.fill(many, store.value)
    store.fill([ns["K"]], store.value)
    if "incr" in store.ops:
        store.fill([ns["N"]], 0)
    return ns


def _candidate(store: Store, op: str, ns: dict[str, Any], tag: str) -> Candidate:
    def fresh(n: int) -> list[Any]:
        return [store.ref(f"{tag}:fresh:{next(_fresh)}") for _ in range(n)]

    prepare = None
    if op == "add":
        added: list[Any] = []

        def prepare(n: int) -> None:
            # Drop the previous batch so that the store does not grow without bound.
            if added:
                store.drop(added)
            added[:] = fresh(n)
            ns["fresh"] = iter(added)

    elif op == "delete":

        def prepare(n: int) -> None:
            keys = fresh(n)
            store.fill(keys, store.value)
            ns["fresh"] = iter(keys)

    return Candidate(
        store.name, store.role, store.ops[op], ns, prepare, chunk=2_000 if prepare else 2_000_000
    )


def run_backend(backend: str, config: Config, workdir: Path, server: Any) -> dict[str, Any]:
    """Time every operation of ``backend``'s stores; one group per operation."""
    stores = BUILDERS[backend](workdir, server)
    groups = []
    try:
        spaces = [_namespace(s, f"s{i}") for i, s in enumerate(stores)]
        for op in OPS:
            candidates = [
                _candidate(s, op, ns, f"s{i}")
                for i, (s, ns) in enumerate(zip(stores, spaces, strict=True))
                if op in s.ops
            ]
            start = time.monotonic()
            results = measure(candidates, config)
            seconds = round(time.monotonic() - start, 1)
            groups.append({"op": op, "seconds": seconds, "results": results})
            print(f"  {op:<14}" + "  ".join(f"{r['name']}: {fmt_ns(r['median'])}" for r in results))
    finally:
        for s in stores:
            s.close()
    return {"kind": "ops", "groups": groups}


def fmt_ns(ns: float) -> str:
    """A duration in ns, µs or ms with three significant digits."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3g} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.3g} ms"
    return f"{ns / 1_000_000_000:.3g} s"
