"""Where the command line finds the cache settings, and how it turns them into caches.

Three sources, each a flag with an environment variable: one flag, or else the
first environment variable set, in this order: a backend URL (``--url``,
``MEMOKIT_URL``), a Python path (``--settings``, ``MEMOKIT_SETTINGS``), a Django
project's settings (``--django-settings``, ``DJANGO_SETTINGS_MODULE``). Each is turned into a
``CACHES`` mapping and given to :func:`memokit.configure`, so that a decorated
function imported afterwards (``inspect``, ``invalidate``) finds its alias there.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from memokit._secrets import redact, secrets_in
from memokit.config import caches, configure
from memokit.exceptions import ImproperlyConfigured, _CommandUsage

ADAPTER = "memokit.contrib.django.MemokitCache"
"""The Django ``BACKEND`` whose aliases the command line can open."""

URL_FORMS = (
    "redis://[user:password@]host:port/db (also rediss://, unix://)",
    "memcached://host:port[,host:port...]",
    "sqlite:///path/to/cache.sqlite3",
    "file:///path/to/cache/directory",
)
_TOP_LEVEL = {"TIMEOUT", "KEY_PREFIX", "VERSION"}
_NUMBERS = {"TIMEOUT", "VERSION", "MAX_ENTRIES", "CULL_FREQUENCY", "BUSY_TIMEOUT", "LOCK_TIMEOUT"}


SettingsError = _CommandUsage
"""Bad or missing settings: the command exits with 2, naming the setting and the fix."""


@dataclass
class Loaded:
    """The settings found: where from, the ``CACHES`` given to memokit, their secrets."""

    source: str
    """The flag and value they came from, for messages (secrets masked)."""
    caches: dict[str, dict[str, Any]] | None
    """None when the settings called configure() themselves."""
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was left out (a Django alias served by another backend)."""


def load(url: str | None, settings: str | None, django_settings: str | None) -> Loaded:
    """Find the settings (flags or environment) and configure memokit with them."""
    flags = {"--url": url, "--settings": settings, "--django-settings": django_settings}
    given = [flag for flag, value in flags.items() if value]
    if len(given) > 1:
        raise SettingsError(f"give one of {', '.join(given)}, not several")
    if not given:  # the environment, in the same order
        url = os.environ.get("MEMOKIT_URL") or None
        settings = None if url else os.environ.get("MEMOKIT_SETTINGS") or None
        django_settings = os.environ.get("DJANGO_SETTINGS_MODULE") or None
    if url is not None:
        loaded = _from_url(url)
    elif settings is not None:
        loaded = _from_python_path(settings)
    elif django_settings is not None:
        loaded = _from_django(django_settings)
    else:
        raise SettingsError(
            "no cache settings: give --url (a backend URL, or MEMOKIT_URL), --settings "
            "(a Python path such as 'myapp.settings:CACHES', or MEMOKIT_SETTINGS) or "
            "--django-settings (or DJANGO_SETTINGS_MODULE)"
        )
    if loaded.caches is None:
        return loaded
    try:
        configure(loaded.caches)
    except ImproperlyConfigured as exc:
        raise SettingsError(
            f"{loaded.source}: {redact(str(exc), loaded.secrets)}; fix the settings there"
        ) from None
    return loaded


# -- a backend URL ----------------------------------------------------------------------


def _from_url(url: str) -> Loaded:
    secrets = secrets_in({"LOCATION": url})
    where = f"--url {redact(url, secrets)!r}"
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    forms = "; ".join(URL_FORMS)
    if not sep:
        raise SettingsError(f"{where} is not a backend URL; use one of: {forms}")
    parts = urlsplit(url)
    own = [(name, value) for name, value in parse_qsl(parts.query) if name.isupper()]
    rest = "&".join(
        f"{name}={value}" for name, value in parse_qsl(parts.query) if not name.isupper()
    )
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for name, value in own:
        typed: Any = value
        if name in _NUMBERS:
            try:
                typed = float(value) if "." in value else int(value)
            except ValueError:
                raise SettingsError(
                    f"{where}: {name}={value!r} is not a number; write for example {name}=1"
                ) from None
        (settings if name in _TOP_LEVEL else options)[name] = typed
    secret = os.environ.get("MEMOKIT_SECRET")
    if secret and "SECRET" not in options:
        options["SECRET"] = secret
    if scheme in ("redis", "rediss", "unix"):
        location = parts._replace(query=rest).geturl()
        backend = "redis"
    elif scheme == "memcached":
        if parts.path not in ("", "/") or not parts.netloc:
            raise SettingsError(
                f"{where}: a memcached URL names servers only, as memcached://host:port"
                f"[,host:port]; not a path"
            )
        location, backend = parts.netloc, "memcached"
    elif scheme in ("sqlite", "file"):
        # sqlite:///var/cache/app.sqlite3: everything after the scheme's '//' is the path.
        location = url.partition("://")[2].partition("?")[0]
        backend = "sqlite" if scheme == "sqlite" else "filesystem"
        if not location.startswith("/"):
            raise SettingsError(
                f"{where}: give an absolute path, as {scheme}:///path/to/"
                f"{'cache.sqlite3' if scheme == 'sqlite' else 'directory'} (three slashes)"
            )
        # Opening a store creates it: a mistyped path would read as an empty cache.
        exists = os.path.isfile if scheme == "sqlite" else os.path.isdir
        if not exists(location):
            kind = "SQLite database" if scheme == "sqlite" else "directory"
            raise SettingsError(
                f"{where}: no {kind} at {location}; check the path (the command line "
                f"opens an existing store, it creates none)"
            )
    else:
        raise SettingsError(f"{where}: unknown scheme {scheme!r}; use one of: {forms}")
    entry: dict[str, Any] = {"BACKEND": backend, "LOCATION": location, **settings}
    if options:
        entry["OPTIONS"] = options
    caches = {"default": entry}
    return Loaded(where, caches, secrets_in(caches) + secrets)


