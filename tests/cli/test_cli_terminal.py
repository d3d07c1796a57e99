"""The command line in a real terminal: tmux runs it, the test reads the pane."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit

Terminal = Callable[..., str]
DONE = "__memokit_exit__="


@pytest.fixture
def terminal(project: Path, cli_env: Callable[..., dict[str, str]]) -> Iterator[Terminal]:
    """``terminal(*args)``: run ``python -m memokit ARGS`` in a tmux pane 100 columns
    wide; return the pane's text once it exited (its exit code on the last line)."""
    tmux = shutil.which("tmux")
    if tmux is None:
        hint = "tmux is not installed; install it with: apt-get install tmux"
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {hint}")
        pytest.skip(hint)
    socket = f"memokit-test-{uuid.uuid4().hex[:12]}"
    started = False

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> str:
        nonlocal started
        command = shlex.join([sys.executable, "-m", "memokit", *args])
        shell = f"{command}; echo {DONE}$?; sleep 600"
        size = ["-x", "100", "-y", "50"]
        name = f"s{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [tmux, "-L", socket, "new-session", "-d", "-s", name, *size, "-c", str(project), shell],
            check=True,
            env=env or cli_env(TERM="xterm-256color"),
            timeout=10,
        )
        started = True
        deadline = time.monotonic() + timeout
        while True:
            pane = subprocess.run(
                [tmux, "-L", socket, "capture-pane", "-p", "-t", name],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
            if DONE in pane:
                return pane
            if time.monotonic() > deadline:
                pytest.fail(f"the command did not finish in {timeout} s; the pane:\n{pane}")
            time.sleep(0.1)

    yield run
    if started:
        subprocess.run([tmux, "-L", socket, "kill-server"], capture_output=True, timeout=10)


def _exit_code(pane: str) -> int:
    found = re.search(rf"{DONE}(\d+)", pane)
    assert found is not None, pane
    return int(found[1])


def test_clear_yes_over_20000_entries_shows_progress_and_a_final_count(
    terminal: Terminal, project: Path
) -> None:
    path = project / "big.sqlite3"
    settings = {"BACKEND": "sqlite", "LOCATION": str(path), "OPTIONS": {"MAX_ENTRIES": 50_000}}
    cache: Any = memokit.create_cache(settings)
    try:
        for start in range(0, 20_000, 5_000):
            cache.set_many({f"key-{n}": n for n in range(start, start + 5_000)}, timeout=None)
        assert cache._count() == 20_000
    finally:
        cache.close()
    pane = terminal("clear", "--yes", "--url", f"sqlite://{path}")
    assert _exit_code(pane) == 0, pane
    states = re.findall(r"removed ([\d,]+) of 20,000", pane)
    assert len(set(states)) >= 2, pane
    assert states[-1] == "20,000", pane
    assert "Cleared 20,000 entries from 'default'" in pane, pane
    assert "Remove" not in pane  # --yes asks nothing


def test_stats_shows_the_other_process_functions_and_hit_ratios(
    terminal: Terminal,
    project: Path,
    write_settings: Callable[..., None],
    worker: Callable[[], Any],
) -> None:
    write_settings({"BACKEND": "sqlite", "LOCATION": str(project / "stats.sqlite3")})
    app = worker()
    for _ in range(4):
        app.ask("price 7")  # 1 miss, 3 hits: 75.0%
    app.ask("stock fig")
    app.ask("stock fig")  # 1 miss, 1 hit: 50.0%
    app.ask("flush")
    for args in (("stats",), ("stats", "--watch", "--times", "2", "--interval", "0.2")):
        pane = terminal(*args, "--settings", "cachesettings")
        assert _exit_code(pane) == 0, pane
        assert "memokit stats: 'default' (SQLiteCache), all processes" in pane, pane
        assert "hit ratio" in pane, pane
        rows = {line.split()[1]: line for line in pane.splitlines() if "shop:" in line}
        assert set(rows) == {"shop:price", "shop:stock"}, pane
        assert "75.0%" in rows["shop:price"], pane
        assert "50.0%" in rows["shop:stock"], pane
