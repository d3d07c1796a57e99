"""``memokit stats``: per-function statistics shared across processes, as a table.

It reads the totals that processes add to the cache's backend
(``memokit.stats.configure_stats(share=True)``) with :func:`memokit.stats.shared_stats`;
it imports no application code: functions are known by their identity.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from memokit.backends.base import BaseCache
from memokit.exceptions import NotShareable
from memokit.stats import Stats, shared_stats, stats_settings

from ._session import Session, common, runs
from ._settings import SettingsError


def _ratio(stats: Stats) -> str:
    ratio = stats.hit_ratio
    return "-" if ratio is None else f"{ratio:.1%}"


def _mean(stats: Stats) -> str:
    mean = stats.compute.mean
    if mean is None:
        return "-"
    return f"{mean * 1000:.1f} ms" if mean < 1 else f"{mean:.2f} s"


def _document(alias: str, cache: BaseCache, found: dict[str, Stats]) -> dict[str, Any]:
    functions = []
    for identity, stats in _ordered(found):
        functions.append(
            {
                "function": identity,
                "calls": stats.calls,
                "hit_ratio": stats.hit_ratio,
                "compute_mean_seconds": stats.compute.mean,
                **stats.as_dict(),
            }
        )
    return {"alias": alias, "backend": type(cache).__name__, "functions": functions}


def _ordered(found: dict[str, Stats]) -> list[tuple[str, Stats]]:
    return sorted(found.items(), key=lambda item: (-item[1].calls, item[0]))


def _table(session: Session, alias: str, cache: BaseCache, found: dict[str, Stats]) -> Group:
    out = session.out
    now = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S UTC")
    header = Text(
        out.show(f"memokit stats: {alias!r} ({type(cache).__name__}), all processes, {now}"),
        style="bold",
    )
    rows = _ordered(found)
    # Freshness columns only where a function has such counts: the table fits 80 columns.
    fresh = any(st.stale_hits or st.refreshes for _, st in rows)
    columns = ["function", "calls", "hits", "misses", "hit ratio"]
    columns += ["stale hits", "refreshes"] if fresh else []
    columns += ["errors b/v", "compute"]
    table = Table()
    for name in columns:
        if name == "function":
            table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=1)
        else:
            table.add_column(name, justify="right", no_wrap=True)
    for identity, st in rows:
        cells = [out.show(identity), f"{st.calls:,}", f"{st.hits:,}", f"{st.misses:,}"]
        cells.append(_ratio(st))
        cells += [f"{st.stale_hits:,}", f"{st.refreshes:,}"] if fresh else []
        cells += [f"{st.backend_errors:,}/{st.value_errors:,}", _mean(st)]
        table.add_row(*cells)
    parts: list[Any] = [header, table]
    if not found:
        parts.append(
            Text(
                "No function has shared statistics here yet: processes share them with "
                "memokit.stats.configure_stats(share=True), every "
                f"{stats_settings().flush_interval:g} s by default and at exit."
            )
        )
    return Group(*parts)


@click.command()
@click.option("--watch", is_flag=True, help="Redraw the table every --interval seconds.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option(
    "--times", type=click.IntRange(min=1), help="With --watch: stop after this many draws."
)
@common
@runs
def stats(session: Session, watch: bool, interval: float, times: int | None) -> int:
    """Hits, misses and hit ratios per function, from every process that shares them.

    Imports no application code. The memory and dummy backends cannot share
    statistics (their data lives in one process): stats says so and exits with 2.
    """
    out = session.out
    if watch and out.as_json:
        raise SettingsError("--watch redraws a table; for JSON, run stats --json repeatedly")
    if times is not None and not watch:
        raise SettingsError("--times goes with --watch")
    alias, cache = session.cache(reach=False)  # shared_stats() says why not, below
    try:
        found = shared_stats(cache)
    except NotShareable as exc:  # a configuration matter: the message names the fix
        raise SettingsError(f"--alias {alias!r}: {exc}") from None
    if out.as_json:
        out.json(_document(alias, cache, found))
        return 0
    if not watch:
        out.console.print(_table(session, alias, cache, found))
        return 0
    drawn = 1
    try:
        with Live(_table(session, alias, cache, found), console=out.console) as live:
            while times is None or drawn < times:
                time.sleep(interval)
                live.update(_table(session, alias, cache, shared_stats(cache)))
                drawn += 1
    except KeyboardInterrupt:
        pass
    return 0
