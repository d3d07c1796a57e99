"""How a key memcached could not store is reported: a warning at the caller's line,
or ``InvalidCacheKey`` on a backend with ``capabilities.strict_keys``."""

from __future__ import annotations

import os
import sys
import warnings

from ..exceptions import CacheKeyWarning, InvalidCacheKey
from ..keys import memcache_key_warnings

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# The conformance kit's tests (memokit/testing/) call caches as a user would: a
# warning points at their line, as at any caller's.
_TESTING_DIR = os.path.join(_PACKAGE_DIR, "testing") + os.sep


def _inside_memokit(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) and not filename.startswith(_TESTING_DIR)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside memokit."""
    # Key validation is reached through different depths (get, get_many, the async
    # twins, a decorator); walk out of the package rather than guess a number.
    frame = sys._getframe(1)
    level = 1
    while frame is not None and (
        _inside_memokit(frame.f_code.co_filename)
        or frame.f_code.co_filename.startswith("<frozen")
        or "asyncio" in frame.f_code.co_filename
    ):
        frame = frame.f_back  # type: ignore[assignment]  # None ends the loop
        level += 1
    return level


def report_key(key: str, strict: bool) -> None:
    """Warn about (or, when ``strict``, refuse) each reason memcached could not store ``key``."""
    for message in memcache_key_warnings(key):
        if strict:
            raise InvalidCacheKey(message)
        warnings.warn(message, CacheKeyWarning, stacklevel=_caller_stacklevel())
