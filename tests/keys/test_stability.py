"""Keys are the same on Python 3.11, 3.12 and 3.13, in every process: a pinned table.

``stability_cases.py`` computes the keys of a set of calls covering every kind
of value; each interpreter runs it in a fresh process, with memokit's source on
``PYTHONPATH`` (pure Python, nothing else from this environment), and must
print exactly the table below. A change to this table is a change of the key
format: bump ``KEY_FORMAT`` and note in the CHANGELOG that deploys start cold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wrapt

import memokit

CASES = Path(__file__).with_name("stability_cases.py")

PINNED: dict[str, str] = {
    "aware": "k2:__main__:f(D2024-01-02T03:04:05.000006+00:00_0@Z(r0_0_0,s3:UTC),N,t(),F,d())",
    "big": "k2:__main__:f(x-1d6329f1c35ca4bfabb9f5610000000000,N,t(),F,d())",
    "bytes": "k2:__main__:f(b00ff,B6162,t(),F,d())",
    "complex": "k2:__main__:f(j1.5_-2.0,N,t(),F,d())",
    "containers": (
        "k2:__main__:f(t(i1,l(i2,d(s1:a=S(i1,i2,i3),s1:b=i1)),z(s1:x,s1:y),Ri1_i9_i2,E),N"
        ",t(),F,d())"
    ),
    "dataclass": (
        "k2:__main__:f(g(s14:__main__:Point,s1:x=i1,s5:label=s1:a),n(s13:__main__:Pair,t("
        "i1,s1:b)),t(o(s16:__main__:Account,t(s4:acct,i3))),F,d())"
    ),
    "date_time": "k2:__main__:f(a2024-01-02,h03:04:00_1,t(r-1_5_0),F,d())",
    "decimal": "k2:__main__:f(m1.10,m-0,t(mNaN),F,d())",
    "enum": (
        "k2:__main__:f(e(s15:__main__:Colour,i1),e(s13:__main__:Perm,i0),t(e(s13:__main__"
        ":Perm,i6),e(s13:__main__:Mode,i8),e(s13:__main__:Mode,i1)),F,d())"
    ),
    "floats": "k2:__main__:f(l(f0.0,f-0.0,f1e+300,finf,fn7ff8000000000000,f0.1),N,t(),F,d())",
    "fraction": "k2:__main__:f(qi1_i3,N,t(),F,d())",
    "functions": (
        "k2:__main__:f(ws12:builtins:len,ws10:__main__:f,t(ks15:__main__:Colour,ws13:__ma"
        "in__:make),F,d())"
    ),
    "huge": "k2:__main__:f#d33c00775b7c46af4d5f6e2f652eee7940f8c91e9fb9ab76c074fff742306691",
    "int": "k2:__main__:f(i7,N,t(),F,d())",
    "kw": "k2:__main__:f(i7,i2,t(),T,d(s1:z=i1))",
    "long": "k2:__main__:f#385e2cff4baa8e3bb8c42c586e9775dc286b274fcb33bee2a9acaf49e40c2e43",
    "naive": "k2:__main__:f(D2024-10-27T02:30:00_1,N,t(),F,d())",
    "namespaces": (
        "k2:__main__:f(v(s1:s=S(s1:a,s1:b)),V(s1:n=i1),t(Qi4(S(s1:p,s1:q)),O(t(s1:b,i1),t"
        "(s1:a,i2))),F,d())"
    ),
    "nested": "k2:__main__:make.<locals>.scaled[factor=i3](i2)",
    "offset": "k2:__main__:f(D2024-01-02T00:00:00-05:00_0@Z(r-1_68400_0,s3:EST),N,t(),F,d())",
    "partial": "__main__:f+t(t(i1),d(s4:flag=T))",
    "paths": "k2:__main__:f#dd06350f4d0e5accd3cd6ffc94f9b0a46eb2869eaf82fa012f04f3f7e9b64647",
    "template": "v:Colour.RED:l(i1,s1:a)",
    "text": "k2:__main__:f#d769b18e84feb9f39b582e7007feacc53bbb02b7eb7f720133a875bebdf6d290",
    "uuid": "k2:__main__:f(u00000000000000000000000000000005,N,t(),F,d())",
}


def _interpreters() -> list[object]:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found: list[object] = [pytest.param((sys.executable, None), id="this-interpreter")]
    for version in ("3.12.1", "3.13.0"):
        found.append(
            pytest.param((str(root / "versions" / version / "bin" / "python"), version), id=version)
        )
    return found


@pytest.fixture(scope="module")
def source_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    # A directory holding only memokit: another interpreter must not import this
    # environment's compiled packages.
    directory = tmp_path_factory.mktemp("memokit-only")
    (directory / "memokit").symlink_to(Path(memokit.__file__).resolve().parent)
    # And memokit's one dependency. wrapt's compiled module is named for this
    # interpreter's version, so another version runs wrapt's pure-Python twin.
    (directory / "wrapt").symlink_to(Path(wrapt.__file__).resolve().parent)
    return str(directory)


@pytest.mark.parametrize("interpreter", _interpreters())
def test_keys_match_the_pinned_table(interpreter: tuple[str, str | None], source_path: str) -> None:
    executable, version = interpreter
    if not os.access(executable, os.X_OK):
        message = f"Python {version} is not installed (pyenv install {version}): {executable}"
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {message}")
        pytest.skip(message)
    env = {
        **os.environ,
        "PYTHONPATH": source_path,
        "PYTHONHASHSEED": "random",
        "PYTHONNOUSERSITE": "1",
    }
    env.pop("PYTHONHOME", None)
    if version is not None:
        env["PYENV_VERSION"] = version
    result = subprocess.run(
        [executable, str(CASES)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == PINNED


def test_the_format_version_is_in_every_default_key() -> None:
    assert all(
        key.startswith(f"k{memokit.keybuilders.KEY_FORMAT}:")
        for name, key in PINNED.items()
        if name not in ("partial", "template")
    )
