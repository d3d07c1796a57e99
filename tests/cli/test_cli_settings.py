"""Where the command line finds its settings, what it says when they are wrong (exit 2),
secrets never shown, and what it does without the ``cli`` extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., Any]
PASSWORD = "pw-Zq8wLx31"  # noqa: S105 - never sent anywhere: the server does not exist
SIGNING = "signing-secret-for-the-cli-tests-7f3a9c"


def _sqlite(project: Path) -> dict[str, Any]:
    return {
        "BACKEND": "sqlite",
        "LOCATION": str(project / "c.sqlite3"),
        "OPTIONS": {"SECRET": SIGNING},
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("info",), "no cache settings: give --url"),
        (("info", "--url", "ftp://host/x"), "unknown scheme 'ftp'; use one of: redis://"),
        (("info", "--url", "sqlite:///x", "--settings", "s"), "give one of --url, --settings"),
        (("info", "--url", "sqlite://relative.db"), "give an absolute path, as sqlite:///"),
        (("info", "--url", "localhost:6379"), "is not a backend URL"),
        (("info", "--url", "sqlite:///tmp/x.db?VERSION=two"), "VERSION='two' is not a number"),
        (("info", "--settings", "no_such_module:CACHES"), "cannot import 'no_such_module'"),
        (("info", "--settings", "cachesettings:NOPE"), "has no attribute 'NOPE'"),
        (("info", "--settings", "badsettings:CACHES"), "Unknown BACKEND 'sqlit'"),
        (("info", "--settings", "cachesettings", "--alias", "other"), "--alias 'other' is not"),
        (("inspect", "shop:plain", "1", "--settings", "cachesettings"), "not decorated with"),
        (("inspect", "shop:price", "oops(", "--settings", "cachesettings"), "not a Python literal"),
        (("inspect", "shop:price", "1", "2", "--settings", "cachesettings"), "positional"),
        (("inspect", "shop", "--settings", "cachesettings"), "is not a function path"),
        (("invalidate", "--settings", "cachesettings"), "give one of: FUNCTION"),
        (
            ("inspect", "shop:price", "1", "--alias", "default", "--settings", "cachesettings"),
            "--alias does not go with a function",
        ),
        (("stats", "--settings", "memsettings"), "keeps its data in this process"),
        (("stats", "--json", "--watch", "--settings", "cachesettings"), "--watch redraws"),
        (("clear", "--batch", "-1", "--settings", "cachesettings"), "Invalid value"),
    ],
)
def test_bad_usage_and_settings_exit_2_naming_the_fix(
    args: tuple[str, ...],
    says: str,
    run: Run,
    project: Path,
    write_settings: Callable[..., None],
) -> None:
    write_settings(_sqlite(project))
    (project / "badsettings.py").write_text(
        f"CACHES = {{'default': {{'BACKEND': 'sqlit', 'OPTIONS': {{'SECRET': {SIGNING!r}}}}}}}\n"
    )
    (project / "memsettings.py").write_text("CACHES = {'default': {'BACKEND': 'memory'}}\n")
    result = run(*args)
    assert result.code == 2, (result.out, result.err)
    assert says in result.err
    assert SIGNING not in result.out + result.err
    assert "Traceback" not in result.err


def test_settings_from_every_source(
    run: Run, project: Path, write_settings: Callable[..., None], cli_env: Callable[..., Any]
) -> None:
    write_settings(_sqlite(project))
    location = str(project / "c.sqlite3")
    (project / "configured.py").write_text(
        "import memokit, cachesettings\nmemokit.configure(cachesettings.CACHES)\n"
    )
    (project / "setup_caches.py").write_text(
        "import memokit, cachesettings\n\n"
        "def setup():\n    memokit.configure(cachesettings.CACHES)\n"
    )
    sources: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("--settings", "cachesettings:CACHES"), {}),
        (("--settings", "cachesettings"), {}),  # a module with CACHES
        (("--settings", "configured"), {}),  # a module that calls configure()
        (("--settings", "setup_caches:setup"), {}),  # a function that calls it
        ((), {"MEMOKIT_SETTINGS": "cachesettings"}),
        (("--url", f"sqlite://{location}"), {}),
        ((), {"MEMOKIT_URL": f"sqlite://{location}", "MEMOKIT_SETTINGS": "no_such_module"}),
        (("--settings", "cachesettings"), {"MEMOKIT_URL": "ftp://ignored"}),  # a flag first
    ]
    for args, env in sources:
        result = run("info", *args, "--json", env=cli_env(**env))
        assert result.code == 0, (args, env, result.err)
        (alias,) = result.json()["aliases"]
        assert (alias["backend"], alias["location"]) == ("SQLiteCache", location), (args, env)
        assert SIGNING not in result.out


def test_django_settings_use_the_aliases_served_by_memokit(
    run: Run, project: Path, cli_env: Callable[..., Any]
) -> None:
    pytest.importorskip("django")
    redis_url = f"redis://user:{PASSWORD}@127.0.0.1:1/0"
    (project / "djsite.py").write_text(
        "SECRET_KEY = 'django-insecure-test'\n"
        "CACHES = {\n"
        "    'default': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'},\n"
        "    'shared': {\n"
        "        'BACKEND': 'memokit.contrib.django.MemokitCache',\n"
        f"        'LOCATION': {str(project / 'dj.sqlite3')!r},\n"
        f"        'OPTIONS': {{'BACKEND': 'sqlite', 'SECRET': {SIGNING!r}}},\n"
        "    },\n"
        "    'sessions': {\n"
        "        'BACKEND': 'memokit.contrib.django.MemokitCache',\n"
        f"        'LOCATION': {redis_url!r},\n"
        "        'OPTIONS': {'BACKEND': 'redis'},\n"
        "    },\n"
        "}\n"
    )
    by_flag = run("info", "--django-settings", "djsite", "--json")
    by_env = run("info", "--json", env=cli_env(DJANGO_SETTINGS_MODULE="djsite"))
    for result in (by_flag, by_env):
        assert result.code == 1, result.err  # the Redis alias cannot be reached
        document = result.json()
        aliases = {a["alias"]: a for a in document["aliases"]}
        assert aliases["shared"]["backend"] == "SQLiteCache"
        assert aliases["shared"]["entries"] == 0
        assert aliases["sessions"]["error"].startswith("BackendUnavailable")
        assert any("'default' left out" in note for note in document["notes"])
        assert PASSWORD not in result.out + result.err
        assert SIGNING not in result.out + result.err
    table = run("info", "--django-settings", "djsite")
    assert "shared" in table.out
    assert PASSWORD not in table.out + table.err
    missing = run("info", "--django-settings", "no_such_site")
    assert missing.code == 2
    assert "cannot import the settings module" in missing.err


def test_secrets_never_shown(run: Run, project: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0?SECRET={SIGNING}"
    for args in (("info",), ("info", "--json"), ("get", "k"), ("clear", "--yes")):
        result = run(*args, "--url", url)
        assert result.code == 1, (args, result.err)
        assert PASSWORD not in result.out + result.err, args
        assert SIGNING not in result.out + result.err, args
        assert "***" in result.out + result.err


@pytest.mark.parametrize("how", ["module", "script"])
def test_without_the_cli_extra_the_install_line_and_exit_2(
    how: str, project: Path, cli_env: Callable[..., Any]
) -> None:
    # A click that cannot be imported, as when the extra is not installed.
    blocked = project / "blocked"
    (blocked / "click").mkdir(parents=True)
    (blocked / "click" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'click'\", name='click')\n"
    )
    if how == "module":
        command = [sys.executable, "-m", "memokit", "info"]
    else:
        script = Path(sys.executable).parent / "memokit"
        if not script.exists():
            found = shutil.which("memokit")
            if found is None:
                pytest.fail("the memokit console script is not installed (pip install -e .)")
            script = Path(found)
        command = [str(script), "info"]
    done = subprocess.run(
        command,
        cwd=project,
        capture_output=True,
        text=True,
        env=cli_env(PYTHONPATH=str(blocked)),
        timeout=60,
    )
    assert done.returncode == 2
    assert "pip install 'memokit[cli]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("scheme", "name"), [("sqlite", "typo.sqlite3"), ("file", "typo-dir")])
def test_a_url_to_a_store_that_does_not_exist_is_refused_not_created(
    scheme: str, name: str, run: Run, project: Path
) -> None:
    # A mistyped path must not read as an empty cache (exit 0, 0 entries), nor leave
    # a new store behind.
    missing = project / "nowhere" / name
    for args in (("info",), ("stats",), ("get", "k"), ("clear", "--yes")):
        result = run(*args, "--url", f"{scheme}://{missing}")
        assert result.code == 2, (args, result.out, result.err)
        assert f"no {'SQLite database' if scheme == 'sqlite' else 'directory'} at" in result.err
        assert str(missing) in result.err
        assert not (project / "nowhere").exists(), args


def test_a_store_of_the_application_processes_own_memory_is_out_of_reach(
    run: Run, project: Path
) -> None:
    # The command line's own memory cache is not the application's: counting or
    # clearing it would report 0 entries and a done clear while nothing changed.
    (project / "memsettings.py").write_text(
        "CACHES = {'default': {'BACKEND': 'memory'}, 'off': {'BACKEND': 'dummy'}}\n"
    )
    (project / "memshop.py").write_text(
        "import memokit\n\n@memokit.cached\ndef price(n):\n    return n\n"
    )
    info = run("info", "--settings", "memsettings", "--json")
    assert info.code == 0, info.err
    aliases = {a["alias"]: a for a in info.json()["aliases"]}
    assert aliases["default"]["entries"] is None
    assert any("'default'" in n and "in each process" in n for n in info.json()["notes"])
    table = run("info", "--settings", "memsettings")
    assert "not counted" in table.out
    for args, says in [
        (("clear", "--yes"), "keeps its entries in each process"),
        (("clear", "--yes", "--alias", "off"), "stores nothing"),
        (("get", "k"), "keeps its entries in each process"),
        (("invalidate", "--tag", "t"), "keeps its entries in each process"),
        (("invalidate", "memshop:price", "1"), "memshop:price: MemoryCache"),
        (("invalidate", "memshop:price", "--all"), "memshop:price: MemoryCache"),
        (("invalidate", "--namespace", "memshop:price"), "memshop:price: MemoryCache"),
        (("inspect", "memshop:price", "1"), "memshop:price: MemoryCache"),
    ]:
        result = run(*args, "--settings", "memsettings")
        assert result.code == 2, (args, result.out, result.err)
        assert says in result.err, (args, result.err)
        assert "out of the command line's reach" in result.err


def test_reading_without_the_entries_secret_removes_nothing(
    run: Run,
    project: Path,
    worker: Callable[[], Any],
    write_settings: Callable[..., None],
    cli_env: Callable[..., Any],
) -> None:
    # A look from the command line opened without the store's SECRET: the signed
    # entries cannot be read. It must say so (naming SECRET) and leave them alone; the
    # plain API's read of an unreadable entry removes it, and a removed statistics
    # slot hid the function from `stats` for good.
    write_settings(_sqlite(project))
    app = worker()
    app.ask("price 3")
    app.ask("price 3")
    app.ask("flush")
    app.ask("set note")  # a signed plain entry: {"stored": "note"}
    url = ("--url", f"sqlite://{project / 'c.sqlite3'}")
    for args in (("stats",), ("stats", "--json"), ("get", "note")):
        result = run(*args, *url)
        assert result.code == 1, (args, result.out, result.err)
        assert "SECRET" in result.err, (args, result.err)
        assert "Traceback" not in result.err
    signed = run("stats", *url, "--json", env=cli_env(MEMOKIT_SECRET=SIGNING))
    assert signed.code == 0, signed.err
    functions = {f["function"]: f for f in signed.json()["functions"]}
    assert functions["shop:price"]["hits"] == 1
    got = run("get", "note", *url, "--json", env=cli_env(MEMOKIT_SECRET=SIGNING))
    assert got.code == 0, got.err
    assert got.json()["value"] == "{'stored': 'note'}"


def test_keys_and_values_are_shown_as_they_are(run: Run, project: Path) -> None:
    # rich reads ":name:" as an emoji and "[...]" as markup: a key of module `memo`
    # showed as "k2📝...", and a value holding "[/bold]" ended get with a traceback.
    import memokit

    location = project / "shown.sqlite3"
    cache: Any = memokit.create_cache({"BACKEND": "sqlite", "LOCATION": str(location)})
    value = "ok :thumbs_up: [bold]x[/bold] and a stray [/i]"
    cache.set("k2:memo:f(i1)", value)
    cache.close()
    url = ("--url", f"sqlite://{location}")
    as_json = run("get", "k2:memo:f(i1)", *url, "--json")
    assert as_json.code == 0, as_json.err
    assert as_json.json()["made_key"] == ":1:k2:memo:f(i1)"
    assert as_json.json()["value"] == repr(value)
    table = run("get", "k2:memo:f(i1)", *url)
    assert table.code == 0, table.err
    assert ":1:k2:memo:f(i1)" in table.out
    assert repr(value) in table.out
