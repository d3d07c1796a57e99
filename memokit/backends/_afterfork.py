"""Brand-new clients for the network backends in a child after ``fork``.

A lock that another thread held at the instant of the fork stays held for good
in the child, where that thread does not exist. redis-py's and pymemcache's
pools guard their state with such locks, and their own after-fork handling
(redis-py's pid check, which resets the pool under its lock; pymemcache's
``close``) takes them. So the child never calls into an inherited client, not
even to close it: each live cache builds new ones from its settings, and the
old ones are dropped. Dropping is safe: neither library shuts down a socket
from the child (redis-py checks the pid first; pymemcache only closes), and
closing the child's copy of a descriptor leaves the parent's connection up.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class Renewable(Protocol):
    """A cache whose clients can be rebuilt from its settings."""

    def _renew_clients(self) -> None: ...


_caches: weakref.WeakSet[Renewable] = weakref.WeakSet()


def renew_in_children(cache: Renewable) -> None:
    """Give ``cache`` brand-new clients in every child forked from now on."""
    _caches.add(cache)


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._renew_clients()


if hasattr(os, "register_at_fork"):  # POSIX; there is no fork on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
