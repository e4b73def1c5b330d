"""Pure checks on ISS rows: bucket times, holes, secid counts, hi2 presence, liquidity.

No I/O and no clock here: callers pass "now" and the calendar's answers, so every rule
is tested on plain data. Bucket times are END times (ISS labels a 5-minute bucket by its end).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from .clock import MSK

TIME_COLUMNS = ("tradedate", "tradetime", "systime")


class RowsError(ValueError):
    """Rows that cannot be interpreted (bad date/time values): a parse error, never a crash."""


@dataclass(frozen=True)
class Rows:
    """Rows of one instrument reduced to what the checks need, in the order ISS returned them."""

    buckets: tuple[float, ...]   # bucket END as Unix time, one per row (duplicates possible: futoi FIZ/YUR)
    systimes: tuple[float, ...]  # SYSTIME as Unix time, aligned with buckets

    @property
    def empty(self) -> bool:
        return not self.buckets


def _to_unix(values: pd.Series, fmt: str, what: str) -> pd.Series:
    parsed = pd.to_datetime(values, format=fmt, errors="coerce")
    if parsed.isna().any():
        bad = values[parsed.isna()].iloc[0]
        raise RowsError(f"bad {what} value {bad!r}")
    localized = parsed.dt.tz_localize(MSK, ambiguous="raise", nonexistent="raise")
    return localized.map(lambda ts: ts.timestamp()).astype("float64")


def rows_from_frame(frame: pd.DataFrame) -> Rows:
    """tradedate+tradetime (Moscow) → bucket end; systime → load time. Columns lower-case."""
    if frame.empty:
        return Rows((), ())
    missing = [c for c in TIME_COLUMNS if c not in frame.columns]
    if missing:
        raise RowsError(f"missing column(s) {', '.join(missing)}")
    stamp = frame["tradedate"].astype(str).str.strip() + " " + frame["tradetime"].astype(str).str.strip()
    buckets = _to_unix(stamp, "%Y-%m-%d %H:%M:%S", "tradedate/tradetime")
    systimes = _to_unix(frame["systime"].astype(str).str.strip(), "%Y-%m-%d %H:%M:%S", "systime")
    return Rows(tuple(buckets.tolist()), tuple(systimes.tolist()))


def newest(rows: Rows) -> tuple[float, float] | None:
    """(bucket end, systime) of the newest bucket; the max systime within that bucket."""
    if rows.empty:
        return None
    last_bucket = max(rows.buckets)
    systime = max(s for b, s in zip(rows.buckets, rows.systimes, strict=True) if b == last_bucket)
    return last_bucket, systime


def missing_runs(due: Iterable[datetime], seen: Iterable[float]) -> list[list[datetime]]:
    """Holes grouped into runs of consecutive due buckets (no arrived bucket between them):
    a stopped feed is one run that grows; a hole after data came back starts a new run."""
    seen_set = {round(ts) for ts in seen}
    runs: list[list[datetime]] = []
    previous_missing = False
    for bucket in due:
        missing = round(bucket.timestamp()) not in seen_set
        if missing and previous_missing:
            runs[-1].append(bucket)
        elif missing:
            runs.append([bucket])
        previous_missing = missing
    return runs


def lag_seconds(now: float, newest_systime: float | None, session_start: float | None,
                in_session: bool) -> float:
    """now − max(newest SYSTIME, session start) while in session, 0 outside (design)."""
    if not in_session:
        return 0.0
    anchors = [t for t in (newest_systime, session_start) if t is not None]
    if not anchors:
        return 0.0
    return max(0.0, now - max(anchors))


def secids_per_interval(frame: pd.DataFrame) -> pd.Series:
    """Distinct secids per tradetime (index: tradetime string)."""
    if frame.empty:
        return pd.Series(dtype="int64")
    for column in ("tradetime", "secid"):
        if column not in frame.columns:
            raise RowsError(f"missing column {column}")
    return frame.groupby("tradetime")["secid"].nunique()


def newest_interval_secids(frame: pd.DataFrame) -> tuple[str, int] | None:
    """(tradetime, distinct secids) of the newest interval present in the frame."""
    counts = secids_per_interval(frame)
    if counts.empty:
        return None
    newest_time = max(counts.index)
    return str(newest_time), int(counts[newest_time])


def max_secids_per_interval(frame: pd.DataFrame) -> int:
    counts = secids_per_interval(frame)
    return int(counts.max()) if not counts.empty else 0


def has_rows_for_day(frame: pd.DataFrame, day: date) -> bool:
    if frame.empty or "tradedate" not in frame.columns:
        return False
    return bool((frame["tradedate"].astype(str).str.strip() == day.isoformat()).any())


def most_liquid(frame: pd.DataFrame, value_column: str = "val") -> str | None:
    """Secid with the largest summed traded value (falls back to volume)."""
    if frame.empty or "secid" not in frame.columns:
        return None
    column = value_column if value_column in frame.columns else "vol"
    if column not in frame.columns:
        raise RowsError(f"missing column {value_column}")
    totals = pd.to_numeric(frame[column], errors="coerce").fillna(0).groupby(frame["secid"]).sum()
    if totals.empty or totals.max() <= 0:
        return None
    return str(totals.idxmax())
