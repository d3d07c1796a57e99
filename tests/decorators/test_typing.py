"""``mypy --strict`` sees the original signatures through ``@cached`` (tests/typing/)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import memokit

ROOT = Path(__file__).resolve().parent.parent.parent
TYPING = ROOT / "tests" / "typing"


def test_typing_files_pass_mypy_strict() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed; pip install memokit[dev]")
    # Against the memokit this suite imports: the installed wheel under scripts/test
    # (found through --python-executable), else the source tree (through MYPYPATH;
    # mypy refuses a site-packages directory there).
    env = dict(os.environ)
    source = Path(memokit.__file__).resolve().parent.parent
    if "site-packages" not in source.parts:
        env["MYPYPATH"] = str(source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            sys.executable,
            str(TYPING),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
