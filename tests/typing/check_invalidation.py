"""Checked by ``mypy --strict`` and pyright (tests/decorators/test_typing.py), never run
by pytest.

The invalidation helpers take exactly the decorated function's parameters.
"""

# Each `# type: ignore` marks a line that both checkers must reject: mypy --strict
# and, with this setting, pyright report one that is not needed.
# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from typing import assert_type

import memokit
from memokit import cached


@cached(tags=("user:{user_id}", "pages"))
def page(user_id: int, number: int = 1) -> str:
    return ""


@cached(tags=lambda user_id: [f"user:{user_id}"])
async def profile(user_id: int) -> dict[str, str]:
    return {}


class Shop:
    def __cache_key__(self) -> int:
        return 1

    @cached(tags="shop")
    def price(self, sku: str) -> int:
        return 1


assert_type(memokit.invalidate(page, 5), bool)
assert_type(memokit.invalidate(page, 5, number=2), bool)
memokit.invalidate(page, "5")  # type: ignore[arg-type]  # user_id is an int
memokit.invalidate(page, 5, page=2)  # type: ignore[call-arg]  # no such parameter
assert_type(memokit.invalidate(profile, 5), bool)
assert_type(memokit.invalidate(Shop().price, "A-1"), bool)
memokit.invalidate(Shop().price, 1)  # type: ignore[arg-type]  # sku is a str
memokit.invalidate_many(page, [(5,), memokit.call(6, number=2)])
assert_type(memokit.invalidate_all(page), int)
assert_type(page.invalidate_all(), int)
memokit.invalidate_tags("user:5", "pages")
memokit.invalidate_tags("user:5", cache="default")
memokit.invalidate_tags(5)  # type: ignore[arg-type]  # tags are str
assert_type(memokit.get_version("pages"), int)
assert_type(memokit.incr_version("pages"), int)
assert_type(memokit.decr_version(page, 1), int)


async def main() -> None:
    assert_type(await memokit.ainvalidate(page, 5), bool)
    assert_type(await profile.invalidate_all(), int)
    assert_type(await memokit.ainvalidate_all(profile), int)
    assert_type(await memokit.aincr_version("pages"), int)
    await memokit.ainvalidate_tags("user:5")
