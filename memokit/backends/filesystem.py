"""A persistent backend with one file per entry in a private directory.

Layout: ``LOCATION`` holds ``<hash>.mkc`` entry files (the name is a BLAKE2 hash
of the made key, so no key can name a path outside the directory), transient
``.tmp-*.mkc-tmp`` files being written, and one ``.memokit.lock`` file. An entry
file is a fixed header (magic, absolute expiry, payload length, CRC-32 of the
payload) followed by the serialised value.

Every write goes to a fresh temporary file in the same directory and is moved
over the entry with ``os.replace``, so a reader sees the old file or the new one,
never a mix, even when the writer is killed. The writer holds an ``flock`` on its
temporary file until it is renamed: a temporary file whose lock can be taken
belongs to a dead writer and may be removed; one whose lock is held is never
touched. Renames, deletes and the read-modify-write operations (``add``,
``incr``, ``touch``) run under an exclusive ``flock`` on the lock file (plus a
thread lock, since ``flock`` does not exclude threads that share a descriptor),
so they are atomic for every process using the directory. Every wait for that
lock ends after ``LOCK_TIMEOUT`` seconds with ``TimeoutError`` (see ``_flock``).
Reads take no lock and never wait: an expired entry is removed by a read only when
the lock is free at that instant.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import random
import secrets
import struct
import sys
import zlib
from time import time as _now
from typing import Any, ClassVar, Unpack

from ..exceptions import ImproperlyConfigured
from ._files import (
    FILE_MODE,
    check_private_dir,
    location_path,
    make_private_dirs,
    unusable_location,
)
from ._flock import LOCK_NAME as LOCK_NAME  # where the lock lives, for tools and tests
from ._flock import Directory as _Directory
from ._flock import close_tracked, directory_for, open_tracked, recreate
from .base import (
    MISSING,
    BaseCache,
    Capabilities,
    CommonSettings,
    CullsByCount,
    check_culling,
)

if sys.platform != "win32":
    import fcntl

SUFFIX = ".mkc"
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".mkc-tmp"
_MAGIC = b"MKC1"
_HEADER = struct.Struct("<4sdQI")  # magic, expiry (inf: never), payload length, crc32


def _remove_if_same(path: str, inode: int) -> None:
    """Remove ``path`` unless another writer has replaced it since we read it."""
    with contextlib.suppress(FileNotFoundError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def _remove_stale_temp(path: str) -> bool:
    """Remove a temporary file whose writer is gone; return whether it was removed."""
    try:
        fd = open_tracked(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        # Its writer crashed, or renamed it and closed it just now; in the second case
        # the name is gone or now belongs to another file, which the inode check spares.
        _remove_if_same(path, os.fstat(fd).st_ino)
        return True
    finally:
        close_tracked(fd)


class FileSystemCache(CullsByCount, BaseCache):
    """Persistent cache: one file per entry in a private directory, shared by processes."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        culls=True,
        cull_rule="count >= MAX_ENTRIES",
        lru=False,
        local_clock=True,
        atomic_incr=True,
        cross_process=True,
        persistent=True,
        blocking_io=True,
    )
    option_names: ClassVar[frozenset[str]] = BaseCache.option_names | {
        "MAX_ENTRIES",
        "CULL_FREQUENCY",
    }

    def __init__(
        self,
        location: str | os.PathLike[str] = "",
        *,
        max_entries: int = 300,
        cull_frequency: int = 3,
        **settings: Unpack[CommonSettings],
    ) -> None:
        if sys.platform == "win32":
            raise ImproperlyConfigured(
                "the filesystem backend needs POSIX file locks (fcntl.flock); "
                "on Windows use BACKEND='sqlite' for a persistent cache"
            )
        path = location_path(location, "filesystem")
        super().__init__(os.fspath(location), **settings)
        self._max_entries, self._cull_frequency = check_culling(max_entries, cull_frequency)
        self._dir = path
        self._prefix = str(path) + os.sep
        self._shared: _Directory | None = None
        try:
            make_private_dirs(path)
            check_private_dir(path)
            self._directory()
            # An existing directory we may not write passes all of the above (and root's
            # os.access says yes whatever the mode): only a real write tells.
            probe = path / f".probe-{secrets.token_hex(8)}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise unusable_location(path, exc, "filesystem") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={str(self._dir)!r})"

    # -- helpers --------------------------------------------------------------

    def _directory(self) -> _Directory:
        shared = self._shared
        if shared is not None and shared.pid == os.getpid():
            return shared
        # First use in this process (or in a child after fork: the parent's descriptor
        # shares the parent's flock, so the child needs its own lock state).
        shared, fresh = directory_for(self._dir)
        if fresh:
            self._scan(shared)  # also removes temporary files left by crashed writers
        self._shared = shared
        return shared

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return self._directory().locked(self.lock_timeout)

    def _path(self, key: str) -> str:
        # Plain strings, not Path objects: building a Path costs more than the hash.
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16)
        return self._prefix + digest.hexdigest() + SUFFIX

    @staticmethod
    def _expiry(timeout: float | None) -> float:
        return math.inf if timeout is None else _now() + timeout

    def _load(self, path: str) -> tuple[float, bytes] | None:
        """Return ``(expiry, payload)`` of the entry file, or None when there is none.

        A damaged file is removed and reads as None; only a missing file is silent
        among errors, any other ``OSError`` propagates.
        """
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return None
        with file:
            data = file.readall()
            problem = _problem(data)
            if problem is None:
                _, expiry, _, _ = _HEADER.unpack_from(data)
                return expiry, data[_HEADER.size :]
            # Only now the inode: it tells our damaged file from one renamed in since.
            inode = os.fstat(file.fileno()).st_ino
        if problem:
            from ..resilience import report_value_failure  # it imports this package

            # Rate-limited per file and window, as every value failure is.
            report_value_failure(self, path, f"{problem}; it is treated as a miss and removed")
        # An empty file (problem == "") is what a crash before the first write leaves,
        # or an OS crash before the data reached the disk: Django reads it as expired,
        # without complaint.
        _remove_if_same(path, inode)
        return None

    def _load_live(self, path: str, now: float) -> tuple[float, bytes] | None:
        entry = self._load(path)
        if entry is None:
            return None
        if entry[0] <= now:
            self._remove_expired(path, now)
            return None
        return entry

    def _remove_expired(self, path: str, now: float) -> None:
        # Under the lock, so that a value written meanwhile by another process survives;
        # but a reader never waits for it: when it is taken, the file stays for a later
        # read, a cull or an overwrite to remove.
        with self._directory().locked_or_skipped() as held:
            if held:
                entry = self._load(path)
                if entry is not None and entry[0] <= now:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    def _write_temp(self, payload: bytes, expiry: float) -> tuple[int, str]:
        """Write a complete entry to a new temporary file; return its descriptor and path.

        The descriptor holds an ``flock`` that marks the writer as alive; the caller
        renames the file into place and then closes the descriptor.
        """
        header = _HEADER.pack(_MAGIC, expiry, len(payload), zlib.crc32(payload))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        while True:
            temp = f"{self._prefix}{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
            try:
                fd = open_tracked(temp, flags)
            except FileNotFoundError:
                recreate(self._dir)
                fd = open_tracked(temp, flags)
            try:
                # Nobody else waits for this lock: a sweeper only tries it (LOCK_NB).
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # A sweeper holds it for an instant, taking it for a dead writer's.
                close_tracked(fd)
                continue
            info = os.fstat(fd)
            if info.st_nlink:
                break
            # A sweeper took the file for a dead writer's in the instant between its
            # creation and our lock, and removed it: start again under a new name.
            close_tracked(fd)
        try:
            if info.st_mode & 0o777 != FILE_MODE:
                os.fchmod(fd, FILE_MODE)  # the umask removed bits from FILE_MODE
            _write_all(fd, header)
            _write_all(fd, payload)
        except BaseException:
            close_tracked(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return fd, temp

    def _publish(self, path: str, payload: bytes, expiry: float, *, lock: bool) -> None:
        fd, temp = self._write_temp(payload, expiry)
        try:
            if lock:
                with self._locked():
                    os.replace(temp, path)
            else:
                os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        finally:
            close_tracked(fd)

    def _before_insert(self, paths: list[str]) -> None:
        shared = self._directory()
        max_entries = self._max_entries  # read on every call, as Django's tests expect
        refresh = max(16, max_entries // 8)
        # Other processes add entries that this one does not count: list again at least
        # every MAX_ENTRIES/8 additions so that their entries are culled too.
        if (
            shared.known is None
            or shared.known + shared.added - shared.deleted >= max_entries
            or shared.added >= refresh
        ):
            self._scan(shared, cull=True)
        for path in paths:
            if not os.path.exists(path):
                shared.added += 1

    def _scan(self, shared: _Directory, *, cull: bool = False) -> None:
        """List the directory: remove dead writers' temporaries, count, and cull."""
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            recreate(self._dir)
            names = []
        entries = []
        for name in names:
            if name.endswith(SUFFIX):
                entries.append(name)
            elif name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                _remove_stale_temp(self._prefix + name)
        count = len(entries)
        if cull and count >= self._max_entries:
            # Django's file cache arithmetic: clear all, or remove count // CULL_FREQUENCY
            # entries chosen at random (choosing by age would need a stat per file).
            if self._cull_frequency == 0:
                victims = entries
            else:
                victims = random.sample(entries, count // self._cull_frequency)
            for name in victims:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._prefix + name)
                    count -= 1
        shared.known = count
        shared.added = 0
        shared.deleted = 0

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> Any:
        entry = self._load_live(self._path(key), _now())
        return MISSING if entry is None else entry[1]

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        path = self._path(key)
        self._before_insert([path])
        self._publish(path, payload, self._expiry(timeout), lock=True)

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        expiry = self._expiry(timeout)
        paths = {key: self._path(key) for key in items}
        self._before_insert(list(paths.values()))
        for key, payload in items.items():
            self._publish(paths[key], payload, expiry, lock=True)
        return []

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        path = self._path(key)
        expiry = self._expiry(timeout)
        with self._locked():
            entry = self._load(path)
            if entry is not None and entry[0] > _now():
                return False
            self._before_insert([path])
            self._publish(path, payload, expiry, lock=False)
            return True

    def _touch(self, key: str, timeout: float | None) -> bool:
        path = self._path(key)
        expiry = self._expiry(timeout)
        with self._locked():
            entry = self._load(path)
            if entry is None:
                return False
            if entry[0] <= _now():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                return False
            self._publish(path, entry[1], expiry, lock=False)
            return True

    def _delete(self, key: str) -> bool:
        path = self._path(key)
        shared = self._directory()
        with shared.locked(self.lock_timeout):
            entry = self._load(path)
            if entry is None:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                shared.deleted += 1
        return entry[0] > _now()

    def _delete_many(self, keys: list[str]) -> None:
        paths = [self._path(key) for key in keys]
        shared = self._directory()
        with shared.locked(self.lock_timeout):
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    shared.deleted += 1

    def _incr(self, key: str, delta: int | float) -> Any:
        path = self._path(key)
        with self._locked():
            entry = self._load(path)
            if entry is None or entry[0] <= _now():
                return MISSING
            value = self._decode(entry[1]) + delta
            self._publish(path, self._encode(value), entry[0], lock=False)
            return value

    def _clear(self) -> None:
        shared = self._directory()
        with shared.locked(self.lock_timeout):
            try:
                names = os.listdir(self._dir)
            except FileNotFoundError:
                names = []
            for name in names:
                if name.endswith(SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._prefix + name)
                elif name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                    _remove_stale_temp(self._prefix + name)
            shared.known = 0
            shared.added = 0
            shared.deleted = 0


def _problem(data: bytes) -> str | None:
    """Say what is wrong with the bytes of an entry file: None if nothing, "" if empty."""
    if not data:
        return ""
    if len(data) < _HEADER.size:
        return "is truncated"
    magic, _, length, checksum = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        return "is not a memokit entry"
    size = len(data) - _HEADER.size
    if size != length:
        return "is truncated" if size < length else "has bytes past its end"
    if zlib.crc32(memoryview(data)[_HEADER.size :]) != checksum:
        return "fails its checksum"
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:  # pragma: no cover - write(2) returns 0 only for a 0-byte request
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[written:]
