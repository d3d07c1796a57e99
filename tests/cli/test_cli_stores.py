"""The command line against real SQLite, Redis and Memcached stores that another
process filled: what it reads, and what it changes, that process sees at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., Any]
Worker = Any
SECRET = "cli-test-signing-secret-0123456789abcdef"  # noqa: S105  # a test signing secret


def _sqlite(request: pytest.FixtureRequest, project: Path) -> tuple[dict[str, Any], str]:
    path = project / "cache.sqlite3"
    return {"BACKEND": "sqlite", "LOCATION": str(path)}, f"sqlite://{path}"


def _redis(request: pytest.FixtureRequest, project: Path) -> tuple[dict[str, Any], str]:
    import redis

    url = f"{request.getfixturevalue('redis_server').url}/0"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return {"BACKEND": "redis", "LOCATION": url}, url


def _memcached(request: pytest.FixtureRequest, project: Path) -> tuple[dict[str, Any], str]:
    from pymemcache.client.base import Client

    server = request.getfixturevalue("memcached_server")
    client = Client((server.host, server.port), connect_timeout=2, timeout=2)
    client.flush_all(noreply=False)
    client.close()
    return {"BACKEND": "memcached", "LOCATION": server.url}, f"memcached://{server.url}"


# The server stores are slow-marked: the quick runs (the Pythons after the first) cover
# the command line on SQLite, and the full run on all three, within the time budget.
STORES = [
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_redis, id="redis", marks=[pytest.mark.server, pytest.mark.slow]),
    pytest.param(_memcached, id="memcached", marks=[pytest.mark.server, pytest.mark.slow]),
]


@pytest.fixture(params=STORES)
def store(
    request: pytest.FixtureRequest, project: Path, write_settings: Callable[..., None]
) -> tuple[dict[str, Any], str]:
    """The store's CACHES entry (signed, with a secret) written for both processes, and
    its backend URL."""
    entry, url = request.param(request, project)
    entry["OPTIONS"] = {"SECRET": SECRET}
    write_settings(entry)
    return entry, url


def test_what_another_process_stored_is_read_and_invalidated_at_once(
    store: tuple[dict[str, Any], str], run: Run, worker: Callable[[], Worker]
) -> None:
    app = worker()
    assert app.ask("price 21") == {"value": 42, "computed": {"price": 1, "stock": 0}}
    app.ask("stock apple")
    app.ask("set greeting")
    settings = ("--settings", "cachesettings:CACHES")

    # One call: the key it was built, and the value the other process stored.
    shown = run("inspect", "shop:price", "21", *settings, "--json")
    assert shown.code == 0, shown.err
    document = shown.json()
    assert document["found"] is True
    assert document["key"] == "k2:shop:price(i21)"
    assert document["value"] == "42"
    # Keys are type-aware: '21' is another call, never stored.
    other = run("inspect", "shop:price", "'21'", *settings, "--json")
    assert other.code == 1
    assert other.json()["found"] is False
    assert other.json()["key"] == "k2:shop:price(s2:21)"
    # JSON arguments, and a keyword argument as a literal.
    assert run("inspect", "shop:stock", "--args-json", '["apple"]', *settings).code == 0
    # Defaults are bound: warehouse='main' is the same call; 'north' is another.
    same = run("inspect", "shop:stock", "'apple'", "warehouse='main'", *settings, "--json")
    assert (same.code, same.json()["found"]) == (0, True)
    kw = run("inspect", "shop:stock", "'apple'", "warehouse='north'", *settings, "--json")
    assert (kw.code, kw.json()["found"]) == (1, False)
    raw = run("get", "greeting", *settings, "--json")
    assert raw.code == 0, raw.err
    assert raw.json()["value"] == "{'stored': 'greeting'}"
    missing = run("get", "no-such-key", *settings)
    assert missing.code == 1
    assert "nothing is stored at key 'no-such-key'" in missing.out

    # One call invalidated from the command line: the other process recomputes it.
    gone = run("invalidate", "shop:price", "21", *settings)
    assert gone.code == 0, gone.err
    assert "removed the entry of shop:price(21) (key 'k2:shop:price(i21)')" in gone.out
    again = run("invalidate", "shop:price", "21", *settings)
    assert "nothing was stored for shop:price(21)" in again.out
    assert app.ask("price 21")["computed"]["price"] == 2
    assert app.ask("price 21")["computed"]["price"] == 2  # stored again: a hit

    # A tag, then every call of a function.
    assert run("invalidate", "--tag", "catalog", *settings).code == 0
    stale = run("inspect", "shop:price", "21", *settings, "--json")
    assert stale.code == 1
    assert "it was invalidated" in stale.json()["reason"]
    assert app.ask("price 21")["computed"]["price"] == 3
    everything = run("invalidate", "shop:price", "--all", *settings, "--json")
    assert everything.code == 0, everything.err
    assert isinstance(everything.json()["version"], int)
    assert app.ask("price 21")["computed"]["price"] == 4

    # A namespace rolled back serves what was stored under its old version again.
    assert run("invalidate", "--namespace", "catalog", *settings).code == 0
    assert app.ask("price 21")["computed"]["price"] == 5
    back = run("invalidate", "--namespace", "catalog", "--back", *settings, "--json")
    assert back.code == 0, back.err
    assert back.json()["version"] == back.json()["before"] - 1


def test_info_stats_and_clear_never_import_the_application(
    store: tuple[dict[str, Any], str],
    run: Run,
    worker: Callable[[], Worker],
    project: Path,
    cli_env: Callable[..., dict[str, str]],
) -> None:
    _, url = store
    app = worker()
    for n in (1, 2, 1, 1):
        app.ask(f"price {n}")
    app.ask("stock pear")
    app.ask("flush")
    # The application cannot be imported: info and clear do not need it.
    (project / "shop.py").write_text("raise RuntimeError('application code imported')\n")
    by_url = ("--url", url)

    info = run("info", *by_url, "--json")
    assert info.code == 0, info.err
    (alias,) = info.json()["aliases"]
    assert alias["alias"] == "default"
    assert alias["backend"] in {"SQLiteCache", "RedisCache", "MemcachedCache"}
    assert "cross_process" in alias["capabilities"]
    if alias["backend"] == "MemcachedCache":
        assert alias["entries"] is None  # memcached cannot tell
    else:
        assert alias["entries"] >= 3
    table = run("info", *by_url)
    assert table.code == 0, table.err
    assert "default" in table.out
    assert alias["backend"] in table.out

    # The other process's functions, with their hit ratios. Its totals are signed:
    # the command line reads them with the same SECRET (MEMOKIT_SECRET, beside a URL).
    signed = cli_env(MEMOKIT_SECRET=SECRET, COLUMNS="200")
    shared = run("stats", *by_url, "--json", env=signed)
    assert shared.code == 0, shared.err
    functions = {f["function"]: f for f in shared.json()["functions"]}
    assert set(functions) == {"shop:price", "shop:stock"}
    assert (functions["shop:price"]["hits"], functions["shop:price"]["misses"]) == (2, 2)
    assert functions["shop:price"]["hit_ratio"] == 0.5
    assert functions["shop:stock"]["hit_ratio"] == 0.0
    drawn = run("stats", *by_url, env=signed)
    assert drawn.code == 0, drawn.err
    assert "shop:price" in drawn.out
    assert "50.0%" in drawn.out

    # clear asks; "n" (or no answer) keeps everything.
    declined = run("clear", *by_url, stdin="n\n")
    assert declined.code == 1
    assert "Remove" in declined.err
    assert "nothing removed" in declined.err
    assert app.ask("price 1")["computed"]["price"] == 2  # still a hit
    # --yes does not ask.
    cleared = run("clear", "--yes", *by_url, "--json")
    assert cleared.code == 0, cleared.err
    assert "Remove" not in cleared.err
    if alias["entries"] is not None:
        assert cleared.json()["removed"] >= 3
    assert app.ask("price 1")["computed"]["price"] == 3  # gone for the other process too


def test_a_backend_that_cannot_be_reached_exits_1(run: Run) -> None:
    from memokit.testing import free_port

    down = run("info", "--url", f"redis://:hunter2secret@127.0.0.1:{free_port()}/0")
    assert down.code == 1
    assert "unavailable" in down.out
    assert "hunter2secret" not in down.out + down.err
    failed = run("get", "k", "--url", f"redis://127.0.0.1:{free_port()}/0")
    assert failed.code == 1
    assert "BackendUnavailable" in failed.err
