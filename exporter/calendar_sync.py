"""`python -m exporter calendar-sync`: merge the exchange's own calendar into calendar.yml.

    python -m exporter calendar-sync --config.file=PATH [--from DATE --till DATE] [--dry-run]

Reads the ISS calendar routes (iss-api.md §8) through the exporter's ISS client:
- `/iss/calendars.json?from&till&show_all_days=1`, block `off_days`: per day and market
  `{stock,futures,currency}_workday` (1/0/null), `*_trade_session_date`, `*_reason`;
- when that block lacks the flags, the per-market `/iss/calendars/{stock,futures,currency}.json`
  (`is_traded` or `workday`, `reason`);
- `/iss/calendars/{stock,futures,currency}/session.json`, block `session_schedule`
  (iss-api.md §11), for the hours of weekend/holiday sessions: the main-session rows of
  our boards (TQBR, CETS, RFUD; other boards' rows are dropped), auctions and clearing are
  not sessions; stock/currency times are "HH:MM:SS" on `tradedate`, futures times are
  full datetimes whose date (of `time_from`) is the session's calendar date, not
  `trade_session_date` (a Saturday session carries the next working day there). Best
  effort: when the schedule is unavailable, the hours of the file's newest weekend entry
  for that market are used, else the market's default sessions. `--dry-run` prints the
  hours of every special trading day and where they came from.
Column names are compared case-insensitively; null means "unknown" (the day keeps what
the file says), never "closed".

Merging (through `edit_calendar`, so locked, validated and atomic):
- a day whose ISS status equals the file's default for it needs no entry; an old
  `source: iss` entry for it is removed (e.g. a weekend session that was moved away);
- otherwise the day gets an entry with `source: iss` (added, or updated when it differs);
- manual entries (no `source`, or `source: manual`) always win and are never touched.
A failed, HTML or malformed answer raises `SyncError` before anything is written.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from exporter.calendar import MARKETS, Calendar, CalendarError, DayOverride, parse_calendar_text
from exporter.calendar_edit import (
    CalendarReadOnly,
    CalendarUnreadable,
    apply_edit,
    days_map,
    dump_document,
    make_entry,
    markets_node,
    put_day,
    remove_day,
)
from exporter.yamlsafe import short

log = logging.getLogger("exporter.calendar_sync")

# ISS engine name -> our market
ISS_MARKETS = {"stock": "eq", "futures": "fo", "currency": "fx"}
SPECIAL_REASONS = {"W", "H"}  # weekend / holiday: a weekend-style session when trading
MAX_RANGE_DAYS = 366


class SyncError(Exception):
    """ISS gave no usable calendar; nothing was written."""


@dataclass
class SyncResult:
    added: int = 0
    updated: int = 0
    kept_manual: int = 0
    diff_text: str = ""
    changes: list[str] = field(default_factory=list)  # one line per added/updated day
    hours: list[str] = field(default_factory=list)  # one line per special trading day: its hours


@dataclass(frozen=True)
class IssDay:
    """What ISS says about one day: per market True/False/None (unknown)."""

    day: date
    trades: Mapping[str, bool | None]
    reasons: Mapping[str, str | None]


# ----- reading ISS ------------------------------------------------------------------


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except TypeError:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "y"):
            return True
        if text in ("0", "false", "no", "n"):
            return False
        return None
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _parse_date(value: Any, where: str) -> date:
    text = _text(value)
    if text is None:
        raise SyncError(f"{where}: a row has no tradedate")
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise SyncError(f"{where}: {short(text)} is not a date") from None


def _first_column(columns: list[str], *candidates: str) -> str | None:
    for name in candidates:
        if name in columns:
            return name
    return None


def _get_frame(client, path: str, params: dict, block: str, where: str):
    from exporter.iss import IssError

    try:
        return client.get_block(path, params, block, required_columns=(), all_pages=True).table
    except IssError as exc:
        raise SyncError(f"{where}: {exc}") from None


def _records(frame) -> list[dict[str, Any]]:
    columns = [str(c).lower() for c in frame.columns]
    return [dict(zip(columns, row, strict=True)) for row in frame.rows]  # an exporter.table.Table


def fetch_off_days(client, date_from: date, date_till: date) -> dict[date, IssDay]:
    """Per-day, per-market trading flags for [date_from, date_till]."""
    params = {"from": date_from.isoformat(), "till": date_till.isoformat(), "show_all_days": 1}
    where = "/iss/calendars.json"
    frame = _get_frame(client, "/iss/calendars.json", params, "off_days", where)
    rows = _records(frame)
    columns = [str(c).lower() for c in frame.columns]
    flag_columns = {m: _first_column(columns, f"{iss}_workday", f"{iss}_is_traded", f"is_traded_{iss}")
                    for iss, m in ISS_MARKETS.items()}
    days: dict[date, IssDay] = {}
    if rows and "tradedate" in columns and any(flag_columns.values()):
        for row in rows:
            day = _parse_date(row.get("tradedate"), where)
            trades = {m: _flag(row.get(col)) if col else None for m, col in flag_columns.items()}
            reasons = {m: _text(row.get(f"{iss}_reason")) for iss, m in ISS_MARKETS.items()}
            days[day] = IssDay(day, trades, reasons)
    else:
        # Fall back to the per-market routes (another column layout: is_traded).
        per_market: dict[str, dict[date, tuple[bool | None, str | None]]] = {}
        for iss, market in ISS_MARKETS.items():
            route = f"/iss/calendars/{iss}.json"
            market_frame = _get_frame(client, route, params, "off_days", route)
            market_columns = [str(c).lower() for c in market_frame.columns]
            flag = _first_column(market_columns, "is_traded", "workday", f"{iss}_workday")
            if "tradedate" not in market_columns or flag is None:
                raise SyncError(f"{route}: block off_days has no tradedate/is_traded columns "
                                f"(got {', '.join(market_columns) or 'none'})")
            per_market[market] = {
                _parse_date(row.get("tradedate"), route): (_flag(row.get(flag)), _text(row.get("reason")))
                for row in _records(market_frame)
            }
        for day in sorted(set().union(*(m.keys() for m in per_market.values()))):
            trades = {m: per_market[m].get(day, (None, None))[0] for m in MARKETS}
            reasons = {m: per_market[m].get(day, (None, None))[1] for m in MARKETS}
            days[day] = IssDay(day, trades, reasons)
    days = {d: v for d, v in days.items() if date_from <= d <= date_till}
    if not days:
        raise SyncError(f"ISS calendar has no days for {date_from}..{date_till}; nothing changed")
    return days


# Board of each ISS engine whose schedule is ours (iss-api.md §2, §11 "session schedule").
SCHEDULE_BOARDS = {"stock": "TQBR", "currency": "CETS", "futures": "RFUD"}
SCHEDULE_BLOCK = "session_schedule"
# Rows of these types are not trading sessions (auctions, clearing pauses).
_NOT_SESSION = ("auction", "clearing", "discrete", "break", "pause")


def _moment(value: Any) -> tuple[date | None, time] | None:
    """"HH:MM[:SS]" -> (None, time); "YYYY-MM-DD HH:MM:SS" / ISO -> (date, time)."""
    text = _text(value)
    if text is None:
        return None
    try:
        if len(text) > 8:
            moment = datetime.fromisoformat(text.replace("T", " "))
            return moment.date(), moment.time().replace(microsecond=0)
        return None, time.fromisoformat(text)
    except ValueError:
        return None


def _minute_floor(value: time) -> time:
    return value.replace(second=0, microsecond=0)


def _minute_ceil(value: time) -> time:
    """An end 18:39:59 means 18:40 (never past 23:59: the calendar ends a day there)."""
    if value.second == 0 and value.microsecond == 0:
        return value
    if (value.hour, value.minute) == (23, 59):
        return time(23, 59)
    return (datetime.combine(date(2000, 1, 1), _minute_floor(value)) + timedelta(minutes=1)).time()


def schedule_hours(records: list[dict[str, Any]], board: str) -> dict[date, list[list[str]]]:
    """Main-session hours per CALENDAR date from `session_schedule` rows (iss-api.md §11).

    - only rows of `board` (when the answer has a boardid column);
    - auctions and clearing are not sessions (`type`);
    - stock/currency times are "HH:MM:SS" on `tradedate`; futures times are full datetimes,
      and the session's calendar date is the date of `time_from`, never
      `trade_session_date` (a Saturday session carries the next working day there);
    - a session running past midnight ends at 23:59 of its own day; spans that touch or
      overlap (morning + main + evening of one day) are merged.
    """
    intervals: dict[date, list[tuple[time, time]]] = {}
    for row in records:
        row_board = _text(row.get("boardid"))
        if "boardid" in row and (row_board or "").upper() != board.upper():
            continue
        kind = (_text(row.get("type")) or "").lower()
        if any(word in kind for word in _NOT_SESSION):
            continue
        start = _moment(row.get("time_from"))
        end = _moment(row.get("time_till"))
        if start is None or end is None:
            continue
        day = start[0]
        if day is None:
            raw = _text(row.get("tradedate")) or _text(row.get("date")) or _text(row.get("trade_session_date"))
            try:
                day = date.fromisoformat((raw or "")[:10])
            except ValueError:
                continue
        end_day = end[0] or day
        if end_day < day:
            continue
        start_time = _minute_floor(start[1])
        end_time = time(23, 59) if end_day > day else _minute_ceil(end[1])
        if start_time < end_time:
            intervals.setdefault(day, []).append((start_time, end_time))
    return {day: _merge(spans) for day, spans in intervals.items()}


def fetch_session_hours(client, date_from: date, date_till: date) -> dict[str, dict[date, list[list[str]]]]:
    """Best effort: per market, per calendar date, the merged main-session hours of our
    board, from `/iss/calendars/{stock,futures,currency}/session.json` block
    `session_schedule`. A market whose schedule is unavailable is left out (its special
    days then take the file's weekend template, else the default sessions)."""
    from exporter.iss import IssError

    params = {"from": date_from.isoformat(), "till": date_till.isoformat()}
    hours: dict[str, dict[date, list[list[str]]]] = {}
    for iss, market in ISS_MARKETS.items():
        route = f"/iss/calendars/{iss}/session.json"
        try:
            frame = client.get_block(route, params, SCHEDULE_BLOCK, all_pages=True).table
        except IssError as exc:
            log.warning("event=calendar_sync_sessions_unavailable route=%s block=%s error=%r", route,
                        SCHEDULE_BLOCK, str(exc)[:300])
            continue
        hours[market] = schedule_hours(_records(frame), SCHEDULE_BOARDS[iss])
    return hours


def _merge(spans: list[tuple[time, time]]) -> list[list[str]]:
    merged: list[list[time]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [[s.strftime("%H:%M"), e.strftime("%H:%M")] for s, e in merged]


# ----- merging ----------------------------------------------------------------------


def _default_trading(calendar: Calendar, day: date) -> set[str]:
    weekend = day.weekday() >= 5
    return set() if weekend and calendar.weekend_default != "working" else set(MARKETS)


def _times(sessions: list[list[str]]) -> tuple[tuple[time, time], ...]:
    return tuple((time.fromisoformat(s), time.fromisoformat(e)) for s, e in sessions)


def _weekend_template(calendar: Calendar, market: str) -> list[list[str]] | None:
    """Hours of the newest weekend-style entry of `market` in the file, if any."""
    for day in sorted(calendar.days, reverse=True):
        entry = calendar.days[day]
        if entry.markets and entry.markets.get(market) is not None and entry.status == "working":
            return [[s.strftime("%H:%M"), e.strftime("%H:%M")] for s, e in entry.markets[market]]
    return None


@dataclass(frozen=True)
class _Desired:
    status: str
    markets: dict[str, list[list[str]] | None] | None
    reason: str

    def as_override(self) -> DayOverride:
        markets = None
        if self.markets is not None:
            markets = {m: (None if s is None else _times(s)) for m, s in self.markets.items()}
        return DayOverride(status=self.status, markets=markets, source="iss", reason=self.reason)


def desired_entry(calendar: Calendar, iss_day: IssDay, hours: Mapping[str, Mapping[date, list]]) -> _Desired | None:
    """The entry ISS implies for a day; None = the default needs no entry; raises
    LookupError when ISS knows nothing about the day."""
    day = iss_day.day
    if all(flag is None for flag in iss_day.trades.values()):
        raise LookupError(day)
    default = _default_trading(calendar, day)
    trading = {m for m in MARKETS if (iss_day.trades[m] if iss_day.trades[m] is not None else m in default)}
    special = day.weekday() >= 5 or any((iss_day.reasons.get(m) or "").upper() in SPECIAL_REASONS
                                        for m in MARKETS if iss_day.trades[m])
    codes = sorted({(iss_day.reasons.get(m) or "").upper() for m in MARKETS} - {""})
    reason = "ISS calendar" + (f" ({'/'.join(codes)})" if codes else "")
    if not trading:
        return None if not default else _Desired("holiday", None, reason)
    if not special:
        if trading == set(MARKETS) and default == set(MARKETS):
            return None
        return _Desired("working", {m: None for m in MARKETS if m in trading}, reason)
    markets: dict[str, list[list[str]] | None] = {}
    for market in MARKETS:
        if market not in trading:
            continue
        own = hours.get(market, {}).get(day) or _weekend_template(calendar, market)
        markets[market] = own
    return _Desired("working", markets, reason)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def hours_line(day: date, desired: _Desired, hours: Mapping[str, Mapping[date, list]]) -> str | None:
    """"2026-02-07 Sat: eq 10:00-19:00 (ISS); fo 10:00-19:00 (ISS)" for a special trading day."""
    if desired.status != "working" or desired.markets is None:
        return None
    parts = []
    for market in MARKETS:
        if market not in desired.markets:
            continue
        sessions = desired.markets[market]
        if sessions is None:
            parts.append(f"{market} default sessions (ISS gave no hours)")
            continue
        spans = ",".join(f"{s}-{e}" for s, e in sessions)
        origin = "ISS" if hours.get(market, {}).get(day) else "file's weekend template"
        parts.append(f"{market} {spans} ({origin})")
    closed = [m for m in MARKETS if m not in desired.markets]
    if closed:
        parts.append(f"{'/'.join(closed)} closed")
    return f"{day} {_WEEKDAYS[day.weekday()]}: " + "; ".join(parts)


def _same(existing: DayOverride, desired: _Desired) -> bool:
    wanted = desired.as_override()
    return (existing.status, existing.markets, existing.source) == (wanted.status, wanted.markets, wanted.source)


def _describe(value: DayOverride | _Desired | None) -> str:
    if value is None:
        return "default"
    markets = value.markets
    if value.status != "working" or markets is None:
        return value.status
    parts = []
    for market in MARKETS:
        if market in markets:
            sessions = markets[market]
            if sessions is None:
                parts.append(f"{market} default")
            else:
                parts.append(market + " " + ",".join(
                    f"{s if isinstance(s, str) else s.strftime('%H:%M')}-{e if isinstance(e, str) else e.strftime('%H:%M')}"
                    for s, e in sessions))
    return "working: " + "; ".join(parts)


def sync_calendar(client, path: str, date_from: date, date_till: date, dry_run: bool = False) -> SyncResult:
    """Fetch the ISS calendar for [date_from, date_till] and merge it into `path`."""
    if date_till < date_from:
        raise SyncError(f"--till {date_till} is before --from {date_from}")
    iss_days: dict[date, IssDay] = {}
    hours: dict[str, dict[date, list]] = {m: {} for m in MARKETS}
    chunk_start = date_from
    while chunk_start <= date_till:  # ISS serves at most a year per request
        chunk_end = min(date_till, chunk_start + timedelta(days=MAX_RANGE_DAYS - 1))
        iss_days.update(fetch_off_days(client, chunk_start, chunk_end))
        for market, per_day in fetch_session_hours(client, chunk_start, chunk_end).items():
            hours[market].update(per_day)
        chunk_start = chunk_end + timedelta(days=1)

    def mutate(doc) -> SyncResult:
        result = SyncResult()
        calendar = parse_calendar_text(dump_document(doc), origin=path)
        created = "days" not in doc
        days = days_map(doc)
        for day in sorted(iss_days):
            try:
                desired = desired_entry(calendar, iss_days[day], hours)
            except LookupError:
                continue  # ISS does not know: keep whatever the file says
            line = hours_line(day, desired, hours) if desired is not None else None
            if line is not None:
                result.hours.append(line)
            existing = calendar.override(day)
            if existing is not None and existing.source != "iss":
                if desired is None or not _same(DayOverride(existing.status, existing.markets, "iss"), desired):
                    result.kept_manual += 1
                    result.changes.append(f"= {day} manual {_describe(existing)} kept (ISS: {_describe(desired)})")
                continue
            if existing is None and desired is None:
                continue
            if existing is not None and desired is not None and _same(existing, desired):
                continue
            if desired is None:
                remove_day(days, day)
            else:
                markets = markets_node(desired.markets) if desired.markets is not None else None
                put_day(days, day, make_entry(desired.status, markets=markets, source="iss", reason=desired.reason))
            if existing is None:
                result.added += 1
                result.changes.append(f"+ {day} {_describe(desired)}")
            else:
                result.updated += 1
                result.changes.append(f"~ {day} {_describe(existing)} -> {_describe(desired)}")
        if created and not days:
            del doc["days"]  # never leave an empty `days:` behind that we created
        return result

    try:
        outcome = apply_edit(path, mutate, write=not dry_run)
    except (CalendarReadOnly, CalendarUnreadable) as exc:
        raise SyncError(f"nothing written: {exc}") from exc
    except CalendarError as exc:
        raise SyncError(f"the merged calendar would be invalid, nothing written: {exc}") from None
    result = outcome.result
    result.diff_text = "".join(difflib.unified_diff(
        outcome.old_text.splitlines(keepends=True), outcome.new_text.splitlines(keepends=True),
        fromfile=f"{path} (current)", tofile=f"{path} ({'dry run' if dry_run else 'written'})"))
    return result


# ----- command line -----------------------------------------------------------------


def main_calendar_sync(argv: list[str]) -> int:
    """`python -m exporter calendar-sync ...`; returns the exit code."""
    from exporter.cli import load_or_exit, setup_logging
    from exporter.clock import clock_from_env
    from exporter.iss import IssClient

    parser = argparse.ArgumentParser(prog="python -m exporter calendar-sync",
                                     description="Merge the MOEX ISS trading calendar into calendar.yml.")
    parser.add_argument("--config.file", dest="config_file", default=None)
    parser.add_argument("--from", dest="date_from", type=date.fromisoformat, default=None,
                        help="first day (YYYY-MM-DD); default: 1 January of the current year")
    parser.add_argument("--till", dest="date_till", type=date.fromisoformat, default=None,
                        help="last day (YYYY-MM-DD); default: 31 December of the --from year")
    parser.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    parser.add_argument("--log.level", dest="log_level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--clock", default=None, help="clock spec (tests); default env ALGOPACK_CLOCK")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    config = load_or_exit(args.config_file)
    today = clock_from_env(args.clock).today()
    date_from = args.date_from or date(today.year, 1, 1)
    date_till = args.date_till or date(date_from.year, 12, 31)
    path = str(config.calendar.file)
    try:
        with IssClient(config.iss) as client:
            result = sync_calendar(client, path, date_from, date_till, dry_run=args.dry_run)
    except SyncError as exc:
        print(f"calendar-sync failed: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        sys.stdout.write(result.diff_text or "no changes\n")
        print("session hours of the special trading days (main sessions of TQBR/CETS/RFUD, "
              "auctions excluded):")
        for line in result.hours or ["(none in this range)"]:
            print(f"  {line}")
    for line in result.changes:
        print(line)
    verb = "would add" if args.dry_run else "added"
    print(f"calendar-sync {date_from}..{date_till}: {verb} {result.added}, "
          f"{'would update' if args.dry_run else 'updated'} {result.updated}, kept manual {result.kept_manual}"
          f" ({path})")
    return 0


__all__ = ["SyncError", "SyncResult", "fetch_off_days", "fetch_session_hours", "main_calendar_sync",
           "sync_calendar"]
