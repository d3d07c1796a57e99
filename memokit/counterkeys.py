"""Counter keys: the names of the per-function and per-tag counters, and tag templates.

Every decorated function has a counter in its cache (``memokit.fn:<module:qualname>``)
and so does every tag (``memokit.tag:<tag>``), stored at :data:`COUNTER_VERSION`
whatever the cache's ``VERSION`` or the function's ``version=``, so that caches
of two deploys with different versions on one store share them. Reading and
bumping them is :mod:`memokit.counters`.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias

from .binding import bound_names, make_binder
from .identity import function_identity, function_name

COUNTER_VERSION: Final = 0
"""The ``version`` counters are stored under, the same for every cache ``VERSION``."""

FUNCTION_COUNTER: Final = "memokit.fn:"
TAG_COUNTER: Final = "memokit.tag:"
_MAX_NAME: Final = 150
"""Longest tag or function name kept readable in a counter key; longer ones are digested."""
MAX_COUNTER_KEY: Final = len(TAG_COUNTER) + _MAX_NAME
"""Longest counter key (before prefix and version): a tag of ``_MAX_NAME`` characters."""
_SAFE_NAME = re.compile(r"[\x21-\x7e]+").fullmatch

TagsSpec: TypeAlias = str | Iterable[str] | Callable[..., Iterable[str]]
"""What ``@cached(tags=...)`` takes: a template, several templates, or a callable."""
TagsBuilder: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], Iterable[str]]
"""Turns one call's ``(args, kwargs)`` into its tags."""


def _counter_name(prefix: str, name: str) -> str:
    if len(name) <= _MAX_NAME and _SAFE_NAME(name):
        return prefix + name
    # Spaces, non-ASCII or a long name: a digest keeps every key memcached-safe.
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{prefix}#{digest}"


def tag_counter_key(tag: str) -> str:
    """Return the key (before prefix and version) of ``tag``'s counter."""
    return _counter_name(TAG_COUNTER, tag)


def function_counter_key(
    func: Callable[..., Any], key: object = None, identity: str | None = None
) -> str:
    """Return the key of the per-function counter of ``func`` (decorated with ``key=``).

    ``identity`` is the function's identity in keys (``function_identity``), when
    it has one; without it, a ``key=`` template or callable stands for the function.
    """
    if identity is not None:
        return _counter_name(FUNCTION_COUNTER, identity)
    try:
        name = function_identity(func)
    except TypeError:
        # A partial or callable object has no stable name; its key= stands for it.
        if isinstance(key, str):
            name = f"key={key}"
        elif callable(key):
            name = f"key={function_name(key)}"
        else:
            raise
    return _counter_name(FUNCTION_COUNTER, name)


def prepare_counters(
    func: Callable[..., Any], key: object, tags: object, identity: str | None = None
) -> tuple[list[str], TagsBuilder | None]:
    """Return the counters every call of ``func`` reads, and the builder of per-call tags.

    The names are the function's counter, then one per fixed tag; a tag that
    depends on the arguments is built per call by the builder (None if none).
    """
    static, dynamic = make_tags_builder(func, tags)
    names = [function_counter_key(func, key, identity), *(tag_counter_key(tag) for tag in static)]
    return list(dict.fromkeys(names)), dynamic


def make_tags_builder(
    func: Callable[..., Any], tags: object
) -> tuple[tuple[str, ...], TagsBuilder | None]:
    """Validate ``@cached(tags=...)`` now; return the fixed tags and a per-call builder.

    A template names parameters (``"user:{user_id}"``, ``"org:{org.pk}"``) and is
    formatted with the call's bound arguments; a callable takes the call's
    arguments and returns an iterable of str.
    """
    if callable(tags):
        return (), _callable_tags(tags)
    if isinstance(tags, str):
        templates: tuple[Any, ...] = (tags,)
    elif isinstance(tags, Iterable):
        templates = tuple(tags)
    else:
        raise TypeError(
            f"tags must be a template such as 'user:{{user_id}}', a list of them, or a "
            f"callable returning tags, not {tags!r}"
        )
    names = bound_names(func)
    static: list[str] = []
    dynamic: list[str] = []
    for template in templates:
        if not isinstance(template, str) or not template:
            raise TypeError(
                f"tags must hold non-empty str templates such as 'user:{{user_id}}', "
                f"not {template!r}"
            )
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
        (dynamic if fields else static).append(template)
        for field in fields:
            base = re.split(r"[.\[]", field, maxsplit=1)[0]
            if base == "" or base.isdigit() or base not in names:
                raise ValueError(
                    f"tag {template!r} uses {{{field}}}, which does not name a parameter of "
                    f"{getattr(func, '__qualname__', func)}; its parameters are "
                    f"{', '.join(names) or 'none'}"
                )
    fixed = tuple(dict.fromkeys(static))
    if not dynamic:
        return fixed, None
    bind = make_binder(func)

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterable[str]:
        values = dict(zip(names, bind(args, kwargs), strict=True))
        return [template.format_map(values) for template in dynamic]

    return fixed, build


def _callable_tags(tags: Callable[..., object]) -> TagsBuilder:
    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterable[str]:
        made = tags(*args, **kwargs)
        if isinstance(made, str) or not isinstance(made, Iterable):
            raise TypeError(
                f"tags={getattr(tags, '__qualname__', tags)!r} returned {made!r}; a tags "
                f"callable must return an iterable of str, for example [f'user:{{user_id}}']"
            )
        made = list(made)
        for tag in made:
            if not isinstance(tag, str) or not tag:
                raise TypeError(
                    f"tags={getattr(tags, '__qualname__', tags)!r} returned {tag!r} among its "
                    f"tags; each tag must be a non-empty str"
                )
        return made

    return build
