"""Percentiles and summaries (linear interpolation between closest ranks, as numpy's default)."""

from __future__ import annotations

import statistics


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: list[float]) -> dict:
    """p50/p90/p99/max/mean in milliseconds of durations given in seconds, and how many there were."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p90": round(percentile(ms, 90), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
        "min": round(min(ms), 2),
    }


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def max_in_window(times: list[float], window: float) -> tuple[int, float | None]:
    """The most events in any half-open window [t, t + window) (t ranging over the events), and where it starts."""
    ordered = sorted(times)
    best, start, j = 0, None, 0
    for i, t in enumerate(ordered):
        while j < len(ordered) and ordered[j] < t + window:
            j += 1
        if j - i > best:
            best, start = j - i, t
    return best, start
