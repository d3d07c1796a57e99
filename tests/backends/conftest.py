"""Fixtures of the backend tests: another user and a shared parent directory, for the
tests of who may write a store."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

NOBODY = 65534


@dataclass(frozen=True)
class OtherUser:
    """Another user (uid and gid 65534, ``nobody``), played by a forked child."""

    uid: int = NOBODY

    def run(self, parent: Path, act: Callable[[int], None]) -> None:
        """Run ``act(fd of parent)`` in a child process running as this user.

        The child opens ``parent`` before it drops its rights, because pytest's base
        temporary directory (0700, root's) is not searchable by anyone else; every
        change it makes through that descriptor is still checked against its rights.
        """
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit code
                code = 1
                try:
                    os.setgroups([])
                    os.setgid(self.uid)
                    os.setuid(self.uid)
                    act(parent_fd)
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
        finally:
            os.close(parent_fd)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the other user's actions failed"


@pytest.fixture
def other_user() -> OtherUser:
    """Another user; acting as one needs root: the test skips without it, and fails
    instead under ``MEMOKIT_REQUIRE_SERVERS=1``."""
    if os.geteuid() != 0:
        reason = "acting as another user needs root (os.setuid in a forked child)"
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {reason}")
        pytest.skip(reason)
    return OtherUser()


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    """A parent directory for a LOCATION: 0755 (the umask aside), as a shared one is."""
    made = tmp_path / "shared"
    made.mkdir(mode=0o755)
    os.chmod(made, 0o755)  # noqa: S103 - a shared parent is group- and world-readable
    return made
