"""Feed SLO: every expected bucket of the probe judged once (on_time / late / missing).

Pure functions on plain data (no clock, no I/O): the poller feeds them the expected bucket
ends, the earliest SYSTIME of each bucket's accepted row and "now", and keeps the verdicts in
the pair's state (`algopack_buckets_total`, `algopack_bucket_publish_delay_seconds`).

A bucket ending at T whose row carries SYSTIME S (delay = S - T) is
- `on_time` when delay <= publish grace;
- `late` when grace < delay <= grace + hole window (poll.missing_window_seconds);
- `missing` when no row with delay <= grace + window exists once now > T + grace + window.
The verdict depends only on the row's own SYSTIME, never on when we polled it, so a backlog
read in one poll is judged bucket by bucket by when ISS published each one.

Only buckets ending after `since_ts` are judged: the exporter's start, or the start of today's
persisted state (exporter/storage.py, --storage.path); a bucket due before it may have been
counted by the previous process already. Rejected rows (algopack_rows_rejected_total) never
reach `arrivals`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

OUTCOMES = ("on_time", "late", "missing")
# Histogram buckets of algopack_bucket_publish_delay_seconds (seconds).
DELAY_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True)
class Verdict:
    bucket: float              # bucket END (Unix time)
    outcome: str               # one of OUTCOMES
    delay: float | None        # SYSTIME - bucket end; None for missing


def outcome_of(delay: float | None, grace: float, window: float) -> str:
    """The outcome of a bucket whose (earliest) row came `delay` seconds after its end."""
    if delay is None or delay > grace + window:
        return "missing"
    return "on_time" if delay <= grace else "late"


def merge_arrivals(arrivals: Mapping[float, float], buckets: Iterable[float],
                   systimes: Iterable[float]) -> dict[float, float]:
    """Earliest SYSTIME per bucket end: a re-read or a reload (later SYSTIME) never moves it."""
    out = dict(arrivals)
    for bucket, systime in zip(buckets, systimes, strict=True):
        key = float(round(bucket))
        if key not in out or systime < out[key]:
            out[key] = float(systime)
    return out


def judge(expected: Iterable[float], arrivals: Mapping[float, float], judged: AbstractSet[float],
          now_ts: float, grace: float, window: float, since_ts: float, final: bool = False) -> list[Verdict]:
    """Verdicts for the expected buckets not judged yet that can be judged now.

    A bucket with a row within grace + window is judged as soon as the row is known; one
    without is judged missing once now > end + grace + window (or at once with `final`: the
    day is closed and its rows are not read again)."""
    out = []
    deadline = grace + window
    for bucket in expected:
        key = float(round(bucket))
        if key <= since_ts or key in judged:
            continue
        systime = arrivals.get(key)
        delay = None if systime is None else systime - key
        if delay is not None and delay <= deadline:
            out.append(Verdict(key, outcome_of(delay, grace, window), delay))
        elif final or now_ts > key + deadline:
            out.append(Verdict(key, "missing", None))
    return out


def next_verdict_ts(expected: Iterable[float], arrivals: Mapping[float, float], judged: AbstractSet[float],
                    grace: float, window: float, since_ts: float) -> float | None:
    """The earliest moment a still unjudged bucket can be judged missing (None: none left)."""
    pending = [float(round(b)) for b in expected
               if float(round(b)) > since_ts and float(round(b)) not in judged and float(round(b)) not in arrivals]
    return min(pending) + grace + window + 1.0 if pending else None


def tally(verdicts: Iterable[Verdict]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for verdict in verdicts:
        counts[verdict.outcome] += 1
    return counts
