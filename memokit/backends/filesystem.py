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

Every file is opened, renamed, listed and removed relative to one handle on
``LOCATION`` per process (``_flock.Directory``), opened after checks of it and
of its parents (``_files.open_location``): a directory swapped in at ``LOCATION``
later is never read. POSIX only (``O_NOFOLLOW``, ``dir_fd=``, ``flock``).
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
from collections.abc import Mapping
from time import time as _now
from typing import Any, ClassVar, Unpack

from ..exceptions import CorruptEntryWarning, ImproperlyConfigured
from ..exceptions import UnsafeLocation as UnsafeLocation  # raised for an unsafe LOCATION
from . import _reports
from ._files import FILE_MODE, location_path, unusable_location
from ._flock import LOCK_NAME as LOCK_NAME  # where the lock lives, for tools and tests
from ._flock import Directory as _Directory
from ._flock import close_tracked, directory_for, open_tracked
from ._tierstore import SAME
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
_HEADER_SIZE = _HEADER.size
_NAMES_KEPT = 1024  # file names remembered per cache: a hash costs as much as a syscall
_FIRST_READ = 1 << 16  # bytes a read asks for first: most entries are whole in one read


# Entries and temporaries are opened without following links: only this user (or
# root) can write the directory, and a link there is never one of ours. (getattr:
# the module still imports on Windows, where the class refuses to start.)
_NO_LINK = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | _NO_LINK
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_LINK


