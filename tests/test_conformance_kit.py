"""The conformance kit (memokit.testing.contract) as a third party meets it.

Each check runs pytest or Python in a subprocess: the kit is a pytest plugin, and
what `import memokit` pulls in shows only in a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import memokit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "kit_backend"
# Subprocesses import the same memokit as this test run (the installed wheel in CI).
ENV = {
    **os.environ,
    "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent),
    "PYTHONDONTWRITEBYTECODE": "1",
}
ENV.pop("PYTEST_ADDOPTS", None)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env=ENV,
    )


def test_memokit_and_memokit_testing_never_import_pytest(tmp_path: Path) -> None:
    code = (
        "import sys, memokit, memokit.testing\n"
        "loaded = sorted(m for m in ('pytest', '_pytest', 'freezegun') if m in sys.modules)\n"
        "print(loaded)\n"
    )
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_a_third_party_runs_the_kit_over_its_own_backend(tmp_path: Path) -> None:
    # examples/kit_backend is a project of its own (pytest.ini, conftest.py, a backend):
    # copied out of the tree, it runs as it would in someone else's repository.
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project)
    result = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf"], project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed is not None, result.stdout[-2000:]
    # The backend's own two tests, and the contract (hundreds of tests) beside them.
    assert int(passed.group(1)) > 300, result.stdout[-2000:]
    listed = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"], project)
    ids = listed.stdout.splitlines()
    assert "memokit_contract/test_basic.py::test_set_then_get[dict]" in ids, listed.stdout[-2000:]
    assert "test_dictcache.py::test_settings_name_the_class_by_its_dotted_path" in ids


def test_without_a_declared_backend_the_kit_says_what_to_declare(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p memokit.testing.contract\n")
    (tmp_path / "test_uses_the_kit.py").write_text(
        "def test_cache(cache):\n    assert cache is not None\n"
    )
    result = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)
    assert result.returncode != 0
    # No conftest declares a backend: the contract is not collected, and the fixture
    # tells how to declare one.
    assert "1 error" in result.stdout, result.stdout[-2000:]
    assert "define a fixture `memokit_backend`" in result.stdout, result.stdout[-2000:]
