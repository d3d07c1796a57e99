"""Render one run's JSON as ``docs/benchmarks.md`` with PNG plots beside it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .ops import fmt_ns
from .stores import SIZES

METHOD = """\
How the figures are made (see `benchmarks/timing.py`): every candidate of a group
is calibrated to about the same time per repeat, the repeats run round-robin
across the candidates, and each figure is the **median** of the repeats, with the
garbage collector off while timing and the empty loop (about 8 ns) included.
Ratios are taken only between candidates of the same group **in this run**:
absolute figures on a shared machine move 5-40 % between runs, ratios far less
(about ±15 % in-process, ±25 % over the network). The run, and every server it
starts, is pinned to one CPU (`benchmarks/env.py`, `pin_to_one_cpu`): on the
virtual machine a request that wakes a server on the other, idle CPU waits
50-100 µs for it, at random per connection, which swamped the clients' costs.
Roles: *memokit*; *django*, Django's matching piece; *peer*, another library;
*floor*, the cheapest way to do the operation at all from Python. Every repeat's
figure, and the in-run spread ((max - min) / median), are in the JSON. A call that
alone takes longer than a repeat (a `set_many` of 1,000 files) keeps its
calibration call as one repeat.
"""

OP_LABELS = {
    "get_hit": "get (hit)",
    "get_miss": "get (miss)",
    "set": "set",
    "add": "add (new key)",
    "incr": "incr",
    "delete": "delete (present key)",
    **{f"get_many_{n}": f"get_many({n})" for n in SIZES},
    **{f"set_many_{n}": f"set_many({n})" for n in SIZES},
}


def _ratio(x: float) -> str:
    if x >= 10:
        return f"{x:.3g}x"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"


def _header(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ops_table(result: dict[str, Any]) -> list[str]:
    names: list[str] = []
    roles: dict[str, str] = {}
    for group in result["groups"]:
        for r in group["results"]:
            if r["name"] not in roles:
                names.append(r["name"])
                roles[r["name"]] = r["role"]
    has_django = "django" in roles.values()
    cols = ["operation", *(f"{n} *({roles[n]})*" for n in names)]
    lines = _header([*cols, "memokit ÷ Django"] if has_django else cols)
    for group in result["groups"]:
        by_name = {r["name"]: r for r in group["results"]}
        floor = next((r["median"] for r in group["results"] if r["role"] == "floor"), None)
        cells = [OP_LABELS.get(group["op"], group["op"])]
        for n in names:
            r = by_name.get(n)
            if r is None:
                cells.append("-")
            elif floor:
                cells.append(f"{fmt_ns(r['median'])} ({_ratio(r['median'] / floor)})")
            else:
                cells.append(fmt_ns(r["median"]))
        if has_django:
            mine = next((r for r in group["results"] if r["role"] == "memokit"), None)
            dj = next((r for r in group["results"] if r["role"] == "django"), None)
            cells.append(_ratio(mine["median"] / dj["median"]) if mine and dj else "-")
        lines.append(_row(cells))
    return [
        "Median per call; in brackets, the ratio to the floor in the same run.",
        "",
        *lines,
    ]


def _hits_table(result: dict[str, Any]) -> list[str]:
    groups = result["groups"]
    first = groups[0]["results"]
    cols = ["candidate"]
    for g in groups:
        floor = next(r["name"] for r in g["results"] if r["role"] == "floor")
        cols += [f"`{g['stmt']}`", f"x {floor}"]
    lines = _header(cols)
    for cand in first:
        cells = [f"{cand['name']} *({cand['role']})*"]
        for g in groups:
            by_name = {r["name"]: r for r in g["results"]}
            floor = next(r["median"] for r in g["results"] if r["role"] == "floor")
            r = by_name[cand["name"]]
            cells += [fmt_ns(r["median"]), _ratio(r["median"] / floor)]
        lines.append(_row(cells))
    return lines


def _threads_table(result: dict[str, Any]) -> list[str]:
    lines = _header(["backend", "candidate", "1 thread (ops/s)", "8 threads (ops/s)", "8 ÷ 1"])
    for group in result["groups"]:
        for r in group["results"]:
            lines.append(
                _row(
                    [
                        group["backend"],
                        f"{r['name']} *({r['role']})*",
                        f"{r['threads_1']:,.0f}",
                        f"{r['threads_8']:,.0f}",
                        f"{r['kept']:.2f}",
                    ]
                )
            )
    lines += [f"\n_Not measured: {s}._" for s in result.get("skipped", [])]
    return lines


def _stampede_table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['callers']} threads released together call one memoised function on the "
        f"same cold key; its body sleeps {result['body_ms']:.0f} ms.",
        "",
        *_header(["candidate", "body runs per trial", "wall (median)", "wall ÷ body", "all right"]),
    ]
    for r in result["results"]:
        lines.append(
            _row(
                [
                    f"{r['name']} *({r['role']})*",
                    ", ".join(map(str, r["runs"])),
                    f"{r['median_wall_ms']:.0f} ms",
                    _ratio(r["wall_ratio"]),
                    "yes" if r["all_correct"] else "**no**",
                ]
            )
        )
    return lines


def _us(us: float) -> str:
    return f"{us / 1e3:.3g} ms" if us >= 1e3 else f"{us:.3g} µs"


def _expiring_table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['callers']} callers call one memoised function on one key, each pausing "
        f"{result['pause_ms']:g} ms between calls; its body sleeps {result['body_ms']:.0f} ms. "
        f"The entry is fresh for {result['fresh_ms']:.0f} ms, so it expires about halfway "
        f"through each {result['run_ms']:.0f} ms run. *Plain*: the median latency of the calls "
        "made before the expiry; *while refreshed*: of those made from the expiry until the "
        "function's next run has ended. The worst caller's latency is the largest of all "
        "trials; stale windows are longer than the run.",
        "",
        *_header(
            [
                "candidate",
                "callers are",
                "function runs per trial",
                "worst caller",
                f"callers over {result['limit_ms']:g} ms",
                "median, plain",
                "median, while refreshed",
                "refreshed ÷ plain",
                "all right",
            ]
        ),
    ]
    for r in result["results"]:
        lines.append(
            _row(
                [
                    f"{r['name']} *({r['role']})*",
                    r["mode"],
                    ", ".join(map(str, r["runs"])),
                    f"{r['max_ms']:.3g} ms",
                    f"{r['callers_over_limit']} of {result['callers']}",
                    _us(r["plain_median_us"]),
                    _us(r["expiring_median_us"]),
                    f"{r['ratio']:,.0f}x" if r["ratio"] >= 1000 else _ratio(r["ratio"]),
                    "yes" if r["all_correct"] else "**no**",
                ]
            )
        )
    lines += [f"\n_Not measured: {s['name']}: {s['reason']}._" for s in result["skipped"]]
    return lines


def _footprint_table(result: dict[str, Any]) -> list[str]:
    ref = next((r for r in result["results"] if r["role"] == "django"), None)
    lines = [
        f"{result['entries']:,} entries, `tracemalloc` retained bytes per entry "
        "(keys included), each structure in a fresh interpreter.",
        "",
        *_header(["structure", "B/entry", "peak B/entry", "x Django LocMemCache"]),
    ]
    for r in result["results"]:
        lines.append(
            _row(
                [
                    f"{r['name']} *({r['role']})*",
                    f"{r['bytes_per_entry']:.0f}",
                    f"{r['peak_per_entry']:.0f}",
                    _ratio(r["bytes_per_entry"] / ref["bytes_per_entry"]) if ref else "-",
                ]
            )
        )
    return lines


def _payloads_table(result: dict[str, Any]) -> list[str]:
    lines = _header(["operation", "candidates (median per call; ratio to the first)"])
    for group in result["groups"]:
        first = group["results"][0]["median"]
        cells = [
            f"{r['name']} {fmt_ns(r['median'])} ({_ratio(r['median'] / first)})"
            for r in group["results"]
        ]
        lines.append(_row([group["op"], "; ".join(cells)]))
    sizes = ", ".join(f"{k} {v:,} B" for k, v in result["stored_bytes"].items())
    return [
        "memokit caches on one store, differing only in OPTIONS (SECRET, COMPRESSOR). "
        "The floor beside each `get`: the plain-pickle `get`, then one HMAC-SHA256 check "
        "of the signed payload through the stdlib's cheapest route (keyed states made "
        "once), what a signed read costs at the least.",
        "",
        *lines,
        "",
        f"Stored size of the 64 KiB value: {sizes}.",
    ]


def _cluster_table(result: dict[str, Any]) -> list[str]:
    lines = _header(["operation", "single server", "cluster", "cluster ÷ single"])
    for group in result["groups"]:
        single, cluster = (r["median"] for r in group["results"])
        lines.append(_row([group["op"], fmt_ns(single), fmt_ns(cluster), _ratio(cluster / single)]))
    return [
        "A six-node Redis Cluster (three primaries) beside one redis-server, same run.",
        "",
        *lines,
    ]


def _tiers_table(result: dict[str, Any]) -> list[str]:
    group = result["groups"][0]
    by_name = {r["name"]: r["median"] for r in group["results"]}
    memory = by_name["memory"]
    lines = _header(["`@cached` hit, `f(7)`", "median", "÷ memory backend"])
    for name, median in by_name.items():
        lines.append(_row([name, fmt_ns(median), _ratio(median / memory)]))
    latency, trips = result["latency"], result["round_trips"]
    return [
        "Tier one (`TIER`, bound 1 s) in this process in front of one redis-server.",
        "",
        *lines,
        "",
        f"An invalidation (`f.invalidate_all()`) as another process reading through tier one "
        f"sees it, over {latency['rounds']} rounds: median {latency['median_ms']:.0f} ms, "
        f"at most {latency['max_ms']:.0f} ms (bound {latency['bound_ms']:.0f} ms).",
        "",
        f"Redis commands for {trips['calls']:,} hits spread over {trips['spread_s']:.0f} s: "
        f"{trips['counts']['without tier']:,} without a tier, "
        f"{trips['counts']['with tier one']:,} with tier one "
        f"({trips['saved_per_1000']:.0f} round trips saved per 1,000 calls).",
    ]


def _targets_table(targets: list[dict[str, Any]]) -> list[str]:
    lines = _header(["issue", "section", "target", "measured", "met"])
    for t in targets:
        if t["measured"] is None:
            measured, met = "-", t["note"]
        else:
            measured = (
                _ratio(t["measured"]) if t["unit"] == "x" else f"{t['measured']:.3g} {t['unit']}"
            )
            met = "**met**" if t["met"] else "**not met**"
        lines.append(_row([f"#{t['issue']}", t["section"], t["what"], measured, met]))
    return lines


def _plot_many(name: str, result: dict[str, Any], out: Path) -> bool:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("get_many", "set_many"), strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for group in result["groups"]:
            if group["op"].startswith(kind + "_"):
                n = int(group["op"].rsplit("_", 1)[1])
                for r in group["results"]:
                    series.setdefault(r["name"], []).append((n, r["median"] / 1_000))
        for label, points in series.items():
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="keys per call", ylabel="µs per call")
        ax.set_title(f"{name}: {kind}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def _plot_threads(result: dict[str, Any], out: Path) -> bool:
    import matplotlib.pyplot as plt

    groups = result["groups"]
    if not groups:
        return False
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    for ax, group in zip(axes.flat, groups, strict=False):
        names = [r["name"] for r in group["results"]]
        xs = range(len(names))
        ax.bar(
            [x - 0.2 for x in xs], [r["threads_1"] for r in group["results"]], 0.4, label="1 thread"
        )
        ax.bar(
            [x + 0.2 for x in xs],
            [r["threads_8"] for r in group["results"]],
            0.4,
            label="8 threads",
        )
        ax.set_xticks(list(xs), names, rotation=20, ha="right", fontsize=7)
        rates = [r[f"threads_{n}"] for r in group["results"] for n in (1, 8)]
        # Bars from a decade below the lowest, so that their heights compare honestly;
        # room above the highest for the legend.
        ax.set(yscale="log", ylabel="ops/s (all threads)", title=group["backend"])
        ax.set_ylim(10 ** math.floor(math.log10(max(min(rates), 1)) - 1), max(rates) * 8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def _plot(kind: str, name: str, result: dict[str, Any], plots: Path, page: Path) -> list[str]:
    """Draw the section's plot if it has one; the page's lines that show it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return ["_No plot: matplotlib is not installed (pip install -e '.[bench]')._"]
    plots.mkdir(parents=True, exist_ok=True)
    out = plots / (f"many-{name}.png" if kind == "ops" else f"{name}.png")
    drawn = _plot_many(name, result, out) if kind == "ops" else _plot_threads(result, out)
    if not drawn:
        return []
    rel = os.path.relpath(out, page.parent)
    return [f"![{name}]({rel})"]


