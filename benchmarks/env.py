"""The run's surroundings: metadata for the JSON, Django's settings, servers, scratch space."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = (
    "cachetools",
    "cachelib",
    "diskcache",
    "dogpile.cache",
    "cashews",
    "django",
    "redis",
    "hiredis",
    "pymemcache",
    "zlib-ng",  # COMPRESSOR "zlib" deflates with it when installed (section payloads)
    "zstandard",
    "wrapt",
    "matplotlib",
)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _first_line(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return ""


def _memory() -> str:
    total = _first_line("/proc/meminfo", "MemTotal").split()
    return f"{int(total[0]) / 2**20:.1f} GiB" if total and total[0].isdigit() else "unknown"


def _server_version(binary: str, flag: str) -> str:
    try:
        out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "not installed"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


def versions() -> dict[str, str]:
    """Versions of memokit, the peers, SQLite and the servers."""
    import memokit

    where = Path(memokit.__file__).resolve().parent
    source = "source tree" if where == ROOT / "memokit" else str(where)
    found: dict[str, str] = {"memokit": f"{memokit.__version__} ({source})"}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["sqlite library"] = sqlite3.sqlite_version
    found["redis-server"] = _server_version("redis-server", "--version")
    found["memcached"] = _server_version("memcached", "-V")
    return found


def pin_to_one_cpu() -> int | None:
    """Run this process, and the servers it starts (they inherit the mask), on one CPU.

    On a virtual machine a request that wakes a server thread on another, idle CPU
    waits 50-100 µs for that CPU (measured on the 2-vCPU benchmark machine: a
    memcached ``get`` took 13 µs on one CPU, 85-95 µs across two), and which
    connection lands on which server thread, and which CPU, changed from run to
    run: the raw clients' figures flipped between the two modes. On one CPU every
    candidate pays the same hand-over, so the network ratios measure the clients.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def metadata(argv: list[str]) -> dict[str, Any]:
    """Commit, date, command, machine and versions of this run."""
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "commit": commit or "unknown",
        "commit_dirty": dirty,
        "commit_subject": _git("log", "-1", "--format=%s"),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks", *argv]),
        "machine": {
            "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor(),
            "cpus": os.cpu_count(),
            "memory": _memory(),
            "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg()),
            "pinned_to_cpu": min(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == 1
            else None,
        },
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions(),
    }


_django_ready = False


def setup_django(workdir: Path) -> None:
    """Configure Django once per process: no apps, a SQLite database for its db cache."""
    global _django_ready
    if _django_ready:
        return
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(workdir / "dj.db")}
        },
        CACHES={},
        USE_TZ=True,
    )
    django.setup()
    _django_ready = True


def django_cache(cls_path: str, location: str, **options: Any) -> Any:
    """A Django cache backend built directly, with ``OPTIONS`` and a 300 s timeout."""
    from django.utils.module_loading import import_string

    cls = import_string(cls_path)
    return cls(location, {"TIMEOUT": 300, "OPTIONS": options})


def django_cache_table(table: str) -> None:
    """Create the table of Django's DatabaseCache, as ``createcachetable`` does."""
    from django.core.management.commands.createcachetable import Command

    command = Command()
    command.verbosity = 0  # set by call_command otherwise
    command.create_table("default", table, dry_run=False)


def python_path() -> str:
    """This process's import path, so that a child imports the same memokit and peers."""
    return os.pathsep.join(p or os.getcwd() for p in sys.path)
