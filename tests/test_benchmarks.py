"""The benchmark harness (``python -m benchmarks``) runs a small section end to end.

``benchmarks/`` is not part of the wheel, so it runs in a subprocess from the
source tree, importing the same memokit as this test run.
"""

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

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("cachetools", "cachelib", "diskcache", "dogpile", "django")
# memokit from wherever this run imports it (the wheel in CI), then the harness from the tree.
RUN = (
    "import runpy, sys; sys.path.append(sys.argv.pop(1)); "
    "runpy.run_module('benchmarks', run_name='__main__', alter_sys=True)"
)


def _harness(tmp_path: Path, *args: str, peers: bool = True) -> subprocess.CompletedProcess[str]:
    missing = [p for p in PEERS if importlib.util.find_spec(p) is None]
    if peers and missing:
        pytest.skip(f"benchmark peers missing: {', '.join(missing)} (pip install -e '.[bench]')")
    env = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
    return subprocess.run(
        [sys.executable, "-c", RUN, str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )


def test_memory_section_writes_json_and_page(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _harness(
        tmp_path,
        "memory",
        "hits",
        "--quick",
        "--repeats=1",
        "--seconds=0.002",
        f"--json={out / 'run.json'}",
        f"--page={out / 'bench.md'}",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert len(data["meta"]["commit"]) == 40
    assert data["meta"]["command"].startswith("python -m benchmarks memory hits --quick")
    memory = data["sections"]["memory"]
    assert memory["status"] == "ok", memory
    ops = [g["op"] for g in memory["result"]["groups"]]
    assert ops[:3] == ["get_hit", "get_miss", "set"]
    assert "set_many_1000" in ops
    for group in memory["result"]["groups"]:
        roles = {r["role"] for r in group["results"]}
        assert {"memokit", "django", "floor"} <= roles, group["op"]
        assert all(r["median"] > 0 for r in group["results"])
    hits = data["sections"]["hits"]
    if not hasattr(memokit, "cached"):
        assert hits["status"] == "skipped"
        assert "issue 7" in hits["reason"]
    else:
        assert hits["status"] == "ok", hits
    assert "filesystem" not in data["sections"]  # only the sections asked for

    page = (out / "bench.md").read_text(encoding="utf-8")
    assert "## Raw operations: memory" in page
    assert data["meta"]["commit"][:12] in page
    assert "`python -m benchmarks memory hits --quick" in page
    if importlib.util.find_spec("matplotlib") is not None:
        assert "![memory](bench/many-memory.png)" in page
        assert (out / "bench" / "many-memory.png").stat().st_size > 1000


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    result = _harness(tmp_path, "nosuch", peers=False)
    assert result.returncode == 2
    assert "unknown section(s) nosuch; choose from hits" in result.stderr


def test_list_says_which_sections_wait_for_which_issue(tmp_path: Path) -> None:
    # Needs no peer: a section is only skipped or not by what memokit has.
    from memokit.backends import BACKENDS

    result = _harness(tmp_path, "--list", peers=False)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert list(lines)[:3] == ["hits", "cached_property", "memory"]
    assert "skipped" not in lines["memory"]
    assert "skipped" not in lines["threads"]
    for backend, issue in (("filesystem", 5), ("sqlite", 5), ("redis", 6), ("memcached", 6)):
        if backend not in BACKENDS:
            assert (
                f"[skipped: memokit has no {backend!r} backend yet (issue {issue})]"
                in (lines[backend])
            )
    if not hasattr(memokit, "cached"):
        assert "[skipped: memokit.cached does not exist yet (issue 7)]" in lines["stampede"]


@pytest.mark.server
def test_payloads_section_measures_the_issue_17_targets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _harness(
        tmp_path,
        "payloads",
        "--quick",
        "--repeats=1",
        "--seconds=0.002",
        f"--json={out / 'run.json'}",
        f"--page={out / 'bench.md'}",
        peers=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "run.json").read_text(encoding="utf-8"))
    section = data["sections"]["payloads"]
    assert section["status"] == "ok", section
    sizes = section["result"]["stored_bytes"]
    assert sizes["uncompressed"] > 64_000 > sizes["zlib"]
    rows = [t for t in data["targets"] if t["issue"] == 17]
    assert len(rows) == 14
    assert all(t["measured"] is not None for t in rows), rows
    assert "Stored size of the 64 KiB value" in (out / "bench.md").read_text(encoding="utf-8")


def test_expiring_section_measures_the_issue_18_targets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _harness(
        tmp_path,
        "expiring",
        "--quick",
        f"--json={out / 'run.json'}",
        f"--page={out / 'bench.md'}",
        peers=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "run.json").read_text(encoding="utf-8"))
    section = data["sections"]["expiring"]
    assert section["status"] == "ok", section
    found = section["result"]
    ran = {r["name"]: r for r in found["results"]}
    skipped = {s["name"]: s["reason"] for s in found["skipped"]}
    assert len(ran) + len(skipped) == 6
    # Today's memokit, without a stale window, always runs: single flight, one run.
    today = ran["memokit @cached (memory), no stale window"]
    assert today["runs"] == [1]
    assert today["all_correct"]
    assert today["plain_median_us"] > 0
    swr = "memokit @cached(stale=) (memory)"
    rows = [t for t in data["targets"] if t["issue"] == 18]
    assert len(rows) == 3
    if swr in skipped:
        assert "takes no stale= yet" in skipped[swr]
        assert all(t["note"].startswith("not measured: memokit.cached") for t in rows), rows
    else:
        assert all(t["measured"] is not None for t in rows), rows
    page = (out / "bench.md").read_text(encoding="utf-8")
    assert "## Hot key expiring" in page
    assert "| memokit @cached (memory), no stale window *(memokit)* | threads | 1 |" in page


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_freshness_timeline_script_draws_the_picture(tmp_path: Path) -> None:
    # docs/freshness.md's picture is drawn by a script, as the benchmark plots are.
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib missing (pip install -e '.[bench]')")
    out = tmp_path / "timeline.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "freshness_timeline.py"), f"--out={out}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "docs" / "freshness-timeline.png").read_bytes()
    assert _png_size(out.read_bytes()) == _png_size(committed)


