"""Invalidation seen by another process and by concurrent readers.

The cross-process test runs on every backend whose store processes share
(``capabilities.cross_process``): a child interpreter imports the same module
of cached functions over the same ``CACHES`` entry, so both processes use the
same keys and counters.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import cached

CacheFactory = Any

MODULE = textwrap.dedent(
    """
    import json, os
    import memokit
    from memokit import cached

    cache = memokit.create_cache(json.loads(os.environ["MEMOKIT_SHARED_CACHE"]))
    DATA = os.environ["MEMOKIT_SHARED_DATA"]


    def database() -> str:
        with open(DATA, encoding="utf-8") as file:
            return file.read()


    @cached(cache=cache, tags=("user:{user_id}",), timeout=None)
    def profile(user_id: int) -> str:
        return f"{database()}:{user_id}"
    """
)

CHILD = textwrap.dedent(
    """
    import importlib, json, sys
    sys.path.insert(0, sys.argv[1])
    shared = importlib.import_module(sys.argv[2])
    import memokit
    action = sys.argv[3]
    if action == "invalidate":
        memokit.invalidate(shared.profile, 5)
    elif action == "invalidate_all":
        shared.profile.invalidate_all()
    elif action == "invalidate_tags":
        memokit.invalidate_tags("user:5", cache=shared.cache)
    print(json.dumps(shared.profile(5)))
    """
)


def test_another_process_sees_every_invalidation(
    make_cache: CacheFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache()
    if not cache.capabilities.cross_process:
        pytest.skip("the backend's store is not shared between processes")
    name = f"shared_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(MODULE, encoding="utf-8")
    data = tmp_path / "database.txt"
    env = {
        "MEMOKIT_SHARED_CACHE": json.dumps(make_cache.config),
        "MEMOKIT_SHARED_DATA": str(data),
    }
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    shared = importlib.import_module(name)
    try:

        def child(action: str) -> str:
            source = str(Path(memokit.__file__).resolve().parent.parent)
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(tmp_path), name, action],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**os.environ, "PYTHONPATH": source},
            )
            assert result.returncode == 0, result.stderr
            return str(json.loads(result.stdout))

        data.write_text("v1")
        assert shared.profile(5) == "v1:5"
        data.write_text("v2")
        assert child("read") == "v1:5"  # the child is served the parent's entry
        memokit.invalidate_tags("user:5", cache=shared.cache)
        assert child("read") == "v2:5"  # the parent's invalidation reached the child
        data.write_text("v3")
        assert child("invalidate_all") == "v3:5"
        assert shared.profile(5) == "v3:5"  # and the child's reached the parent
        data.write_text("v4")
        assert child("invalidate_tags") == "v4:5"
        assert shared.profile(5) == "v4:5"
        data.write_text("v5")
        assert child("invalidate") == "v5:5"
        assert shared.profile(5) == "v5:5"
        data.write_text("v6")
        shared.profile.invalidate_all()
        assert child("read") == "v6:5"
    finally:
        shared.cache.close()
        sys.modules.pop(name, None)


@pytest.mark.parametrize("tag", ["table:{table}", "orders"], ids=["per-call-tag", "fixed-tag"])
def test_readers_never_see_a_value_older_than_the_last_finished_invalidation(
    make_cache: CacheFactory, tag: str
) -> None:
    cache = make_cache(TIMEOUT=None)
    database = {"generation": 0}
    finished = {"generation": 0}  # the newest generation whose invalidation finished
    errors: list[str] = []
    done = threading.Event()

    @cached(cache=cache, tags=(tag,))
    def read(table: str) -> int:
        seen = database["generation"]
        time.sleep(0.0005)  # a slow query: invalidations land while it runs
        return seen

    def reader() -> None:
        try:
            while not done.is_set():
                floor = finished["generation"]
                value = read("orders")
                if value < floor:
                    errors.append(f"read {value} after invalidation {floor} had finished")
                    return
        except BaseException as exc:  # report, never hang the test
            errors.append(repr(exc))

    def invalidator() -> None:
        try:
            # Bounded by count and by time, whichever comes first.
            deadline = time.monotonic() + 3
            for _ in range(150):
                database["generation"] += 1  # the data changes ...
                memokit.invalidate_tags(tag.format(table="orders"), cache=cache)  # ... then say so
                finished["generation"] = database["generation"]
                if time.monotonic() > deadline:
                    break
        except BaseException as exc:
            errors.append(repr(exc))
        finally:
            done.set()

    threads = [threading.Thread(target=reader) for _ in range(8)]
    threads.append(threading.Thread(target=invalidator))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert finished["generation"] > 10
    assert read("orders") == database["generation"]


def test_invalidate_all_under_concurrent_readers(make_cache: CacheFactory) -> None:
    cache = make_cache(TIMEOUT=None)
    database = {"generation": 0}
    finished = {"generation": 0}
    errors: list[str] = []
    done = threading.Event()

    @cached(cache=cache)
    def read(n: int) -> int:
        seen = database["generation"]
        time.sleep(0.0005)
        return seen

    def reader(n: int) -> None:
        while not done.is_set():
            floor = finished["generation"]
            value = read(n % 2)
            if value < floor:
                errors.append(f"read {value} after invalidation {floor} had finished")
                return

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 2
        for _ in range(60):
            database["generation"] += 1
            read.invalidate_all()
            finished["generation"] = database["generation"]
            if time.monotonic() > deadline:
                break
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
