"""tests/django_suite/run.py skips with a reason when it cannot run, and fails when told not to.

Told by MEMOKIT_REQUIRE_SERVERS=1, or by running under CI (the CI variable).
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "django_suite" / "run.py"
PINNED = runpy.run_path(str(RUNNER.with_name("django_sdist.py")))["DJANGO_VERSION"]


def run(code_or_script: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code_or_script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


# How each mode is told: nothing (skips), MEMOKIT_REQUIRE_SERVERS=1, or CI=true (both fail).
MODES = {"local": {}, "require": {"MEMOKIT_REQUIRE_SERVERS": "1"}, "ci": {"CI": "true"}}


def base_env(mode: str) -> dict[str, str]:
    # This suite may itself run under CI or with servers required: neither leaks in.
    env = {k: v for k, v in os.environ.items() if k not in ("MEMOKIT_REQUIRE_SERVERS", "CI")}
    return {**env, **MODES[mode]}


@pytest.mark.parametrize("mode", MODES)
def test_without_django(mode: str) -> None:
    # sys.modules[name] = None makes `import django` raise ImportError.
    code = (
        "import runpy, sys; sys.modules['django'] = None; "
        f"sys.argv = [{str(RUNNER)!r}]; runpy.run_path({str(RUNNER)!r}, run_name='__main__')"
    )
    result = run(["-c", code], base_env(mode))
    assert "Django is not installed; pip install 'memokit[test]'" in result.stdout
    if mode != "local":
        assert result.returncode == 1
        assert "FAILED" in result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert "SKIPPED" in result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_offline(mode: str, tmp_path: Path) -> None:
    django = pytest.importorskip("django")
    if django.__version__ != PINNED:
        pytest.skip(f"the runner needs Django {PINNED} before it downloads anything")
    empty = tmp_path / "no-packages"
    empty.mkdir()
    env = {
        **base_env(mode),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # nothing downloaded before
        "PIP_NO_INDEX": "1",  # no index at all: what pip sees offline
        "PIP_FIND_LINKS": str(empty),
    }
    result = run([str(RUNNER)], env)
    assert "Django's test suite could not be obtained: pip could not download" in result.stdout
    assert result.returncode == (0 if mode == "local" else 1), result.stdout + result.stderr
    assert ("SKIPPED" if mode == "local" else "FAILED") in result.stdout
    if mode == "ci":
        assert "(CI=true forbids skipping)" in result.stdout
    assert not (tmp_path / "cache" / "memokit" / f"django-{PINNED}-tests").exists()
