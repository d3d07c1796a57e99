"""Cache keys: the default key function, loading a custom one, and validation.

Keys follow Django's rules exactly: the final key is ``"prefix:version:key"`` and
is checked for what memcached cannot store (over 250 characters, control
characters or space).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, Final, TypeAlias, TypeVar

from .exceptions import ImproperlyConfigured, InvalidCacheKey

KeyFunc: TypeAlias = Callable[[Any, str, Any], str]
V = TypeVar("V", bound=Callable[..., Any])

MEMCACHE_MAX_KEY_LENGTH = 250
HASH_TAG_LENGTH: Final = 10
"""What a Redis Cluster cache puts before each made key: ``{`` + 8 hex digits + ``}``,
a hash tag choosing the key's slot. It counts against the 250 characters above: the
50 that ``MAX_KEY_LENGTH`` leaves hold the tag, the version and a ``KEY_PREFIX`` of
up to 37 characters there."""
_BAD_CHARACTER = re.compile(r"[\x00-\x20\x7f]").search
_BAD_BYTES = bytes([*range(0x21), 0x7F])  # the same characters, for bytes.translate


def default_key_func(key: Any, key_prefix: str, version: Any) -> str:
    """Return ``"key_prefix:version:key"``, Django's default key function."""
    return f"{key_prefix}:{version}:{key}"


def made_key_prefix(key_prefix: str, version: Any) -> str:
    """Return what :func:`default_key_func` puts before every key: ``"key_prefix:version:"``."""
    return default_key_func("", key_prefix, version)


_CLEAN_KEYS_MARK: Final = "__memokit_clean_keys_pass__"


def clean_keys_pass(validate_key: V) -> V:
    """Mark a ``validate_key`` override that accepts every key :func:`key_is_clean` passes
    and that is ASCII, as the default one does.

    The decorator layer then skips validating the keys it makes itself (see
    ``BaseCache._plain_key_prefix``); an override without the mark is called for each.
    """
    setattr(validate_key, _CLEAN_KEYS_MARK, True)
    return validate_key


def accepts_clean_keys(validate_key: Callable[..., Any]) -> bool:
    """Whether ``validate_key`` was marked with :func:`clean_keys_pass`."""
    return getattr(validate_key, _CLEAN_KEYS_MARK, False) is True


def import_string(dotted_path: str, setting: str) -> Any:
    """Import ``"package.module.attribute"`` and return the attribute."""
    module_path, _, attribute = dotted_path.rpartition(".")
    if not module_path:
        raise ImproperlyConfigured(
            f"{setting}={dotted_path!r} is not a dotted path; write it as 'package.module.name'"
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{setting}={dotted_path!r}: cannot import module {module_path!r} ({exc})"
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImproperlyConfigured(
            f"{setting}={dotted_path!r}: module {module_path!r} has no attribute {attribute!r}"
        ) from None


def get_key_func(key_func: KeyFunc | str | None) -> KeyFunc:
    """Return the key function named by ``KEY_FUNCTION`` (callable, dotted path or None)."""
    if key_func is None:
        return default_key_func
    if isinstance(key_func, str):
        key_func = import_string(key_func, "KEY_FUNCTION")
    if not callable(key_func):
        raise ImproperlyConfigured(
            f"KEY_FUNCTION must be a callable (key, key_prefix, version) -> str "
            f"or a dotted path to one, not {key_func!r}"
        )
    return key_func


def memcache_key_warnings(key: str) -> list[str]:
    """Return Django's messages for each way ``key`` would break memcached."""
    problems = []
    if len(key) > MEMCACHE_MAX_KEY_LENGTH:
        problems.append(
            f"Cache key will cause errors if used with memcached: {key!r} "
            f"(longer than {MEMCACHE_MAX_KEY_LENGTH})"
        )
    if _BAD_CHARACTER(key):
        problems.append(
            f"Cache key contains characters that will cause errors if used with memcached: {key!r}"
        )
    return problems


def key_is_clean(key: str) -> bool:
    """Fast check: True when ``memcache_key_warnings(key)`` would be empty."""
    return len(key) <= MEMCACHE_MAX_KEY_LENGTH and _BAD_CHARACTER(key) is None


def clean_batch(keys: list[Any], room: int) -> bool:
    """Fast check of a batch: True when every key is an exact ``str`` of ASCII characters,
    at most ``room`` long, that :func:`key_is_clean` passes (then so does each key after a
    clean ASCII prefix of ``MEMCACHE_MAX_KEY_LENGTH - room`` characters); False for an
    empty batch. A False says nothing about any one key: check them one by one then.
    """
    if set(map(type, keys)) != {str}:  # a subclass may format itself otherwise
        return False
    joined = "".join(keys)
    if not joined.isascii() or (len(joined) > room and max(map(len, keys)) > room):
        return False
    # One C loop over the bytes (a regex or isprintable() costs twice as much).
    data = joined.encode()
    return len(data.translate(None, _BAD_BYTES)) == len(data)


def refuse_surrogates(key: str) -> None:
    """Raise :class:`InvalidCacheKey` when ``key`` holds a lone surrogate.

    One rule for every backend: SQLite, Redis and Memcached cannot encode such
    a key as UTF-8, so none stores it (the memory and filesystem backends could,
    and refuse it too, so that code moves between backends unchanged).
    """
    if key.isascii():
        return
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCacheKey(
            f"cache key {key!r} holds a lone surrogate (as os.fsdecode() makes from a file "
            f"name that is not UTF-8), which no backend can store as text; pass "
            f"os.fsencode(name).hex(), or the name decoded with errors='replace'"
        ) from None
