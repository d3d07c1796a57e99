"""Command line: ``python -m benchmarks [SECTION ...] [--quick] [--list] [--update-docs]``.

Where a run writes (``--json`` and ``--page`` override either):

- every section, ``--update-docs``: the tracked results, ``benchmarks/results/benchmarks.json``
  and ``docs/benchmarks.md`` with its plots in ``docs/benchmarks/``;
- every section: ``benchmarks/results/latest.json`` and ``latest.md`` (not tracked);
- named sections: ``benchmarks/results/partial.json`` and ``partial.md`` (not tracked).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import env, report, targets
from .sections import BY_NAME, SECTIONS, Context
from .timing import Config

PEERS = {
    "cachetools",
    "cachelib",
    "diskcache",
    "dogpile",
    "django",
    "redis",
    "pymemcache",
    "cashews",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark memokit beside its peers; write the results as JSON and Markdown "
        "(benchmarks/results/latest.*, or docs/benchmarks.md with --update-docs).",
    )
    p.add_argument("sections", nargs="*", metavar="SECTION", help="sections to run (default: all)")
    p.add_argument("--quick", action="store_true", help="a short run (under 2 minutes)")
    p.add_argument("--list", action="store_true", help="list the sections and whether they run")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="write the tracked results: benchmarks/results/benchmarks.json and "
        "docs/benchmarks.md with its plots (a run of every section only)",
    )
    p.add_argument("--json", type=Path, help="where to write the raw results")
    p.add_argument("--page", type=Path, help="where to write the Markdown page")
    p.add_argument("--render", type=Path, metavar="JSON", help="only re-render a page from JSON")
    p.add_argument("--repeats", type=int, help="override the number of repeats")
    p.add_argument("--seconds", type=float, help="override the time per repeat and candidate")
    return p


def _run_sections(names: list[str], config: Config) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="memokit-bench-") as tmp:
        ctx = Context(config, Path(tmp))
        try:
            for name in names:
                section = BY_NAME[name]
                entry: dict[str, Any] = {"title": section.title}
                out[name] = entry
                reason = section.missing()
                if reason:
                    print(f"== {name}: skipped: {reason}", flush=True)
                    entry.update(status="skipped", reason=reason)
                    continue
                print(f"== {name}", flush=True)
                start = time.monotonic()
                try:
                    env.setup_django(ctx.workdir)
                    entry.update(status="ok", result=section.run(ctx))
                except ModuleNotFoundError as exc:
                    if exc.name is None or exc.name.split(".")[0] not in PEERS:
                        raise
                    reason = f"{exc.name} is not installed (pip install -e '.[bench]')"
                    print(f"   skipped: {reason}", flush=True)
                    entry.update(status="skipped", reason=reason)
                except Exception as exc:
                    traceback.print_exc()
                    entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
                entry["seconds"] = round(time.monotonic() - start, 1)
        finally:
            ctx.stop_servers()
    return out


def _outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """Where this run writes its JSON and its page (see the module's docstring)."""
    results_dir = env.ROOT / "benchmarks" / "results"
    if args.sections:
        json_path, page = results_dir / "partial.json", results_dir / "partial.md"
    elif args.update_docs:
        json_path, page = results_dir / "benchmarks.json", env.ROOT / "docs" / "benchmarks.md"
    else:
        json_path, page = results_dir / "latest.json", results_dir / "latest.md"
    return args.json or json_path, args.page or page


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    unknown = [s for s in args.sections if s not in BY_NAME]
    if unknown:
        _parser().error(
            f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}"
        )
    if args.list:
        for s in SECTIONS:
            reason = s.missing()
            print(f"{s.name:<16}{s.title}" + (f"  [skipped: {reason}]" if reason else ""))
        return 0
    if args.update_docs and args.sections:
        _parser().error(
            "--update-docs writes the tracked results, which need a run of every section: "
            "leave out the section names, or leave out --update-docs"
        )
    json_path, page = _outputs(args)
    if args.render:
        data = json.loads(args.render.read_text(encoding="utf-8"))
        report.render(data, page)
        print(f"wrote {page}")
        return 0

    config = Config.quick() if args.quick else Config.full()
    if args.repeats is not None:
        config = dataclasses.replace(config, repeats=args.repeats, thread_repeats=args.repeats)
    if args.seconds is not None:
        config = dataclasses.replace(config, target_s=args.seconds, thread_s=args.seconds)
    env.pin_to_one_cpu()  # before any server starts: they inherit it
    started = time.monotonic()
    meta = env.metadata(argv)
    sections = _run_sections(args.sections or [s.name for s in SECTIONS], config)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["machine"]["load_average_at_end"] = list(os.getloadavg())
    json_path = json_path.resolve()
    data = {
        "meta": meta,
        "config": {"quick": args.quick, **dataclasses.asdict(config)},
        "json_path": str(json_path.relative_to(env.ROOT))
        if json_path.is_relative_to(env.ROOT)
        else str(json_path),
        "sections": sections,
        "targets": targets.evaluate(sections),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    report.render(data, page)
    print(f"wrote {json_path} and {page} in {meta['seconds']} s")
    if not args.update_docs and args.json is None and args.page is None:
        print("docs/benchmarks.md is unchanged; --update-docs writes the run there")
    failed = [n for n, s in sections.items() if s["status"] == "error"]
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