# -- a Python path ----------------------------------------------------------------------


def _import(path: str, where: str) -> object:
    module_name, _, attribute = path.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the project's own modules
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise SettingsError(
            f"{where}: cannot import {module_name!r} ({exc}); check the module name and "
            f"that it is importable from the current directory (or set PYTHONPATH)"
        ) from None
    for name in filter(None, attribute.split(".")):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise SettingsError(
                f"{where}: {module_name!r} has no attribute {attribute!r}; give "
                f"'module:NAME' with NAME a CACHES mapping, an object with CACHES, or a "
                f"function that calls configure()"
            ) from None
    return found


def _from_python_path(path: str) -> Loaded:
    where = f"--settings {path!r}"
    before = caches.all(initialized_only=True)
    found = _import(path, where)
    if callable(found) and not isinstance(found, Mapping | type):
        found = found()
    if not isinstance(found, Mapping):
        found = getattr(found, "CACHES", found)
    if isinstance(found, Mapping):
        return _from_mapping(found, where)
    now = caches.all(initialized_only=True)
    if now and now != before:
        # The module (or function) called configure() itself: keep its caches.
        locations = {alias: caches[alias].location for alias in caches}
        return Loaded(where, None, secrets_in(locations))
    raise SettingsError(
        f"{where} gives neither a CACHES mapping nor calls configure(); point it at "
        f"a CACHES mapping ('myapp.settings:CACHES'), at a module or object with a CACHES "
        f"attribute, or at a function that calls configure()"
    )


def _from_mapping(caches: Mapping[Any, Any], where: str) -> Loaded:
    secrets = secrets_in(caches)
    translated: dict[str, dict[str, Any]] = {}
    notes = []
    for alias, entry in caches.items():
        if not isinstance(entry, Mapping):
            raise SettingsError(
                f"{where}: CACHES[{alias!r}] must be a mapping, not a {type(entry).__name__}"
            )
        backend = entry.get("BACKEND")
        if backend == ADAPTER:
            translated[alias] = _from_adapter(entry)
        elif isinstance(backend, str) and backend.startswith("django."):
            notes.append(f"alias {alias!r} left out: its BACKEND {backend!r} is not memokit's")
        else:
            translated[alias] = dict(entry)
    if not translated:
        raise SettingsError(
            f"{where}: no alias of CACHES is a memokit cache; give one BACKEND {ADAPTER!r} "
            f"(Django) or a memokit backend name such as 'redis'"
        )
    if "default" not in translated:
        first = next(iter(translated))
        notes.append(f"alias 'default' is not memokit's: {first!r} serves as the default")
        translated["default"] = translated[first]
    return Loaded(where, translated, secrets, notes)


def _from_adapter(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A Django ``CACHES`` entry of memokit's adapter as memokit's own ``CACHES`` entry."""
    options = dict(entry.get("OPTIONS") or {})
    backend = options.pop("BACKEND", "memory")
    translated = {
        name: value for name, value in entry.items() if name not in ("BACKEND", "OPTIONS")
    }
    translated["BACKEND"] = backend
    if "LOCATION" in translated and isinstance(translated["LOCATION"], os.PathLike):
        translated["LOCATION"] = os.fspath(translated["LOCATION"])
    if options:
        translated["OPTIONS"] = options
    return translated


# -- a Django project's settings ---------------------------------------------------------


def _from_django(module: str) -> Loaded:
    where = f"--django-settings {module!r}"
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured
    except ImportError:
        raise SettingsError(
            f"{where}: Django is not installed; install it with: pip install 'memokit[django]'"
        ) from None
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as manage.py does
    try:
        caches = settings.CACHES
    except ImportError as exc:
        raise SettingsError(
            f"{where}: cannot import the settings module ({exc}); run from the project's "
            f"directory (where manage.py is) or set PYTHONPATH"
        ) from None
    except DjangoImproperlyConfigured as exc:
        raise SettingsError(f"{where}: {exc}") from None
    return _from_mapping(caches, f"{where} CACHES")
