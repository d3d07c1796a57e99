"""examples/django_project runs its own tests through Django's test client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import memokit

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
    assert "Ran 6 tests" in result.stderr
    assert "test_report_is_computed_once" in result.stderr
