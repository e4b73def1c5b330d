"""Pure checks on ISS rows: bucket times, bad rows, holes, secid counts, hi2 presence, liquidity.

No I/O and no clock here: callers pass "now" and the calendar's answers, so every rule
is tested on plain data. Bucket times are END times (ISS labels a 5-minute bucket by its end).

Rows arrive as plain records (one dict per row, lower-case column names); `records()` turns
a client block (an `exporter.table.Table`) into them. No pandas: a poll reads a handful of
rows, so times are parsed from their fixed ISS formats by slicing (strptime only for an odd
text), each distinct text once (a FUTOI answer repeats the whole day every poll).

One odd row never fails a poll (iss-api.md §11 "nulls"): `check_rows` skips it with one of
`REJECT_REASONS` and the caller counts it in `algopack_rows_rejected_total`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .clock import MSK

if TYPE_CHECKING:
    from .calendar import Calendar

TIME_COLUMNS = ("tradedate", "tradetime", "systime")
# Why a row was skipped (the `reason` label of algopack_rows_rejected_total). Checked in the
# order bad_time, other_day, off_grid, future_systime, before_bucket: the first that applies.
REJECT_REASONS = ("bad_time", "other_day", "future_systime", "off_grid", "before_bucket")
# A SYSTIME later than now + this is not a real load time (clock skew or a bad row).
FUTURE_SYSTIME_SLACK_SECONDS = 60.0
# A row cannot be loaded before its bucket ended; more than this before is impossible
# (e.g. a weekend session's rows filed under the next trading day, seen on that day).
BEFORE_BUCKET_SLACK_SECONDS = 60.0
GRID_MINUTES = 5
_WEEKEND_LOOKAHEAD_DAYS = 30

Record = Mapping[str, Any]


class RowsError(ValueError):
    """Rows that cannot be interpreted at all (a required column is missing): a parse error."""


@dataclass(frozen=True)
class Rows:
    """Rows of one instrument reduced to what the checks need, in the order ISS returned them.

    Only accepted rows are in `buckets`/`systimes`; `rejected` lists the skipped ones as
    (reason, row key) so a caller can count each bad row once."""

    buckets: tuple[float, ...]   # bucket END as Unix time, one per row (duplicates possible: futoi FIZ/YUR)
    systimes: tuple[float, ...]  # SYSTIME as Unix time, aligned with buckets
    rejected: tuple[tuple[str, tuple], ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.buckets


def column_values(block: Any, *names: str) -> tuple[Iterable[tuple[Any, ...]], set[str]]:
    """(rows as tuples of the named columns, the block's column names), without a dict per
    row (a previous day's obstats is ~40k rows at scale 1). Missing columns give None.
    `block` is a Table (columns + row lists) or a list of dicts."""
    if block is None:
        return iter(()), set()
    if hasattr(block, "values") and hasattr(block, "columns"):  # a Table
        return block.values(*names), set(block.columns)
    recs = records(block)
    present = set(recs[0]) if recs else set()
    return (tuple(r.get(n) for n in names) for r in recs), present


def records(block: Any) -> list[dict[str, Any]]:
    """A client block (a Table or a list of dicts) → list of dicts with lower-case keys."""
    if block is None:
        return []
    if hasattr(block, "records"):
        return block.records()  # a Table: its columns are lower-case already
    return [{str(k).lower(): v for k, v in row.items()} for row in block]


def _text(value: Any) -> str | None:
    """A cell as stripped text; None for null / NaN / empty."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def row_key(record: Record) -> tuple[str | None, str | None]:
    """What identifies a row's place for the incremental cursor's overlap check: its raw
    tradedate and tradetime text (bad rows included, since ISS's offsets count them)."""
    return (_text(record.get("tradedate")), _text(record.get("tradetime")))


def _identity(record: Record) -> tuple:
    """A row's identity for counting it once: every column but SYSTIME (a future SYSTIME may
    differ in every answer; a reload only changes SYSTIME)."""
    return tuple((k, repr(v)) for k, v in record.items() if k != "systime")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


@lru_cache(maxsize=1024)
def _parse_date(text: str | None) -> date | None:
    """"YYYY-MM-DD" → date (sliced; strptime only for another spelling); None when bad."""
    if text is None:
        return None
    if len(text) == 10 and text[4] == "-" and text[7] == "-" \
            and _digits(text[:4]) and _digits(text[5:7]) and _digits(text[8:]):
        try:
            return date(int(text[:4]), int(text[5:7]), int(text[8:]))
        except ValueError:
            return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _parse_time(text: str | None) -> time | None:
    """"HH:MM:SS" → time (sliced; strptime only for another spelling); None when bad."""
    if text is None:
        return None
    if len(text) == 8 and text[2] == ":" and text[5] == ":" \
            and _digits(text[:2]) and _digits(text[3:5]) and _digits(text[6:]):
        try:
            return time(int(text[:2]), int(text[3:5]), int(text[6:]))
        except ValueError:
            return None
    try:
        return datetime.strptime(text, "%H:%M:%S").time()
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _systime_ts(text: str | None) -> float | None:
    """SYSTIME text ("YYYY-MM-DD HH:MM:SS" or with a T, Moscow) → Unix time; None when bad."""
    if text is None:
        return None
    if len(text) == 19 and text[10] in " T":
        day, clock = _parse_date(text[:10]), _parse_time(text[11:])
        return None if day is None or clock is None else datetime.combine(day, clock, tzinfo=MSK).timestamp()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=MSK).timestamp()
        except ValueError:
            continue
    return None


@lru_cache(maxsize=4096)
def _bucket_ts(day: date, tradetime: time) -> float:
    return datetime.combine(day, tradetime, tzinfo=MSK).timestamp()


def reject_reason(record: Record, day: date, accepted_dates: Collection[date], now_ts: float
                  ) -> tuple[str | None, float | None, float | None]:
    """(reason or None, bucket end, systime) of one row polled for `day`.

    The bucket end is `day` + tradetime whatever tradedate (one of `accepted_dates`) ISS
    filed the row under: a weekend session's rows may carry the next trading day's date."""
    tradedate = _parse_date(_text(record.get("tradedate")))
    tradetime = _parse_time(_text(record.get("tradetime")))
    loaded = _systime_ts(_text(record.get("systime")))
    if tradedate is None or tradetime is None or loaded is None:
        return "bad_time", None, None
    if tradedate not in accepted_dates:
        return "other_day", None, None
    bucket = _bucket_ts(day, tradetime)
    if tradetime.second or tradetime.microsecond or tradetime.minute % GRID_MINUTES:
        return "off_grid", bucket, loaded
    if loaded > now_ts + FUTURE_SYSTIME_SLACK_SECONDS:
        return "future_systime", bucket, loaded
    if loaded < bucket - BEFORE_BUCKET_SLACK_SECONDS:
        return "before_bucket", bucket, loaded
    return None, bucket, loaded


def check_rows(rows: Sequence[Record], day: date, now_ts: float,
               accepted_dates: Iterable[date] | None = None) -> Rows:
    """Accepted rows of `day` as bucket ends + systimes; every other row is skipped with a reason."""
    if rows:
        missing = [c for c in TIME_COLUMNS if c not in rows[0]]
        if missing:
            raise RowsError(f"missing column(s) {', '.join(missing)}")
    dates = tuple(accepted_dates) if accepted_dates is not None else (day,)
    buckets: list[float] = []
    systimes: list[float] = []
    rejected: list[tuple[str, tuple]] = []
    for record in rows:
        reason, bucket, loaded = reject_reason(record, day, dates, now_ts)
        if reason is not None:
            rejected.append((reason, _identity(record)))
            continue
        assert bucket is not None and loaded is not None
        buckets.append(bucket)
        systimes.append(loaded)
    return Rows(tuple(buckets), tuple(systimes), tuple(rejected))


def weekend_session(calendar: Calendar, market: str, day: date) -> bool:
    """A weekend or holiday session of `market` (§7, §11): it trades on `day`, and `day` is a
    Saturday/Sunday or a weekday entry that lists only some markets (weekend-style)."""
    if not calendar.is_working_day(day, market):
        return False
    if day.weekday() >= 5:
        return True
    entry = calendar.override(day)
    return entry is not None and entry.markets is not None and len(entry.markets) < 3


def polled_dates(calendar: Calendar, market: str, day: date) -> tuple[date, ...]:
    """The tradedates whose rows belong to `day`'s session: (D,) on an ordinary day; on a
    weekend session (D, N) with N the next ordinary trading day, since ISS may file the
    session's rows under N (§11 "weekend sessions"). Query from=D till=N then."""
    if not weekend_session(calendar, market, day):
        return (day,)
    candidate = day
    for _ in range(_WEEKEND_LOOKAHEAD_DAYS):
        candidate += timedelta(days=1)
        if calendar.is_working_day(candidate, market) and not weekend_session(calendar, market, candidate):
            return (day, candidate)
    return (day,)


def filed_before(calendar: Calendar, market: str, day: date, filed: date) -> bool:
    """Rows filed under `filed` may include rows of a day before `day`: an earlier weekend
    session whose rows ISS may file under `filed` (polled_dates). Only then does a read of
    `filed` on `day` need SYSTIME to tell that day's rows from today's (`loaded_since`)."""
    for back in range(1, _WEEKEND_LOOKAHEAD_DAYS + 1):
        earlier = day - timedelta(days=back)
        if weekend_session(calendar, market, earlier) and filed in polled_dates(calendar, market, earlier):
            return True
    return False


def comparison_day(calendar: Calendar, market: str, day: date, lookback_days: int = 14) -> date | None:
    """The previous trading day of the same kind, whose secid counts `day` is compared with:
    an ordinary day with the previous ordinary day (a Monday with Friday, not with Sunday's
    weekend session), a weekend session with the previous weekend session. None when there
    is none within `lookback_days` (nothing to compare with: the alert stays quiet)."""
    kind = weekend_session(calendar, market, day)
    candidate = day
    for _ in range(lookback_days):
        candidate -= timedelta(days=1)
        if calendar.is_working_day(candidate, market) and weekend_session(calendar, market, candidate) == kind:
            return candidate
    return None


def needs_whole_day(expected: Iterable[float], known: AbstractSet[float], newest: float | None, now_ts: float,
                    horizon: float) -> bool:
    """A read of the newest bucket only (`latest=1`) is not enough: nothing is known yet
    (`newest` None), or an expected bucket up to `newest` is not `known` while its row could
    still come and count (within `horizon` = grace + the SLO's window of its end). Used
    before such a read (known = seen) and on its answer (known = seen + the answer's)."""
    if newest is None:
        return True
    have = {round(b) for b in known}
    return any(b <= newest + 0.5 and round(b) not in have and now_ts - b <= horizon for b in expected)


def loaded_since(rows: Any, since_ts: float, until_ts: float | None = None) -> list[dict[str, Any]]:
    """Rows whose SYSTIME is in [since_ts, until_ts) (rows without a readable SYSTIME are
    kept): drops a weekend session's rows filed under today's date from today's counts."""
    out = []
    for record in records(rows):
        loaded = _systime_ts(_text(record.get("systime")))
        if loaded is None or (loaded >= since_ts and (until_ts is None or loaded < until_ts)):
            out.append(record)
    return out


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


def lag_anchor(newest_systime: float | None, session_start: float | None) -> float | None:
    """THE lag formula's anchor (the one place it lives): lag = now − max(newest SYSTIME,
    session start). The collector's lag and the rhythm's "poll before the lag crosses the
    threshold" both come from here."""
    anchors = [t for t in (newest_systime, session_start) if t is not None]
    return max(anchors) if anchors else None


def lag_seconds(now: float, newest_systime: float | None, session_start: float | None,
                in_session: bool) -> float:
    """now − lag_anchor(...) while in session, 0 outside (design)."""
    anchor = lag_anchor(newest_systime, session_start) if in_session else None
    return 0.0 if anchor is None else max(0.0, now - anchor)


def lag_reaches(threshold: float, newest_systime: float | None, session_start: float | None) -> float | None:
    """The moment the lag reaches `threshold` seconds if no newer row comes (None: unknown)."""
    anchor = lag_anchor(newest_systime, session_start)
    return None if anchor is None else anchor + threshold


def secids_per_interval(rows: Any) -> dict[str, int]:
    """Distinct secids per tradetime text ("HH:MM:SS"); rows without both values are ignored."""
    values, present = column_values(rows, "tradetime", "secid")
    if not present:
        return {}
    for column in ("tradetime", "secid"):
        if column not in present:
            raise RowsError(f"missing column {column}")
    sets: dict[str, set[str]] = {}
    for raw_time, raw_secid in values:
        tradetime, secid = _text(raw_time), _text(raw_secid)
        if tradetime is None or secid is None:
            continue
        sets.setdefault(tradetime, set()).add(secid)
    # a time that does not parse is ignored: checked once per distinct value, not per row
    return {tradetime: len(secids) for tradetime, secids in sets.items() if _parse_time(tradetime) is not None}


def newest_interval_secids(rows: Any) -> tuple[str, int] | None:
    """(tradetime, distinct secids) of the newest interval present in the rows."""
    counts = secids_per_interval(rows)
    if not counts:
        return None
    newest_time = max(counts)
    return newest_time, counts[newest_time]


def max_secids_per_interval(rows: Any) -> int:
    counts = rows if isinstance(rows, dict) else secids_per_interval(rows)
    return max(counts.values()) if counts else 0


def has_rows_for_day(rows: Any, day: date | Iterable[date], not_loaded_before: float | None = None) -> bool:
    """Rows filed under `day` (or one of several dates) exist; with `not_loaded_before`, only
    rows whose SYSTIME is not earlier (another day's rows filed under this date do not count)."""
    days = {day} if isinstance(day, date) else set(day)
    wanted = {d.isoformat() for d in days}
    for record in records(rows):
        if _text(record.get("tradedate")) not in wanted:
            continue
        if not_loaded_before is not None and "systime" in record:
            loaded = _systime_ts(_text(record.get("systime")))
            if loaded is not None and loaded < not_loaded_before:
                continue
        return True
    return False


def most_liquid(rows: Any, value_column: str = "val") -> str | None:
    """Secid with the largest summed traded value (falls back to volume)."""
    _, present = column_values(rows)
    if not present or "secid" not in present:
        return None
    column = value_column if value_column in present else "vol"
    if column not in present:
        raise RowsError(f"missing column {value_column}")
    values, _ = column_values(rows, "secid", column)
    totals: dict[str, float] = {}
    add_values(totals, values)
    return best_value(totals)


def add_values(totals: dict[str, float], values: Iterable[tuple[Any, Any]]) -> None:
    """Add (secid, traded value) pairs to `totals`; a bad value counts 0 (one place for whole
    answers and for streamed pages, exporter/daily.py)."""
    for raw_secid, raw_value in values:
        secid = _text(raw_secid)
        if secid is None:
            continue
        try:
            value = float(raw_value or 0.0)
        except (TypeError, ValueError):
            value = 0.0
        if math.isnan(value):
            value = 0.0
        totals[secid] = totals.get(secid, 0.0) + value


def best_value(totals: Mapping[str, float]) -> str | None:
    """The secid with the largest total (ties: first by name), None when nothing traded."""
    if not totals:
        return None
    best = max(sorted(totals), key=lambda s: totals[s])
    return best if totals[best] > 0 else None
