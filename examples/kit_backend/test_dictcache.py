"""DictCache's own tests, beside the contract the kit runs (what only this backend promises)."""

from __future__ import annotations

from dictcache import DictCache

import memokit


def test_settings_name_the_class_by_its_dotted_path() -> None:
    cache = memokit.create_cache({"BACKEND": "dictcache.DictCache", "LOCATION": "settings"})
    assert isinstance(cache, DictCache)


def test_the_kit_gives_a_cache_on_a_fresh_store(cache: memokit.BaseCache) -> None:
    assert isinstance(cache, DictCache)
    assert cache.get("anything") is None
