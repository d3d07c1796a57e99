"""Draw docs/freshness-timeline.png, the timeline picture of docs/freshness.md.

    python scripts/freshness_timeline.py [--out PATH]

Needs matplotlib (``pip install -e '.[bench]'``), as the benchmark plots do. Three
panels, for an entry of ``@cached(timeout=300, stale=60, early=1.0, jitter=0.1)``
whose computation takes 20 s:

1. one entry's phases (fresh, stale-while-revalidate, expired) and what callers
   see in each: a stale hit served at once and the one background refresh it
   starts, beside a function without a stale window, whose callers wait;
2. XFetch: the chance that a call recomputes early, rising towards the expiry,
   for three values of ``early``;
3. jitter: when 200 entries made in one burst expire, without and with it.

Nothing here is random but the jitter's draws, from a fixed seed: the picture
is the same at every run.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The picture draws memokit's own formula, so the two cannot drift apart.
from memokit.freshness import early_probability

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "freshness-timeline.png"

TIMEOUT = 300.0
STALE = 60.0
TOOK = 20.0  # seconds the function's computation takes
EARLY = 1.0
JITTER = 0.1
BURST = 200  # entries made at once, for the jitter panel
VIEW = (190.0, 470.0)  # the seconds panels 1 and 2 show: the end of the fresh time and after

FRESH_COLOUR = "#4c9f70"
STALE_COLOUR = "#e89a28"
EXPIRED_COLOUR = "#c8c8c8"
WAIT_COLOUR = "#d04040"
REFRESH_COLOUR = "#3070c0"


def jittered(timeout: float, jitter: float, draws: int, seed: int = 18) -> list[float]:
    """``draws`` fresh times, each shortened by a random fraction of at most ``jitter``."""
    rng = random.Random(seed)
    return [timeout * (1.0 - jitter * rng.random()) for _ in range(draws)]


def _bar(ax: Any, y: float, start: float, length: float, colour: str, **kw: Any) -> None:
    ax.broken_barh([(start, length)], (y - 0.3, 0.6), color=colour, **kw)


def _phases(ax: Any) -> None:
    """Panel 1: the phases of one entry, and what callers see in each."""
    end = TIMEOUT + STALE
    left, right = VIEW
    call = TIMEOUT + 12  # the first call after the expiry
    renewed = call + TOOK
    lanes = [
        "the phases\n(nobody calls)",
        "stale=60,\na call at 312 s",
        "no stale window,\na call at 312 s",
    ]
    y0, y1, y2 = 2.0, 1.0, 0.0
    # The phases of an entry nobody calls for after it was made.
    _bar(ax, y0, 0, TIMEOUT, FRESH_COLOUR)
    _bar(ax, y0, TIMEOUT, STALE, STALE_COLOUR)
    _bar(ax, y0, end, right - end, EXPIRED_COLOUR)
    ax.text((left + TIMEOUT) / 2, y0, "fresh: a hit", ha="center", va="center", color="white")
    ax.text(TIMEOUT + STALE / 2, y0, "stale", ha="center", va="center", fontsize=8)
    ax.text((end + right) / 2, y0, "expired", ha="center", va="center", fontsize=8)
    # With a stale window: the call is served the old value at once and starts one
    # background refresh; the next calls are stale hits until it is in, then fresh.
    _bar(ax, y1, 0, TIMEOUT, FRESH_COLOUR)
    _bar(ax, y1, TIMEOUT, renewed - TIMEOUT, STALE_COLOUR)
    _bar(ax, y1, renewed, right - renewed, FRESH_COLOUR)
    ax.annotate(
        "",
        xy=(renewed, y1),
        xytext=(call, y1),
        arrowprops={"arrowstyle": "->", "color": REFRESH_COLOUR, "lw": 2.5},
    )
    ax.text(
        renewed + 3,
        y1,
        "one background refresh; meanwhile, callers get the stale value at once",
        va="center",
        fontsize=8,
        color="white",
    )
    # Without one: the call (and every call until the value is in) waits.
    _bar(ax, y2, 0, TIMEOUT, FRESH_COLOUR)
    _bar(ax, y2, TIMEOUT, call - TIMEOUT, EXPIRED_COLOUR)
    _bar(ax, y2, call, TOOK, WAIT_COLOUR)
    _bar(ax, y2, renewed, right - renewed, FRESH_COLOUR)
    ax.text(
        renewed + 3,
        y2,
        "every caller waited for the computation",
        va="center",
        fontsize=8,
        color="white",
    )
    for y in (y1, y2):
        ax.plot([call], [y + 0.42], "v", color="black")
    for x, style in ((TIMEOUT, "--"), (end, ":")):
        ax.axvline(x, color="black", lw=0.8, ls=style)
    ax.set_yticks([y0, y1, y2], lanes, fontsize=8)
    ax.set_ylim(-0.55, 2.55)
    ax.set_xlim(left, right)
    ax.set_xticks([200, 250, TIMEOUT, end, 400, 450], ["200", "250", "300", "360", "400", "450"])
    ax.set_xlabel("seconds since the entry was made: timeout 300 s, stale window to 360 s")
    ax.set_title(
        "Stale-while-revalidate: @cached(timeout=300, stale=60), a computation of 20 s",
        fontsize=10,
    )


def _early(ax: Any) -> None:
    """Panel 2: XFetch's probability of an early recomputation, per call."""
    span = TIMEOUT - VIEW[0]
    steps = 240
    gaps = [span * (1 - i / steps) for i in range(steps + 1)]
    for early, style in ((0.5, ":"), (EARLY, "-"), (2.0, "--")):
        ax.plot(
            [TIMEOUT - g for g in gaps],
            [early_probability(g, TOOK, early) for g in gaps],
            style,
            color=REFRESH_COLOUR,
            label=f"early={early:g}",
        )
    ax.axvline(TIMEOUT, color="black", lw=0.8, ls="--")
    ax.text(
        TIMEOUT + 8,
        0.5,
        "past the timeout: no early recomputation;\nthe entry is stale (stale=) or expired",
        va="center",
        fontsize=8,
    )
    ax.set_xlim(*VIEW)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("seconds since the entry was made (timeout 300 s, computation 20 s)")
    ax.set_ylabel("chance one call\nrecomputes early")
    ax.set_title(
        "Early recomputation (XFetch): exp(-(expiry - now) / (computation time * early))",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)


