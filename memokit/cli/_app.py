"""The commands: ``info``, ``stats``, ``get``, ``inspect``, ``invalidate``, ``clear``.

Exit codes: 0 success; 1 the operation failed (a backend unavailable, nothing
found for ``get`` or ``inspect``, a declined ``clear``); 2 bad usage or settings.
``info``, ``stats`` and ``clear`` never import application code; ``inspect``
and ``invalidate`` of a function import the function's module.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Iterator
from typing import Any

import click

from memokit._version import __version__
from memokit.backends.base import MISSING, BaseCache
from memokit.config import caches
from memokit.counters import entry_value, read_entry
from memokit.entry import Entry
from memokit.invalidation import (
    decr_version,
    get_version,
    incr_version,
    invalidate_all,
    invalidate_tags,
)
from memokit.invalidation import invalidate as invalidate_call

from ._output import Output, value_text
from ._session import FAILURES, Session, common, out_of_reach, reachable, runs
from ._settings import SettingsError
from ._stats import stats
from ._targets import call_key, describe_call, load_function, parse_arguments


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memokit")
def cli() -> None:
    """See and operate memokit caches from a shell.

    Settings come from --url, --settings, --django-settings, or the MEMOKIT_URL,
    MEMOKIT_SETTINGS and DJANGO_SETTINGS_MODULE environment variables, in that order.
    """


# -- info ------------------------------------------------------------------------------


def _capabilities(cache: BaseCache) -> list[str]:
    caps = cache.capabilities
    return [name for name, value in vars(caps).items() if value is True]


@cli.command()
@common
@runs
def info(session: Session) -> int:
    """Aliases, backends, capabilities and entry counts (imports no application code)."""
    loaded = session.load()
    out = session.out
    aliases: list[dict[str, Any]] = []
    failed = False
    notes = list(loaded.notes)
    chosen = [session.cache(reach=False)[0]] if session.options["alias"] else list(caches)
    for alias in chosen:
        cache = caches[alias]
        count: int | None = None
        problem = None
        apart = out_of_reach(cache)
        if apart is not None:  # this process's own empty store: its count would mislead
            notes.append(f"alias {alias!r}: {apart}; the command line cannot count them")
        else:
            try:
                count = cache._count()
            except FAILURES as exc:
                problem, failed = f"{type(exc).__name__}: {exc}", True
        described = {
            "alias": alias,
            "backend": type(cache).__name__,
            "location": cache.location,
            "key_prefix": cache.key_prefix,
            "version": cache.version,
            "entries": count,
            "error": problem,
            "capabilities": _capabilities(cache),
        }
        aliases.append(described)
    if out.as_json:
        out.json({"settings": loaded.source, "aliases": aliases, "notes": notes})
    else:
        out.table(
            f"memokit {__version__}: caches from {loaded.source}",
            ["alias", "backend", "location", "prefix", "version", "entries"],
            [
                [
                    a["alias"],
                    a["backend"],
                    a["location"] or "-",
                    a["key_prefix"] or "-",
                    a["version"],
                    "unavailable" if a["error"] else _count_text(a["entries"]),
                ]
                for a in aliases
            ],
        )
        for a in aliases:
            out.line(f"{a['alias']}: {', '.join(a['capabilities'])}")
            if a["error"]:
                out.line(f"{a['alias']}: {a['error']}", style="red")
        for note in notes:
            out.line(f"note: {note}")
    return 1 if failed else 0


def _count_text(count: int | None) -> str:
    return "not counted" if count is None else f"{count:,}"


# -- get and inspect -------------------------------------------------------------------

_ABSENT = object()


def _when(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return f"{moment.isoformat(timespec='seconds')} ({max(0.0, time.time() - created):.0f} s ago)"


@cli.command()
@click.argument("key")
@click.option("--version", "key_version", type=int, help="The key's version (VERSION).")
@common
@runs
def get(session: Session, key: str, key_version: int | None) -> int:
    """Show the value stored at KEY (as cache.get(KEY) would); exit 1 when there is none."""
    alias, cache = session.cache()
    made = cache.make_key(key, key_version)
    entry = Entry.read(cache, key, key_version)
    value = entry.value if entry is not None else cache.get(key, _ABSENT, key_version)
    found = value is not _ABSENT
    document: dict[str, Any] = {"alias": alias, "key": key, "made_key": made, "found": found}
    if found:
        document["value"] = value_text(value)
        document["type"] = type(value).__qualname__
        if entry is not None:
            document["entry"] = {"created": entry.created, "versions": list(entry.versions)}
    _show_read(session, document, f"nothing is stored at key {key!r} in {alias!r}")
    return 0 if found else 1


def _show_read(session: Session, document: dict[str, Any], absent: str) -> None:
    out = session.out
    if out.as_json:
        out.json(document)
        return
    rows: list[tuple[str, Any]] = [
        (name, document[name]) for name in ("alias", "call", "key") if name in document
    ]
    rows.append(("made key", document["made_key"]))
    if document["found"]:
        rows += [("type", document["type"]), ("value", document["value"])]
        entry = document.get("entry")
        if entry is not None:
            rows.append(("created", _when(entry["created"])))
            rows.append(("versions", ", ".join(map(str, entry["versions"])) or "-"))
    else:
        rows.append(("found", document.get("reason", absent)))
    out.pairs(None, rows)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("function")
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@click.option("--args-json", help="Positional arguments as a JSON array.")
@click.option("--kwargs-json", help="Keyword arguments as a JSON object.")
@common
@runs
def inspect(
    session: Session,
    function: str,
    arguments: tuple[str, ...],
    args_json: str | None,
    kwargs_json: str | None,
) -> int:
    """Show the entry of one call: FUNCTION is module:name, ARGUMENTS Python literals.

    Imports the function's module. Exit 1 when no valid entry is stored for the call.
    """
    session.no_alias(function)
    session.load()
    fn = load_function(function)
    args, kwargs = parse_arguments(arguments, args_json, kwargs_json)
    key = call_key(fn, function, args, kwargs)
    state = fn._state
    cache = state.target()
    reachable(function, cache)
    made = cache.make_key(key, state.version)
    payload, versions = read_entry(state, cache, key, args, kwargs)
    value = entry_value(state, cache, made, payload, versions)
    entry = Entry.from_payload(payload, cache) if payload is not MISSING else None
    found = value is not MISSING
    document: dict[str, Any] = {
        "alias": state.alias if state.cache is None else repr(cache),
        "call": describe_call(function, args, kwargs),
        "key": key,
        "made_key": made,
        "found": found,
        "current_versions": list(versions),
    }
    if found:
        document["value"] = value_text(value)
        document["type"] = type(value).__qualname__
    elif entry is not None:
        document["reason"] = (
            f"an entry is stored, computed under versions {list(entry.versions)}, but the "
            f"current versions are {list(versions)}: it was invalidated and is never served"
        )
    else:
        document["reason"] = "nothing is stored for this call"
    if entry is not None:
        document["entry"] = {"created": entry.created, "versions": list(entry.versions)}
    _show_read(session, document, "nothing is stored for this call")
    return 0 if found else 1


# -- invalidate ------------------------------------------------------------------------


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("function", required=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
@click.option("--all", "every_call", is_flag=True, help="Every call of FUNCTION.")
@click.option("--tag", "tags", multiple=True, help="Every entry carrying this tag (repeatable).")
@click.option("--namespace", help="Move the version of a tag (or of module:function with :).")
@click.option("--delta", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--back", is_flag=True, help="With --namespace: move back (a rollback).")
@click.option("--args-json", help="Positional arguments as a JSON array.")
@click.option("--kwargs-json", help="Keyword arguments as a JSON object.")
@common
@runs
def invalidate(
    session: Session,
    function: str | None,
    arguments: tuple[str, ...],
    every_call: bool,
    tags: tuple[str, ...],
    namespace: str | None,
    delta: int,
    back: bool,
    args_json: str | None,
    kwargs_json: str | None,
) -> int:
    """Invalidate one call, every call of a function, a tag, or a namespace's version.

    \b
      memokit invalidate app.pricing:price 42     one call
      memokit invalidate app.pricing:price --all  every call, in every process
      memokit invalidate --tag catalog            every entry tagged 'catalog'
      memokit invalidate --namespace catalog --back   roll a namespace back
    """
    modes = [function is not None, bool(tags), namespace is not None]
    if sum(modes) != 1:
        raise SettingsError(
            "give one of: FUNCTION [ARGUMENTS] (one call), FUNCTION --all, --tag TAG, "
            "--namespace NAME"
        )
    if (delta != 1 or back) and namespace is None:
        raise SettingsError("--delta and --back go with --namespace only")
    out = session.out
    if function is not None or (namespace is not None and ":" in namespace):
        session.no_alias(function or namespace or "")
    alias, cache = session.cache(reach=False)  # a function's own cache is checked below
    if function is not None:
        reachable(function, load_function(function)._state.target())
    elif ":" in (namespace or ""):
        reachable(namespace or "", load_function(namespace or "")._state.target())
    else:
        reachable(f"--alias {alias!r}", cache)
    if tags:
        invalidate_tags(*tags, cache=cache)
        document: dict[str, Any] = {"alias": alias, "tags": list(tags), "invalidated": True}
        message = f"invalidated tag(s) {', '.join(map(repr, tags))} in {alias!r}"
    elif namespace is not None:
        target: Any = load_function(namespace) if ":" in namespace else namespace
        where = None if ":" in namespace else cache
        move = decr_version if back else incr_version
        before = get_version(target, cache=where)
        after = move(target, delta, cache=where)
        document = {"alias": alias, "namespace": namespace, "before": before, "version": after}
        message = f"namespace {namespace!r}: version {before} -> {after}"
    else:
        assert function is not None  # one mode, checked above
        fn = load_function(function)
        if every_call:
            if arguments or args_json or kwargs_json:
                raise SettingsError("--all invalidates every call: give no ARGUMENTS with it")
            version = invalidate_all(fn)
            document = {"function": function, "all": True, "version": version}
            message = f"invalidated every call of {function} (its version is now {version})"
        else:
            args, kwargs = parse_arguments(arguments, args_json, kwargs_json)
            key = call_key(fn, function, args, kwargs)
            removed = invalidate_call(fn, *args, **kwargs)
            call = describe_call(function, args, kwargs)
            document = {"call": call, "key": key, "removed": removed}
            message = (
                f"removed the entry of {call} (key {key!r})"
                if removed
                else f"nothing was stored for {call} (key {key!r}); nothing to remove"
            )
    if out.as_json:
        out.json(document)
    else:
        out.line(message)
    return 0


# -- clear -----------------------------------------------------------------------------


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--batch", default=0, type=click.IntRange(min=0), help="Entries removed per step.")
@common
@runs
def clear(session: Session, yes: bool, batch: int) -> int:
    """Remove every entry of an alias's store (asks first; --yes for scripts)."""
    out = session.out
    alias, cache = session.cache()
    total = cache._count()
    where = f"{alias!r} ({type(cache).__name__} at {out.show(cache.location) or 'memory'})"
    size = "every entry" if total is None else f"all {total:,} entries"
    if not yes and not click.confirm(f"Remove {size} of {where}?", default=False, err=True):
        out.error("nothing removed (answer y, or pass --yes)")
        return 1
    step = batch or max(1000, math.ceil((total or 0) / 10))
    removed = _purge(out, cache, step, total)
    if out.as_json:
        out.json({"alias": alias, "removed": removed, "counted": removed is not None})
    elif removed is None:
        out.line(f"Cleared {where}.")
    else:
        out.line(f"Cleared {removed:,} entries from {where}.")
    return 0


def _purge(out: Output, cache: BaseCache, step: int, total: int | None) -> int | None:
    """Clear ``cache`` in steps, showing progress; the number removed (None: not counted)."""
    removed: int | None = None
    if out.as_json or not out.console.is_terminal:
        for removed in _clear_in_batches(cache, step):
            out.line(_progress_text(removed, total))
        return removed if removed is not None else total
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("clearing"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out.console) as progress:
        task = progress.add_task("clear", total=total)
        for removed in _clear_in_batches(cache, step):
            progress.update(task, completed=removed)
            progress.console.print(_progress_text(removed, total), markup=False)
    return removed if removed is not None else total


def _clear_in_batches(cache: BaseCache, batch: int) -> Iterator[int]:
    """Clear ``cache`` as ``clear()`` does, ``batch`` entries at a time where the backend
    can; yield the running number removed (nothing, where it clears at once)."""
    removed = 0
    while True:
        done = cache._clear_some(batch)
        if done is None:
            cache._clear()
            return
        if done == 0:
            return
        removed += done
        yield removed


def _progress_text(removed: int, total: int | None) -> str:
    return f"  removed {removed:,}" + ("" if total is None else f" of {total:,}")


cli.add_command(stats)

__all__ = ["cli"]
