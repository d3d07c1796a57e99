"""examples/django_project runs its own tests through Django's test client."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memokit
from memokit.testing import free_port

pytest.importorskip("django", reason="Django is not installed; pip install 'memokit[django]'")

PROJECT = Path(__file__).resolve().parent.parent.parent / "examples" / "django_project"
# The subprocess imports the same memokit as this run (the installed wheel in CI).
ENV = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}


def test_example_project_tests_pass() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "manage.py", "test", "--noinput", "-v", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PROJECT,
        env=ENV,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 7 tests" in result.stderr
    assert "test_report_is_computed_once" in result.stderr


# Every page of the example, and a piece of what it shows.
PAGES = {
    "/": b"/report/north/",
    "/report/north/": b'"total": 555',
    "/async-report/east/": b'"region": "east"',
    "/visits/": b'"visits": 1',
    "/page/": b"rendered 1 time(s)",  # cache_page builds the key from the Host
    "/prices/tea/": b'"category": "tea"',
}


def _get(port: int, path: str, host: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_runserver_answers_at_its_default_address() -> None:
    # `manage.py runserver` listens on 127.0.0.1, which the browser sends as the Host:
    # DEBUG is False, so ALLOWED_HOSTS must name it (cache_page asked, and got a 400).
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-W", "error", "manage.py", "runserver", "--noreload", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=PROJECT,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    _, err = server.communicate(timeout=10)
                    pytest.fail(f"runserver did not start: {err.decode(errors='replace')}")
                time.sleep(0.05)
        for path, shown in PAGES.items():
            status, body = _get(port, path, f"127.0.0.1:{port}")
            assert (status, shown in body) == (200, True), (path, status, body[:300])
        for host in ("127.0.0.1", "localhost", f"localhost:{port}"):
            assert _get(port, "/page/", host)[0] == 200, host
        assert _get(port, "/page/", "evil.example")[0] == 400  # still a closed list
    finally:
        server.terminate()
        server.communicate(timeout=10)
