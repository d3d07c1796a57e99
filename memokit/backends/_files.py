"""Private-directory helpers shared by the filesystem and SQLite backends.

Modes are set explicitly with ``chmod`` after each creation and never through
``os.umask``: the umask is process-wide, so changing it, even briefly, races with
every other thread that creates a file (Django's CVE-2026-25674).
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path
from typing import NamedTuple

from ..exceptions import ImproperlyConfigured, UnsafeLocation

DIR_MODE = 0o700
FILE_MODE = 0o600


def location_path(location: object, backend: str) -> Path:
    """Return ``LOCATION`` as an absolute path; warn when it was relative."""
    if not isinstance(location, str | os.PathLike) or not os.fspath(location):
        raise ImproperlyConfigured(
            f"LOCATION of the {backend} backend must be a path, not {location!r}; "
            f"for example LOCATION='/var/cache/myapp'"
        )
    raw = os.fspath(location)
    if isinstance(raw, bytes):
        raise ImproperlyConfigured(f"LOCATION must be a str or a path object, not {raw!r}")
    if "\x00" in raw:
        raise ImproperlyConfigured(f"LOCATION must not contain a NUL character: {raw!r}")
    path = Path(raw)
    if not path.is_absolute():
        # As Django's caches.W003: a relative path follows the working directory, so two
        # processes started from different places would use two different stores.
        warnings.warn(
            f"LOCATION {raw!r} of the {backend} backend is relative; it is resolved against "
            f"the current working directory ({os.getcwd()}). Use an absolute path.",
            RuntimeWarning,
            stacklevel=4,
        )
        path = Path(os.path.abspath(raw))
    return path


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents, each level with mode ``0o700``."""
    missing = []
    current = path
    while not current.exists() and not current.is_symlink():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, DIR_MODE)
        except FileExistsError:
            continue  # another thread or process made it first; its checks apply
        # mkdir's mode is filtered by the umask (0o000 and 0o277 included), so set it.
        os.chmod(level, DIR_MODE)


# POSIX flags (the getattr defaults only let the SQLite backend import this on Windows,
# where the filesystem backend refuses to start). A parent only needs to be
# searchable (x), not readable: O_PATH opens it either way.
_NO_LINK = sum(getattr(os, flag, 0) for flag in ("O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC"))
_SEARCH = getattr(os, "O_PATH", os.O_RDONLY) | _NO_LINK
_OPEN_DIR = os.O_RDONLY | _NO_LINK


def open_location(path: Path, *, hint: str = "", resolved: bool = False) -> int:
    """Open ``LOCATION`` as a directory handle, creating missing levels; check every level.

    Symbolic links among the parents are resolved once (as OpenSSH resolves a home
    directory); the real path is then walked one level at a time, each opened
    relative to the one above without following links, so what is checked is what
    is opened. Every parent must be owned by root or by this process's user and not
    writable by group or others unless it has the sticky bit (as ``/tmp``);
    ``LOCATION`` itself must be this user's, not writable by group or others, and
    not a link. Raise :class:`UnsafeLocation` naming the directory and the fix
    (``hint`` is added to the messages about ``LOCATION`` itself). ``resolved``
    says that ``path`` is already a real path (no link to resolve among its parents).
    """
    if path.parent == path:  # LOCATION="/": refused below unless this process is root
        fd = os.open("/", _OPEN_DIR)
        try:
            _check(fd, "/", last=True, hint=hint)
        except BaseException:
            os.close(fd)
            raise
        return fd
    # Strings, not Path objects: Django closes caches after every request, so this
    # runs at the first operation of each request.
    parent = str(path.parent) if resolved else os.path.realpath(path.parent)
    fd = os.open("/", _SEARCH)
    try:
        _check(fd, "/", last=False)
    except BaseException:
        os.close(fd)
        raise
    shown = ""
    for name in parent.split(os.sep):
        if name:
            shown = f"{shown}/{name}"
            fd = _step(fd, name, shown, last=False)
    return _step(fd, path.name, str(path), last=True, hint=hint)


