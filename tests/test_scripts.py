"""scripts/demo and scripts/test, as a new user runs them: what they say, where the venv is.

The interpreter is a stand-in (``PYTHON`` and the venv's ``bin/python``): it logs each
call, makes the venv and the wheel as empty files, installs nothing, and hands anything
else (the version check, ``demo.py``) to this run's Python. So the scripts' own logic runs
in a second, without pip or the network.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import memokit

ROOT = Path(__file__).resolve().parent.parent

STAND_IN = """\
#!/usr/bin/env bash
echo "stand-in: $*"
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && cp "$(dirname "$0")/pytest" "$3/bin/pytest"
    exit
fi
if [ "$1 $2 $3" = "-m pip wheel" ]; then
    mkdir -p dist && touch dist/memokit-0-py3-none-any.whl
    exit
fi
[ "$1 $2" = "-m pip" ] && exit
exec {python} "$@"
"""
PYTEST = """\
#!/usr/bin/env bash
echo "stand-in pytest: $*"
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _run(script: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "stand-in"
    bin_dir.mkdir()
    _executable(bin_dir / "pytest", PYTEST)
    python = _executable(bin_dir / "python", STAND_IN.format(python=sys.executable))
    env = {
        **os.environ,
        "PYTHON": str(python),
        # Absolute, and in another directory than the repository: what broke the demo.
        "MEMOKIT_VENV": str(tmp_path / "venvs" / "memokit"),
        "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent),
    }
    env.pop("MEMOKIT_STAGE_LOG", None)
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _said_before(out: str, said: str, call: str) -> None:
    """``said`` is printed, and before the stand-in's ``call`` runs."""
    assert said in out, out
    assert call in out, out
    assert out.index(said) < out.index(call), out


def test_demo_takes_an_absolute_venv_and_says_what_it_installs(tmp_path: Path) -> None:
    result = _run(ROOT / "scripts" / "demo", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    venv = tmp_path / "venvs" / "memokit"
    out = result.stdout
    _said_before(out, f"scripts/demo: creating the venv {venv}", "stand-in: -m venv")
    _said_before(
        out, f"scripts/demo: installing memokit into {venv}", "stand-in: -m pip install -q ."
    )
    _said_before(out, "scripts/demo: running examples/demo.py", "stand-in: demo.py")
    for line in ("miss:", "hit:", "counter: visits = 11"):  # the demo itself ran
        assert line in out


def test_test_script_says_what_it_installs(tmp_path: Path) -> None:
    # A copy, so that its dist/ is made in tmp_path, not in the repository.
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    script = tmp_path / "repo" / "scripts" / "test"
    shutil.copy(ROOT / "scripts" / "test", script)
    result = _run(script, tmp_path, "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    venv = tmp_path / "venvs" / "memokit"
    out = result.stdout
    _said_before(out, f"scripts/test: creating the venv {venv}", "stand-in: -m venv")
    _said_before(out, "scripts/test: building memokit's wheel", "stand-in: -m pip wheel")
    _said_before(
        out,
        "scripts/test: installing the [test,dev,bench] extras",
        "stand-in: -m pip install -q dist/memokit-0-py3-none-any.whl[test,dev,bench]",
    )
    assert "stand-in pytest: -m not (chaos or faults or slow or stress or cluster)" in out
