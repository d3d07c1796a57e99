"""The command line's tests: it runs as a subprocess, next to a worker process that
fills the store and answers calls, both on a project written into ``tmp_path``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SHOP = """
import memokit

COMPUTED = {"price": 0, "stock": 0}


@memokit.cached(timeout=300, tags=["catalog"])
def price(n: int) -> int:
    COMPUTED["price"] += 1
    return n * 2


@memokit.cached(timeout=300)
def stock(name: str, *, warehouse: str = "main") -> str:
    COMPUTED["stock"] += 1
    return f"{name}@{warehouse}"


def plain(n: int) -> int:
    return n
"""

WORKER = """
import json, sys

import memokit
import memokit.stats
import cachesettings

memokit.configure(cachesettings.CACHES)
memokit.stats.configure_stats(share=True)
import shop

print("ready", flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "price":
        answer = {"value": shop.price(int(argument))}
    elif command == "stock":
        answer = {"value": shop.stock(argument)}
    elif command == "flush":
        memokit.stats.flush_all()
        answer = {"value": None}
    elif command == "set":
        memokit.cache.set(argument, {"stored": argument})
        answer = {"value": None}
    else:
        break
    answer["computed"] = dict(shop.COMPUTED)
    print(json.dumps(answer), flush=True)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment, without any setting the command line would read."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MEMOKIT_URL", "MEMOKIT_SETTINGS", "MEMOKIT_SECRET", "DJANGO_SETTINGS_MODULE")
    }
    env.update(extra)
    return env


@pytest.fixture
def cli_env() -> Callable[..., dict[str, str]]:
    """``cli_env(NAME=value)``: the environment without the command line's settings, plus these."""
    return clean_env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with the application module ``shop`` and the worker script."""
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "worker.py").write_text(WORKER)
    return tmp_path


@pytest.fixture
def write_settings(project: Path) -> Callable[[dict[str, Any]], None]:
    """Write ``cachesettings.CACHES``: the one alias both processes use."""

    def write(entry: dict[str, Any]) -> None:
        (project / "cachesettings.py").write_text(f"CACHES = {{'default': {entry!r}}}\n")

    return write


@pytest.fixture
def run(project: Path) -> Run:
    """Run ``python -m memokit ARGS`` in the project; return its exit code and output."""

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "memokit", *args],
            cwd=project,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=env or clean_env(COLUMNS="200"),
            timeout=60,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


class Worker:
    """Another process of the application, with its cache configured and filled."""

    def __init__(self, project: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(project / "worker.py")],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        assert self.read() == "ready"

    def read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.read())
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def worker(project: Path) -> Iterator[Callable[[], Worker]]:
    started: list[Worker] = []

    def start() -> Worker:
        started.append(Worker(project))
        return started[-1]

    yield start
    for one in started:
        one.stop()