def _step(parent_fd: int, name: str, shown: str, *, last: bool, hint: str = "") -> int:
    """Open (or make) ``name`` under ``parent_fd`` and check it; closes ``parent_fd``."""
    flags = _OPEN_DIR if last else _SEARCH
    try:
        try:
            fd = os.open(name, flags, dir_fd=parent_fd)
        except FileNotFoundError:
            try:
                os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
            except FileExistsError:
                pass  # another thread or process made it first; the checks below apply
            else:
                # mkdir's mode is filtered by the umask (0o000 and 0o277 included).
                os.chmod(name, DIR_MODE, dir_fd=parent_fd)
            fd = os.open(name, flags, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeLocation(
                    f"cache directory {shown!r} is a symbolic link; a link can be swapped "
                    f"to point elsewhere. Set LOCATION to the real directory "
                    f"({os.path.realpath(shown)!r})."
                ) from None
            if stat.S_ISDIR(info.st_mode):  # pragma: no cover - a race with a rename
                raise
            raise ImproperlyConfigured(
                f"{shown!r} exists and is not a directory; set LOCATION to a "
                f"directory path whose parents are directories"
            ) from None
    finally:
        os.close(parent_fd)
    try:
        _check(fd, shown, last=last, hint=hint)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check(fd: int, shown: str, *, last: bool, hint: str = "") -> None:
    info = os.fstat(fd)
    uid, mode, me = info.st_uid, stat.S_IMODE(info.st_mode), os.geteuid()
    if last:
        if uid != me:
            raise UnsafeLocation(
                f"cache directory {shown!r} is owned by uid {uid}, not by this process "
                f"(uid {me}); values are unpickled on read, so only a directory of our own "
                f"is safe. Use another LOCATION or chown it.{hint}"
            )
        if mode & 0o022:
            raise UnsafeLocation(
                f"cache directory {shown!r} is writable by group or others "
                f"(mode {mode:04o}); anyone who can write there can run code in every reader. "
                f"Run: chmod go-w {shown!r} (memokit creates it as 0700).{hint}"
            )
        return
    if uid not in (0, me):
        raise UnsafeLocation(
            f"{shown!r}, a parent of the cache directory, is owned by uid {uid}, neither "
            f"root nor this process (uid {me}); its owner could swap the cache directory for "
            f"one holding code. Choose a LOCATION whose parents are owned by root or uid {me}."
        )
    if mode & 0o022 and not mode & stat.S_ISVTX:
        raise UnsafeLocation(
            f"{shown!r}, a parent of the cache directory, is writable by group or others "
            f"without the sticky bit (mode {mode:04o}); anyone who can write there can swap "
            f"the cache directory for one holding code. Run: chmod go-w {shown!r} (or "
            f"chmod +t for a shared directory such as /tmp), or choose another LOCATION."
        )


# Whether files can be opened relative to a directory handle (not on Windows).
PINNABLE = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


class CheckedFile(NamedTuple):
    """A file that passed :func:`check_private_file`, and what identified it then."""

    path: str
    """Its path with the directory's links resolved: what to open."""
    directory: tuple[int, int]
    file: tuple[int, int]

    def unchanged(self) -> bool:
        """Whether ``path`` still names the directory and the file that were checked.

        For a file that something else opens by path (SQLite): compared after that
        opening, it tells whether a swap came between the checks and the opening.
        """
        try:
            info = os.stat(self.path, follow_symlinks=False)
            folder = os.stat(os.path.dirname(self.path))
        except OSError:
            return False
        same_file = (info.st_dev, info.st_ino) == self.file
        return same_file and (folder.st_dev, folder.st_ino) == self.directory


def check_private_file(path: Path, *, hint: str = "") -> CheckedFile:
    """Check ``path``, its directory and every parent; make what is missing, privately.

    The directory and its parents go through :func:`open_location` (made ``0o700``
    where missing); the file is made ``0o600`` if missing, then must be a regular
    file, not a link, owned by this process's user and not writable by group or
    others. Raise :class:`UnsafeLocation` naming what failed and the fix.
    """
    directory = os.path.realpath(path.parent)
    dir_fd = open_location(Path(directory), hint=hint, resolved=True)
    try:
        try:
            fd = os.open(path.name, _CREATE_FILE | os.O_CLOEXEC, FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            pass  # O_EXCL: also when the name is a link, which is refused below
        else:
            try:
                os.fchmod(fd, FILE_MODE)  # the umask may have removed bits from FILE_MODE
            finally:
                os.close(fd)
        info = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        folder = os.fstat(dir_fd)
    finally:
        os.close(dir_fd)
    _check_file(info, str(path))
    real = os.path.join(directory, path.name)
    return CheckedFile(real, (folder.st_dev, folder.st_ino), (info.st_dev, info.st_ino))


def _check_file(info: os.stat_result, shown: str) -> None:
    uid, mode, me = info.st_uid, stat.S_IMODE(info.st_mode), os.geteuid()
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeLocation(
            f"database file {shown!r} is a symbolic link; a link can be swapped to point "
            f"elsewhere. Set LOCATION to the real file ({os.path.realpath(shown)!r})."
        )
    if not stat.S_ISREG(info.st_mode):
        raise ImproperlyConfigured(
            f"{shown!r} exists and is not a regular file; set LOCATION to a database file path"
        )
    if uid != me:
        raise UnsafeLocation(
            f"database file {shown!r} is owned by uid {uid}, not by this process (uid {me}); "
            f"values are unpickled on read, so only a file of our own is safe. Use another "
            f"LOCATION or chown it."
        )
    if mode & 0o022:
        raise UnsafeLocation(
            f"database file {shown!r} is writable by group or others (mode {mode:04o}); anyone "
            f"who can write it can run code in every reader. Run: chmod go-w {shown!r} "
            f"(memokit creates it as 0600)."
        )


def create_private_file(path: Path) -> None:
    """Create ``path`` with mode ``0o600`` unless it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, FILE_MODE)  # the umask may have removed bits from FILE_MODE


def unusable_location(path: Path, exc: OSError, backend: str) -> ImproperlyConfigured:
    """Return the error for a ``LOCATION`` the operating system refused, with the fix."""
    where = f"LOCATION {str(path)!r} of the {backend} backend cannot be used"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ImproperlyConfigured(
            f"{where}: permission denied ({exc.strerror}: {exc.filename!r}). Make the directory "
            f"writable by this process (uid {os.geteuid()}), or set LOCATION to a path it may "
            f"create, for example under $XDG_CACHE_HOME or /var/cache/<app>."
        )
    if exc.errno == errno.ENOTDIR:
        blocker = path
        while blocker.parent != blocker and not blocker.exists():
            blocker = blocker.parent
        return ImproperlyConfigured(
            f"{where}: {str(blocker)!r} is not a directory, so nothing can be made under it. "
            f"Set LOCATION to a path whose parents are directories."
        )
    if exc.errno == errno.EROFS:
        return ImproperlyConfigured(
            f"{where}: the file system is read-only. Set LOCATION to a writable file system."
        )
    return ImproperlyConfigured(f"{where}: {exc}. Set LOCATION to a usable path.")