def _remove_if_same(shared: _Directory, name: str, inode: int) -> None:
    """Remove ``name`` unless another writer has replaced it since we read it."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(name, dir_fd=shared.fd, follow_symlinks=False).st_ino == inode:
            os.unlink(name, dir_fd=shared.fd)


def _remove_stale_temp(shared: _Directory, name: str) -> bool:
    """Remove a temporary file whose writer is gone; return whether it was removed."""
    try:
        fd = open_tracked(name, _READ, shared.fd)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        # Its writer crashed, or renamed it and closed it just now; in the second case
        # the name is gone or now belongs to another file, which the inode check spares.
        _remove_if_same(shared, name, os.fstat(fd).st_ino)
        return True
    finally:
        close_tracked(fd)


def _unlink(shared: _Directory, name: str) -> bool:
    """Remove ``name``; return False when it was not there."""
    try:
        os.unlink(name, dir_fd=shared.fd)
    except FileNotFoundError:
        return False
    return True


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
        self._shared: _Directory | None = None
        self._swept = 0  # the process that listed the directory when it first opened it
        self._names: dict[str, str] = {}  # made key -> file name, the hash kept (_name)
        try:
            shared = self._directory()
            # An existing directory we may not write passes the checks (and root's
            # os.access says yes whatever the mode): only a real write tells.
            probe = f".probe-{secrets.token_hex(8)}"
            close_tracked(shared.open(probe, _CREATE))
            os.unlink(probe, dir_fd=shared.fd)
        except UnsafeLocation:
            raise
        except OSError as exc:
            raise unusable_location(path, exc, "filesystem") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={str(self._dir)!r})"

    def close(self, **kwargs: Any) -> None:
        """Let go of the directory handle; the next operation opens ``LOCATION`` again.

        The handle is shared by the caches on the same directory in this process and
        is closed when the last of them lets go. Opening again runs every check of
        ``LOCATION`` and its parents: a directory swapped in that fails them is refused.
        """
        self._shared = None

    # -- helpers --------------------------------------------------------------

    def _directory(self) -> _Directory:
        shared = self._shared
        if shared is not None and shared.pid == os.getpid():
            return shared
        # First use in this process, after close(), or in a child after fork (which
        # closed its copy of the parent's handle at once, and needs its own lock
        # state: the parent's shares the parent's flock).
        pid = os.getpid()
        shared, fresh = directory_for(self._dir)
        if fresh and self._swept != pid:
            # Once per process: also removes temporary files left by crashed writers.
            # Not again after close() (Django closes after every request): the next
            # set counts the entries anyway.
            self._scan(shared)
        self._swept = pid
        self._shared = shared
        return shared

    def _name(self, key: str) -> str:
        names = self._names
        name = names.get(key)
        if name is None:
            # Plain strings, not Path objects: building a Path costs more than the hash.
            digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16)
            name = digest.hexdigest() + SUFFIX
            if len(names) >= _NAMES_KEPT:
                names.clear()  # a bound, not an LRU: the hot keys come back at once
            names[key] = name
        return name

    def _path(self, key: str) -> str:
        """The path of the entry file of ``key`` (for tools and tests; memokit uses names)."""
        return os.path.join(self._dir, self._name(key))

    @staticmethod
    def _expiry(timeout: float | None) -> float:
        return math.inf if timeout is None else _now() + timeout

    def _load(self, shared: _Directory, name: str) -> tuple[float, bytes] | None:
        """Return ``(expiry, payload)`` of the entry file, or None when there is none.

        A damaged file is removed and reads as None; only a missing file is silent
        among errors, any other ``OSError`` propagates.
        """
        try:
            fd = os.open(name, _READ, dir_fd=shared.fd)
        except FileNotFoundError:
            # Was the directory removed (and perhaps made again by another process)?
            # Asked at the first of every 8 misses: an fstat costs a sixth of a miss,
            # and while the directory is gone every read misses, so a reader notices
            # within 8 reads (a writer at once); at every miss once LOCATION was refused.
            misses = shared.misses
            shared.misses = misses + 1
            if (misses & 7 and not shared.refused) or not shared.removed():
                return None
            shared.revive()
            try:
                fd = os.open(name, _READ, dir_fd=shared.fd)
            except FileNotFoundError:
                return None
        try:
            data = _read_all(fd)
            if len(data) >= _HEADER_SIZE:  # _problem(data) is None, in one pass
                magic, expiry, length, checksum = _HEADER.unpack_from(data)
                payload = data[_HEADER_SIZE:]
                if magic == _MAGIC and len(payload) == length and zlib.crc32(payload) == checksum:
                    return expiry, payload
            inode = os.fstat(fd).st_ino  # a damaged file: which one, to remove it
        finally:
            os.close(fd)
        problem = _problem(data)
        if problem is None:  # pragma: no cover - the checks above are _problem's
            raise AssertionError("an entry file failed a check that _problem passes")
        if problem:
            # Rate-limited per file and window, as every value failure is.
            where = os.path.join(self._dir, name)
            _reports.report(
                self, where, f"{problem}; it is treated as a miss and removed", CorruptEntryWarning
            )
        # An empty file (problem == "") is what a crash before the first write leaves,
        # or an OS crash before the data reached the disk: Django reads it as expired,
        # without complaint. The inode tells our damaged file from one renamed in since.
        _remove_if_same(shared, name, inode)
        return None

    def _load_live(self, shared: _Directory, name: str, now: float) -> tuple[float, bytes] | None:
        entry = self._load(shared, name)
        if entry is None:
            return None
        if entry[0] <= now:
            self._remove_expired(shared, name, now)
            return None
        return entry

    def _remove_expired(self, shared: _Directory, name: str, now: float) -> None:
        # Under the lock, so that a value written meanwhile by another process survives;
        # but a reader never waits for it: when it is taken, the file stays for a later
        # read, a cull or an overwrite to remove.
        with shared.locked_or_skipped() as held:
            if held:
                entry = self._load(shared, name)
                if entry is not None and entry[0] <= now:
                    _unlink(shared, name)

    def _write_temp(self, shared: _Directory, payload: bytes, expiry: float) -> tuple[int, str]:
        """Write a complete entry to a new temporary file; return its descriptor and name.

        The descriptor holds an ``flock`` that marks the writer as alive; the caller
        renames the file into place and then closes the descriptor.
        """
        header = _HEADER.pack(_MAGIC, expiry, len(payload), zlib.crc32(payload))
        while True:
            temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
            fd = shared.open(temp, _CREATE)
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
            _unlink(shared, temp)
            raise
        return fd, temp

    def _publish(
        self, shared: _Directory, name: str, payload: bytes, expiry: float, *, lock: bool
    ) -> None:
        fd, temp = self._write_temp(shared, payload, expiry)
        dir_fd = shared.fd
        try:
            if lock:
                with shared.locked(self.lock_timeout):
                    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink(shared, temp)
            raise
        finally:
            close_tracked(fd)

    def _before_insert(self, shared: _Directory, names: list[str]) -> None:
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
        for name in names:
            try:
                os.stat(name, dir_fd=shared.fd, follow_symlinks=False)
            except FileNotFoundError:
                shared.added += 1

    def _scan(self, shared: _Directory, *, cull: bool = False) -> None:
        """List the directory: remove dead writers' temporaries, count, and cull."""
        if shared.removed():
            shared.revive()
        entries = []
        for name in shared.names():
            if name.endswith(SUFFIX):
                entries.append(name)
            elif name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                _remove_stale_temp(shared, name)
        count = len(entries)
        if cull and count >= self._max_entries:
            # Django's file cache arithmetic: clear all, or remove count // CULL_FREQUENCY
            # entries chosen at random (choosing by age would need a stat per file).
            if self._cull_frequency == 0:
                victims = entries
            else:
                victims = random.sample(entries, count // self._cull_frequency)
            for name in victims:
                count -= _unlink(shared, name)
        shared.known = count
        shared.added = 0
        shared.deleted = 0

    # -- primitives -------------------------------------------------------------

    def _get(self, key: str) -> Any:
        entry = self._load_live(self._directory(), self._name(key), _now())
        return MISSING if entry is None else entry[1]

    def _get_stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tier one's re-check (``memokit.backends.tiered``): ``(found, stamps seen)``.

        A file's stamp is its inode, mtime, size and header (expiry, length, CRC-32):
        every write is a new file renamed into place, so it changes with every write.
        A key whose stamp is still the one in ``stamps`` (and not expired) is found
        ``SAME`` after an ``fstat`` and a read of the header only; any other is read
        whole, with its stamp taken from the same open file.
        """
        shared = self._directory()
        now = _now()
        found: dict[str, Any] = {}
        seen: dict[str, Any] = {}
        for key in keys:
            name = self._name(key)
            try:
                fd = os.open(name, _READ, dir_fd=shared.fd)
            except FileNotFoundError:
                entry = self._load_live(shared, name, now)  # a miss's checks of LOCATION
                if entry is not None:
                    found[key] = entry[1]
                continue
            try:
                info = os.fstat(fd)
                held = stamps.get(key)
                if held is not None:
                    header = os.pread(fd, _HEADER_SIZE, 0)
                    if (
                        held == (info.st_ino, info.st_mtime_ns, info.st_size, header)
                        and _HEADER.unpack_from(header)[1] > now
                    ):
                        found[key] = SAME
                        seen[key] = held
                        continue
                data = _read_all(fd)
            finally:
                os.close(fd)
            if len(data) >= _HEADER_SIZE:
                magic, expiry, length, checksum = _HEADER.unpack_from(data)
                payload = data[_HEADER_SIZE:]
                if (
                    magic == _MAGIC
                    and expiry > now
                    and len(payload) == length
                    and zlib.crc32(payload) == checksum
                ):
                    found[key] = payload
                    seen[key] = (info.st_ino, info.st_mtime_ns, info.st_size, data[:_HEADER_SIZE])
                    continue
            # Expired or damaged: the plain read removes (and reports) it as always.
            entry = self._load_live(shared, name, now)
            if entry is not None:
                found[key] = entry[1]
        return found, seen

    async def _aget_stamped(
        self, keys: list[str], stamps: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The async ``_get_stamped`` (in a worker thread)."""
        return await self._run(self._get_stamped, keys, stamps)

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        shared = self._directory()
        name = self._name(key)
        self._before_insert(shared, [name])
        self._publish(shared, name, payload, self._expiry(timeout), lock=True)

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        shared = self._directory()
        expiry = self._expiry(timeout)
        names = {key: self._name(key) for key in items}
        self._before_insert(shared, list(names.values()))
        for key, payload in items.items():
            self._publish(shared, names[key], payload, expiry, lock=True)
        return []

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        shared = self._directory()
        name = self._name(key)
        expiry = self._expiry(timeout)
        with shared.locked(self.lock_timeout):
            entry = self._load(shared, name)
            if entry is not None and entry[0] > _now():
                return False
            self._before_insert(shared, [name])
            self._publish(shared, name, payload, expiry, lock=False)
            return True

    def _touch(self, key: str, timeout: float | None) -> bool:
        shared = self._directory()
        name = self._name(key)
        expiry = self._expiry(timeout)
        with shared.locked(self.lock_timeout):
            entry = self._load(shared, name)
            if entry is None:
                return False
            if entry[0] <= _now():
                _unlink(shared, name)
                return False
            self._publish(shared, name, entry[1], expiry, lock=False)
            return True

    def _delete(self, key: str) -> bool:
        shared = self._directory()
        name = self._name(key)
        with shared.locked(self.lock_timeout):
            entry = self._load(shared, name)
            if entry is None:
                return False
            shared.deleted += _unlink(shared, name)
        return entry[0] > _now()

    def _delete_many(self, keys: list[str]) -> None:
        shared = self._directory()
        names = [self._name(key) for key in keys]
        with shared.locked(self.lock_timeout):
            for name in names:
                shared.deleted += _unlink(shared, name)

    def _incr(self, key: str, delta: int | float) -> Any:
        shared = self._directory()
        name = self._name(key)
        with shared.locked(self.lock_timeout):
            entry = self._load(shared, name)
            if entry is None or entry[0] <= _now():
                return MISSING
            value = self._decode(entry[1]) + delta
            self._publish(shared, name, self._encode(value), entry[0], lock=False)
            return value

    def _clear(self) -> None:
        shared = self._directory()
        with shared.locked(self.lock_timeout):
            for name in shared.names():
                if name.endswith(SUFFIX):
                    _unlink(shared, name)
                elif name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                    _remove_stale_temp(shared, name)
            shared.known = 0
            shared.added = 0
            shared.deleted = 0

    def _count(self) -> int:
        return sum(name.endswith(SUFFIX) for name in self._directory().names())

    def _clear_some(self, limit: int) -> int:
        shared = self._directory()
        with shared.locked(self.lock_timeout):
            names = [name for name in shared.names() if name.endswith(SUFFIX)][:limit]
            removed = sum(_unlink(shared, name) for name in names)
            shared.deleted += removed
        if not names:
            self._clear()  # the leftovers of crashed writers, and the counts, as clear() does
        return removed


def _read_all(fd: int) -> bytes:
    """Read the file from its start to its end."""
    # An entry file is never changed in place, so one read usually returns it whole,
    # without asking its size first (os.fstat costs as much as the read): it is whole
    # when the read stopped short of the buffer and holds what its header announces.
    # Anything else (a large entry, a short read, a damaged or foreign file) is read on
    # to its end, which is what _problem then judges.
    data = os.read(fd, _FIRST_READ)
    if (
        len(data) < _FIRST_READ
        and len(data) >= _HEADER_SIZE
        and len(data) >= _HEADER_SIZE + _HEADER.unpack_from(data)[2]
    ):
        return data
    chunks = [data]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


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
