"""Same-run comparisons: one server's rate over another's, round by round, and CPU per request.

The servers of a scenario take turns, one short run each per round (benchmarks/turns.py), so
round i of one server and round i of another ran within seconds of each other, under the same
neighbours. Their ratio round by round is steadier than a ratio of medians; the median of those
ratios is the claim and their range is its spread: "1.9x (1.7-2.1)".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["cpu_us_per_request", "format_ratio", "ratio_spread", "versus_md"]


def ratio_spread(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, float] | None:
    """ours[i] / theirs[i] for each round both have (theirs > 0): the median, lowest and
    highest ratio and how many rounds; None when no round pairs up."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=False) if b > 0]
    if not ratios:
        return None
    return {
        "median": round(statistics.median(ratios), 3),
        "low": round(min(ratios), 3),
        "high": round(max(ratios), 3),
        "rounds": len(ratios),
    }


def format_ratio(spread: dict[str, float] | None) -> str:
    """ "1.9x (1.7-2.1)"; "1.9x" for a single round; "-" for none."""
    if not spread:
        return "-"
    text = f"{spread['median']:.2f}x"
    if spread["rounds"] > 1:
        text += f" ({spread['low']:.2f}-{spread['high']:.2f})"
    return text


def cpu_us_per_request(cpu_seconds: float, requests: int) -> float | None:
    """Microseconds of server CPU (all its processes, user + system) per request served."""
    if requests <= 0:
        return None
    return round(cpu_seconds * 1e6 / requests, 1)


def versus_md(versus: dict[str, Any], what: str = "req/s", column: str = "mode") -> list[str]:
    """aioworker's `what` over each rival's, round by round: median (lowest-highest), a row
    per key of `versus` (under the heading `column`)."""
    if not versus:
        return []
    rivals = sorted({rival for row in versus.values() for rival in row})
    lines = [
        "",
        f"aioworker's {what} over each server's, round by round (rounds ran back to back): "
        "median (lowest-highest).",
        "",
        f"| {column} | " + " | ".join(f"vs {rival}" for rival in rivals) + " |",
        "|---|" + "--:|" * len(rivals),
    ]
    for mode, row in versus.items():
        lines.append(f"| {mode} | " + " | ".join(format_ratio(row.get(r)) for r in rivals) + " |")
    return lines