def _busy(machine: dict[str, Any]) -> list[str]:
    loads = [*machine["load_average_at_start"][:1], *machine.get("load_average_at_end", [])[:1]]
    if machine["cpus"] and max(loads) > machine["cpus"]:
        return [
            f"**The machine was busy during this run** (1-minute load average up to "
            f"{max(loads):.1f} on {machine['cpus']} CPUs): absolute figures are noisier than "
            "usual; the ratios within a group are what to read.",
            "",
        ]
    return []


def render(data: dict[str, Any], page: Path) -> None:
    """Write the Markdown page for ``data`` and its plots in ``<page stem>/``."""
    meta = data["meta"]
    plots = page.with_suffix("")
    commit = meta["commit"][:12] + (" (with uncommitted changes)" if meta["commit_dirty"] else "")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/report.py from the JSON named below; do not edit. -->",
        "",
        f"- Command: `{meta['command']}`",
        f"- Commit: `{commit}` — {meta['commit_subject']}",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']['cpu']}, {meta['machine']['cpus']} CPUs, "
        f"{meta['machine']['memory']}, {meta['machine']['platform']}; load average at start "
        + ", ".join(f"{x:.2f}" for x in meta["machine"]["load_average_at_start"])
        + (
            f"; pinned to CPU {meta['machine']['pinned_to_cpu']}"
            if meta["machine"].get("pinned_to_cpu") is not None
            else ""
        ),
        f"- Python: {meta['python']}",
        f"- Duration: {meta['seconds']:.0f} s",
        f"- Raw results: `{data['json_path']}`",
        f"- Timing: {data['config']['repeats']} interleaved repeats of about "
        f"{data['config']['target_s']} s per candidate"
        + (" (`--quick`)" if data["config"]["quick"] else ""),
        "",
        *_busy(meta["machine"]),
        METHOD,
        "## Versions",
        "",
        *_header(["package", "version"]),
        *(_row([k, f"`{v}`"]) for k, v in meta["versions"].items()),
        "",
        "## Targets named in the issues",
        "",
        *_targets_table(data["targets"]),
        "",
    ]
    for name, section in data["sections"].items():
        lines += [f"## {section['title']}", ""]
        if section["status"] == "skipped":
            lines += [f"_Skipped: {section['reason']}._", ""]
            continue
        if section["status"] == "error":
            lines += [f"_Failed: {section['reason']}_", ""]
            continue
        result = section["result"]
        kind = result["kind"]
        if kind == "ops":
            lines += [*_ops_table(result), "", *_plot("ops", name, result, plots, page)]
        elif kind == "hits":
            lines += _hits_table(result)
        elif kind == "threads":
            lines += [
                "90 % get / 10 % set over 1,024 hot keys; all threads' operations per second.",
                "",
                *_threads_table(result),
                "",
                *_plot("threads", name, result, plots, page),
            ]
        elif kind == "stampede":
            lines += _stampede_table(result)
        elif kind == "expiring":
            lines += _expiring_table(result)
        elif kind == "footprint":
            lines += _footprint_table(result)
        elif kind == "payloads":
            lines += _payloads_table(result)
        elif kind == "cluster":
            lines += _cluster_table(result)
        elif kind == "tiers":
            lines += _tiers_table(result)
        lines.append("")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
