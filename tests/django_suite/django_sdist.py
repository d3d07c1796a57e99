"""Django's own cache tests, taken from its source distribution at test time.

The sdist ships ``tests/cache/``; only that package is unpacked, into a cache
directory outside the repository (``$XDG_CACHE_HOME/memokit`` or
``~/.cache/memokit``), so a rerun needs no network. The archive's SHA-256 is
pinned: a different file is refused rather than run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DJANGO_VERSION = "5.2.19"
SDIST_SHA256 = "ad03d8abc51dbff95ebf34b27123cf0c26a3b62db7ba0cd520783686362533d1"


class Unavailable(RuntimeError):
    """Django's tests could not be obtained (offline, or the download was refused)."""


def cache_root() -> Path:
    """Where downloaded test suites are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memokit"


def django_tests_dir(version: str = DJANGO_VERSION, sha256: str = SDIST_SHA256) -> Path:
    """Return a directory holding Django's ``cache`` test package, downloading it once."""
    target = cache_root() / f"django-{version}-tests"
    if (target / "cache" / "tests.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive = _download(version, Path(scratch))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sha256:
            raise Unavailable(
                f"{archive.name} has SHA-256 {digest}, expected {sha256}; refusing to run it"
            )
        unpacked = Path(scratch) / "unpacked"
        prefix = f"django-{version}/tests/cache/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise Unavailable(f"{archive.name} has no {prefix}")
            tar.extractall(unpacked, members=members, filter="data")
        staged = Path(scratch) / "tests"
        staged.mkdir()
        shutil.move(unpacked / prefix.rstrip("/"), staged / "cache")
        # A rename is atomic: a concurrent run sees the whole package or none of it.
        try:
            staged.rename(target)
        except OSError:
            if not (target / "cache" / "tests.py").is_file():
                raise
    return target


def _download(version: str, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--dest",
        str(into),
        f"django=={version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    archives = sorted(into.glob(f"[Dd]jango-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"pip could not download the Django {version} sdist: {detail}")
    return archives[0]
