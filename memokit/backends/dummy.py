"""A backend that stores nothing, for turning caching off without changing code."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import MISSING, BaseCache, Capabilities


class DummyCache(BaseCache):
    """Implements the whole interface and stores nothing, as Django's dummy cache.

    Keys are still validated, so key warnings show up in development. Values are
    not serialised, so an unpicklable value does not raise here.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        stores=False, keeps_objects=True, blocking_io=False
    )

    def _encode(self, value: Any) -> Any:
        return value

    def _decode(self, payload: Any) -> Any:
        return payload

    def _get(self, key: str) -> Any:
        return MISSING

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        return None

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        return True

    def _touch(self, key: str, timeout: float | None) -> bool:
        return False

    def _delete(self, key: str) -> bool:
        return False

    def _incr(self, key: str, delta: int | float) -> Any:
        return MISSING

    def _clear(self) -> None:
        return None

    def _count(self) -> int:
        return 0
