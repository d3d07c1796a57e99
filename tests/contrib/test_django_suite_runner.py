"""tests/django_suite/run.py skips with a reason when it cannot run, and fails when told not to."""

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


def base_env(require: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MEMOKIT_REQUIRE_SERVERS"}
    if require:
        env["MEMOKIT_REQUIRE_SERVERS"] = "1"
    return env


@pytest.mark.parametrize("require", [False, True])
def test_without_django(require: bool) -> None:
    # sys.modules[name] = None makes `import django` raise ImportError.
    code = (
        "import runpy, sys; sys.modules['django'] = None; "
        f"sys.argv = [{str(RUNNER)!r}]; runpy.run_path({str(RUNNER)!r}, run_name='__main__')"
    )
    result = run(["-c", code], base_env(require))
    assert "Django is not installed; pip install 'memokit[test]'" in result.stdout
    if require:
        assert result.returncode == 1
        assert "FAILED" in result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert "SKIPPED" in result.stdout


@pytest.mark.parametrize("require", [False, True])
def test_offline(require: bool, tmp_path: Path) -> None:
    django = pytest.importorskip("django")
    if django.__version__ != PINNED:
        pytest.skip(f"the runner needs Django {PINNED} before it downloads anything")
    empty = tmp_path / "no-packages"
    empty.mkdir()
    env = {
        **base_env(require),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # nothing downloaded before
        "PIP_NO_INDEX": "1",  # no index at all: what pip sees offline
        "PIP_FIND_LINKS": str(empty),
    }
    result = run([str(RUNNER)], env)
    assert "Django's test suite could not be obtained: pip could not download" in result.stdout
    assert result.returncode == (1 if require else 0), result.stdout + result.stderr
    assert ("FAILED" if require else "SKIPPED") in result.stdout
    assert not (tmp_path / "cache" / "memokit" / f"django-{PINNED}-tests").exists()
