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

from ..exceptions import ImproperlyConfigured

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


def check_private_dir(path: Path) -> None:
    """Refuse a directory that others could write to or that is not really ours."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ImproperlyConfigured(
            f"cache directory {str(path)!r} is a symbolic link; a link can be swapped to point "
            f"elsewhere. Set LOCATION to the real directory ({os.path.realpath(path)!r})."
        )
    if not stat.S_ISDIR(info.st_mode):
        raise ImproperlyConfigured(
            f"cache directory {str(path)!r} exists and is not a directory; "
            f"set LOCATION to a directory path"
        )
    if info.st_uid != os.geteuid():
        raise ImproperlyConfigured(
            f"cache directory {str(path)!r} is owned by uid {info.st_uid}, not by this "
            f"process (uid {os.geteuid()}); values are unpickled on read, so only a directory "
            f"of our own is safe. Use another LOCATION or chown it."
        )
    if info.st_mode & 0o022:
        raise ImproperlyConfigured(
            f"cache directory {str(path)!r} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); anyone who can write there can run code "
            f"in every reader. Run: chmod go-w {str(path)!r} (memokit creates it as 0700)."
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