def _tree_copy(tmp_path: Path) -> Path:
    """The harness in tmp_path/benchmarks: its results and docs land under tmp_path."""
    shutil.copytree(
        ROOT / "benchmarks",
        tmp_path / "benchmarks",
        ignore=shutil.ignore_patterns("__pycache__", "results"),
    )
    return tmp_path


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The committed results, re-rendered: the same choice of paths as a whole run. Only
    # the sections without a plot, so that matplotlib is not imported (5 s a render).
    data = json.loads((ROOT / "benchmarks/results/benchmarks.json").read_text(encoding="utf-8"))
    data["sections"] = {k: v for k, v in data["sections"].items() if k == "hits"}
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "--render", str(saved), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=_tree_copy(tmp_path),
        env=env,
    )


def test_a_whole_run_leaves_the_tracked_docs_alone(tmp_path: Path) -> None:
    # The README's `python -m benchmarks --quick` rewrote docs/benchmarks.md and the
    # committed JSON; only --update-docs may.
    result = _render(tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "docs").exists()
    page = tmp_path / "benchmarks" / "results" / "latest.md"
    assert f"wrote {page}" in result.stdout
    assert "## Memoised hits" in page.read_text(encoding="utf-8")


def test_update_docs_writes_the_tracked_page(tmp_path: Path) -> None:
    result = _render(tmp_path, "--update-docs")
    assert result.returncode == 0, result.stderr
    page = tmp_path / "docs" / "benchmarks.md"
    assert f"wrote {page}" in result.stdout
    assert "## Memoised hits" in page.read_text(encoding="utf-8")
    assert not (tmp_path / "benchmarks" / "results" / "latest.md").exists()


def test_update_docs_needs_every_section(tmp_path: Path) -> None:
    result = _harness(tmp_path, "memory", "--update-docs", peers=False)
    assert result.returncode == 2
    assert "--update-docs writes the tracked results, which need a run of every section" in (
        result.stderr
    )
