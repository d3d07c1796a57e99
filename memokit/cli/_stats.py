"""``memokit stats``: per-function statistics shared across processes, as a table."""

from __future__ import annotations

import click

from ._session import Failed, Session, common, runs


@click.command()
@click.option("--watch", is_flag=True, help="Refresh the table until interrupted.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1))
@common
@runs
def stats(session: Session, watch: bool, interval: float) -> int:
    """Hits, misses and hit ratios per function, from every process (no application import)."""
    session.cache()
    raise Failed("statistics shared across processes are not available in this memokit yet")
