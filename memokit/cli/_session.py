"""One command's run: its settings, its output, and the exit code of what went wrong."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from memokit.backends.base import BaseCache
from memokit.config import caches
from memokit.exceptions import (
    CorruptEntryWarning,
    ImproperlyConfigured,
    MemokitError,
    _CommandFailed,
)

from . import _settings
from ._output import Output
from ._settings import Loaded, SettingsError

F = TypeVar("F", bound=Callable[..., Any])

FAILURES = (MemokitError, OSError, ConnectionError, TimeoutError)
"""What a backend raises when it cannot do the operation: exit 1, the message shown."""


Failed = _CommandFailed
"""The operation failed (exit 1); its message is printed as is."""


class Session:
    """One command's settings and output."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.out = Output(options["as_json"])
        self.options = options
        self._loaded: Loaded | None = None

    def load(self) -> Loaded:
        """Find the settings and configure memokit with them (once)."""
        if self._loaded is None:
            loaded = _settings.load(
                self.options["url"], self.options["settings"], self.options["django_settings"]
            )
            self.out.secrets = loaded.secrets
            self._loaded = loaded
        return self._loaded

    def no_alias(self, function: str) -> None:
        """Refuse ``--alias`` beside a function: it uses the cache it was decorated with."""
        if self.options["alias"]:
            raise SettingsError(
                f"--alias does not go with a function: {function} uses the cache it was "
                f"decorated with; drop --alias"
            )

    def source(self) -> str:
        """Where the settings came from, for messages."""
        return self._loaded.source if self._loaded is not None else "not loaded"

    def cache(self, reach: bool = True) -> tuple[str, BaseCache]:
        """The alias ``--alias`` names (``default``) and its cache; with ``reach``, one
        whose entries another process can see (see :func:`reachable`)."""
        self.load()
        alias: str = self.options["alias"] or "default"
        if alias not in caches:
            raise SettingsError(
                f"--alias {alias!r} is not configured; configured aliases: {', '.join(caches)}"
            )
        if reach:
            reachable(f"--alias {alias!r}", caches[alias])
        return alias, caches[alias]


def out_of_reach(cache: BaseCache) -> str | None:
    """Why the command line cannot see ``cache``'s entries, or None when it can."""
    if not cache.capabilities.stores:
        return f"{cache!r} stores nothing"
    if not cache.capabilities.cross_process:
        return f"{cache!r} keeps its entries in each process"
    return None


def reachable(where: str, cache: BaseCache) -> None:
    """Refuse a cache whose entries live in the application's own processes: read or
    changed from the command line's process, it would show or change nothing of theirs."""
    why = out_of_reach(cache)
    if why is not None:
        raise SettingsError(
            f"{where}: {why}, out of the command line's reach; operate it from the "
            f"application, or use a filesystem, SQLite, Redis or Memcached cache"
        )


def common(command: F) -> F:
    """The settings, ``--alias`` and ``--json`` options every command takes."""
    options = [
        click.option("--url", help="A backend URL for a quick look (or MEMOKIT_URL)."),
        click.option(
            "--settings",
            help="A Python path to CACHES or to a configure() call (or MEMOKIT_SETTINGS).",
        ),
        click.option(
            "--django-settings",
            help="A Django settings module (or DJANGO_SETTINGS_MODULE).",
        ),
        click.option("--alias", help="The cache alias ('default'; info: every alias)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def runs(body: Callable[..., int | None]) -> Callable[..., None]:
    """Run a command's body in a :class:`Session`; turn failures into exit codes."""

    @functools.wraps(body)
    def command(**options: Any) -> None:
        keys = ("url", "settings", "django_settings", "alias", "as_json")
        session = Session({key: options.pop(key) for key in keys})
        try:
            with warnings.catch_warnings():
                # Raised where it is reported, before the plain API removes the entry it
                # cannot read: a look from the command line changes nothing it cannot read.
                warnings.simplefilter("error", CorruptEntryWarning)
                code = body(session, **options) or 0
        except CorruptEntryWarning as exc:
            # The report ends with what the plain API would do next ("...; it counts as
            # a miss and is removed"), which the raise prevented.
            told = str(exc)
            told = told.rpartition("); ")[0] + ")" if "); " in told else told
            session.out.error(
                f"{told}; nothing was removed. Entries written with a SECRET (or another "
                f"SERIALIZER) are read with the same settings: give them in the settings, "
                f"or MEMOKIT_SECRET beside --url"
            )
            code = 1
        except SettingsError as exc:
            session.out.error(str(exc))
            code = 2
        except ImproperlyConfigured as exc:
            session.out.error(f"{exc}; fix the cache settings ({session.source()})")
            code = 2
        except Failed as exc:
            session.out.error(str(exc))
            code = 1
        except FAILURES as exc:
            session.out.error(f"{type(exc).__name__}: {exc}")
            code = 1
        raise SystemExit(code)

    return command
