"""`python -m exporter calendar-sync`: merge the exchange's own calendar into calendar.yml.

    python -m exporter calendar-sync --config.file=PATH [--from DATE --till DATE] [--dry-run]

Reads the ISS calendar routes (iss-api.md §8) through the exporter's ISS client:
- `/iss/calendars.json?from&till&show_all_days=1`, block `off_days`: per day and market
  `{stock,futures,currency}_workday` (1/0/null), `*_trade_session_date`, `*_reason`;
- when that block lacks the flags, the per-market `/iss/calendars/{stock,futures,currency}.json`
  (`is_traded` or `workday`, `reason`);
- `/iss/calendars/{stock,futures,currency}/session.json` for the hours of weekend/holiday
  sessions (best effort: when it is unavailable, the hours of the file's newest weekend
  entry for that market are used, else the market's default sessions).
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
    apply_edit,
    days_map,
    dump_document,
    make_entry,
    markets_node,
    put_day,
    remove_day,
)

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
        if value != value:  # NaN from pandas
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
        raise SyncError(f"{where}: {text!r} is not a date") from None


def _first_column(columns: list[str], *candidates: str) -> str | None:
    for name in candidates:
        if name in columns:
            return name
    return None


def _get_frame(client, path: str, params: dict, block: str, where: str):
    from exporter.iss import IssError

    try:
        return client.get_block(path, params, block, required_columns=(), all_pages=True).frame
    except IssError as exc:
        raise SyncError(f"{where}: {exc}") from None


def _records(frame) -> list[dict[str, Any]]:
    columns = [str(c).lower() for c in frame.columns]
    return [dict(zip(columns, row, strict=True)) for row in frame.itertuples(index=False, name=None)]


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


def _clock_time(value: Any) -> tuple[date | None, time] | None:
    text = _text(value)
    if text is None:
        return None
    try:
        if len(text) > 8:
            moment = datetime.fromisoformat(text.replace("T", " "))
            return moment.date(), moment.time().replace(second=0, microsecond=0)
        parsed = time.fromisoformat(text)
        return None, parsed.replace(second=0, microsecond=0)
    except ValueError:
        return None


def fetch_session_hours(client, date_from: date, date_till: date) -> dict[str, dict[date, list[list[str]]]]:
    """Best effort: per market, per calendar date, merged [["HH:MM", "HH:MM"], ...]."""
    from exporter.iss import IssError

    params = {"from": date_from.isoformat(), "till": date_till.isoformat()}
    hours: dict[str, dict[date, list[list[str]]]] = {}
    for iss, market in ISS_MARKETS.items():
        route = f"/iss/calendars/{iss}/session.json"
        frame = None
        for block in ("sessions", "session", "data"):
            try:
                frame = client.get_block(route, params, block, all_pages=True).frame
                break
            except IssError as exc:
                if exc.reason != "parse":
                    log.info("event=calendar_sync_sessions_unavailable route=%s error=%r", route, str(exc))
                    break
        if frame is None:
            continue
        intervals: dict[date, list[tuple[time, time]]] = {}
        for row in _records(frame):
            start = _clock_time(row.get("time_from"))
            end = _clock_time(row.get("time_till"))
            if start is None or end is None:
                continue
            day = start[0]
            if day is None:
                raw = row.get("tradedate") or row.get("date") or row.get("trade_session_date")
                try:
                    day = date.fromisoformat(str(raw)[:10])
                except ValueError:
                    continue
            if end[0] is not None and end[0] != day:
                continue  # crosses midnight: not a window our calendar can express
            if start[1] < end[1]:
                intervals.setdefault(day, []).append((start[1], end[1]))
        hours[market] = {day: _merge(spans) for day, spans in intervals.items()}
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
    except CalendarReadOnly as exc:
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
    for line in result.changes:
        print(line)
    verb = "would add" if args.dry_run else "added"
    print(f"calendar-sync {date_from}..{date_till}: {verb} {result.added}, "
          f"{'would update' if args.dry_run else 'updated'} {result.updated}, kept manual {result.kept_manual}"
          f" ({path})")
    return 0


__all__ = ["SyncError", "SyncResult", "fetch_off_days", "fetch_session_hours", "main_calendar_sync",
           "sync_calendar"]