def _jitter(ax: Any) -> None:
    """Panel 3: the expiries of a burst of entries, without and with jitter."""
    spread = jittered(TIMEOUT, JITTER, BURST)
    low = TIMEOUT * (1 - JITTER)
    ax.eventplot(
        [spread, [TIMEOUT] * BURST],
        lineoffsets=[1, 0],
        linelengths=0.6,
        colors=[FRESH_COLOUR, WAIT_COLOUR],
        linewidths=1,
    )
    ax.text(TIMEOUT + 2, 0, f"all {BURST} at once", va="center", fontsize=8, color=WAIT_COLOUR)
    ax.text(
        TIMEOUT + 2,
        1,
        f"{BURST} over {TIMEOUT - low:.0f} s",
        va="center",
        fontsize=8,
        color=FRESH_COLOUR,
    )
    ax.axvspan(low, TIMEOUT, color=FRESH_COLOUR, alpha=0.08)
    ax.set_yticks([1, 0], [f"jitter={JITTER:g}", "jitter=0"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlim(low - 15, TIMEOUT + 25)
    ax.set_xlabel(
        f"seconds since {BURST} entries were made at once (timeout 300 s): when each expires"
    )
    ax.set_title(
        "Jitter: each timeout shortened by a random fraction of at most jitter",
        fontsize=10,
    )


def draw(out: Path) -> None:
    """Write the three panels to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 9.5), height_ratios=[1.2, 1, 0.7])
    _phases(axes[0])
    _early(axes[1])
    _jitter(axes[2])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" entry: the file then depends on the drawing only, not on the version.
    fig.savefig(out, dpi=90, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    args = parser.parse_args(argv)
    try:
        draw(args.out)
    except ImportError as exc:
        print(f"{exc.name} is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
