"""The demo in examples/ runs and asserts what it shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import memokit

ROOT = Path(__file__).resolve().parent.parent
# Subprocesses import the same memokit as this test run (the installed wheel in CI).
ENV = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}


def test_demo_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    for line in ("miss:", "hit:", "expired:", "counter: visits = 11", "isolation:"):
        assert line in result.stdout


def test_memokit_is_the_installed_copy_when_asked() -> None:
    # .ci/run and scripts/test set this: the suite must exercise the built wheel,
    # not the source tree, so a file missing from the wheel fails here.
    if os.environ.get("MEMOKIT_EXPECT_INSTALLED") != "1":
        return
    origin = Path(memokit.__file__).resolve()
    assert ROOT / "memokit" not in origin.parents, origin
    assert "site-packages" in origin.parts, origin
    assert (origin.parent / "py.typed").exists()


def test_readme_one_liner(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import memokit; memokit.cache.set('a', 1); print(memokit.cache.get('a'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=ENV,
    )
    assert result.stdout == "1\n", result.stderr
