"""Shared Django tests that memokit replaces, each with the reason beside it.

A mixin here is put before Django's ``BaseCacheTests`` in a backend's test
class. Its ``test_*`` methods replace Django's tests of the same name; a helper
it replaces (``_perform_invalid_key_test``) changes the tests listed in its
``replaces`` attribute. The run counts and prints every replaced test, so a
replacement is never silent. Each one asserts memokit's behaviour: it is a
test, not a skip.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.cache import InvalidCacheKey, cache


class DatabaseCullRule:
    """Culls start at ``count > MAX_ENTRIES``, Django's database-cache rule.

    Django's own ``DBCacheTests.test_zero_cull`` expects 18 entries for the same
    reason; the locmem/filebased rule (``>=``) leaves 19.
    """

    replaces: ClassVar[frozenset[str]] = frozenset({"test_zero_cull"})
    _perform_cull_test: Any

    def test_zero_cull(self) -> None:
        self._perform_cull_test("zero_cull", 50, 18)


class StrictKeys:
    """A key memcached cannot store raises ``InvalidCacheKey`` instead of warning.

    This is Django's own adjustment in ``BaseMemcachedTests``: the message names
    the made key, and ``test_invalid_with_version_key_length`` uses the default
    key function (a 248-character key plus ``:1:`` is too long).
    """

    replaces: ClassVar[frozenset[str]] = frozenset(
        {
            "test_invalid_key_characters",
            "test_invalid_key_length",
            "test_invalid_with_version_key_length",
        }
    )
    assertRaises: Any
    assertEqual: Any
    subTest: Any

    def _perform_invalid_key_test(self, key: str, expected_warning: str) -> None:
        # The made key is what is checked, so the message names it (Django's variant).
        message = expected_warning.replace(key, cache.make_key(key))
        operations: list[tuple[str, list[Any]]] = [
            ("add", [key, 1]),
            ("get", [key]),
            ("set", [key, 1]),
            ("incr", [key]),
            ("decr", [key]),
            ("touch", [key]),
            ("delete", [key]),
            ("get_many", [[key, "b"]]),
            ("set_many", [{key: 1, "b": 2}]),
            ("delete_many", [[key, "b"]]),
        ]
        for operation, args in operations:
            with self.subTest(operation=operation), self.assertRaises(InvalidCacheKey) as cm:
                getattr(cache, operation)(*args)
            self.assertEqual(str(cm.exception), message)

    def test_invalid_with_version_key_length(self) -> None:
        key = "a" * 248
        expected = f"Cache key will cause errors if used with memcached: {key!r} (longer than 250)"
        self._perform_invalid_key_test(key, expected)


def derived_overrides(capabilities: Any) -> tuple[type, ...]:
    """The mixins a backend needs, from its declared capabilities."""
    mixins: list[type] = []
    if capabilities.culls and capabilities.cull_rule == "count > MAX_ENTRIES":
        mixins.append(DatabaseCullRule)
    if capabilities.strict_keys:
        mixins.append(StrictKeys)
    return tuple(mixins)


def derived_exclude(capabilities: Any) -> frozenset[str]:
    """Django's aliases to leave out: the culling ones when the backend does not cull."""
    return frozenset() if capabilities.culls else frozenset({"cull", "zero_cull"})


def replaced_tests(mixins: tuple[type, ...]) -> frozenset[str]:
    """Every Django test that ``mixins`` replace."""
    names: set[str] = set()
    for mixin in mixins:
        names |= getattr(mixin, "replaces", frozenset())
    return frozenset(names)
