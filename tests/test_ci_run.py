""".ci/run checks every Python the classifiers name before it installs anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CI_RUN = Path(__file__).resolve().parent.parent / ".ci" / "run"


def test_a_missing_interpreter_fails_the_run_by_name(tmp_path: Path) -> None:
    # An empty pyenv root: 3.12 and 3.13 are missing; 3.11 is the system python3.
    env = {**os.environ, "PYENV_ROOT": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(CI_RUN)], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    missing = f"Python 3.12 is missing: {tmp_path}/versions/3.12.1/bin/python not found"
    assert missing in result.stderr
    assert "(pyenv install 3.12.1)" in result.stderr
    assert "== apt install" not in result.stdout  # nothing installed, nothing run
