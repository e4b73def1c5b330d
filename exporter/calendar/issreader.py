"""The exchange's own calendar, read from ISS (iss-api.md §8, §11) through any client with
`get_block(path, params, block, required_columns=(), all_pages=True)` answering with a
`.table` (an `exporter.table.Table`): the exporter's `IssClient`, or a fake.

    fetch_off_days(client, date_from, date_till) -> {day: IssDay}
    fetch_session_hours(client, date_from, date_till) -> {market: {day: [["HH:MM", "HH:MM"], ...]}}

- `/iss/calendars.json?from&till&show_all_days=1`, block `off_days`: per day and market
  `{stock,futures,currency}_workday` (1/0/null), `*_trade_session_date`, `*_reason`;
- when that block lacks the flags, the per-market `/iss/calendars/{stock,futures,currency}.json`
  (`is_traded` or `workday`, `reason`);
- `/iss/calendars/{stock,futures,currency}/session.json`, block `session_schedule`, for the
  hours of weekend/holiday sessions (see `schedule_hours`). Best effort: a market whose
  schedule is unavailable is left out.
Column names are compared case-insensitively; null means "unknown", never "closed".
A failed, HTML or malformed answer raises `SyncError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from exporter.iss import IssError
from exporter.yamlsafe import short

from .model import MARKETS

log = logging.getLogger("exporter.calendar_sync")

# ISS engine name -> our market
ISS_MARKETS = {"stock": "eq", "futures": "fo", "currency": "fx"}
# Board of each ISS engine whose schedule is ours (iss-api.md §2, §11 "session schedule").
SCHEDULE_BOARDS = {"stock": "TQBR", "currency": "CETS", "futures": "RFUD"}
SCHEDULE_BLOCK = "session_schedule"
# Rows of these types are not trading sessions (auctions, clearing pauses).
_NOT_SESSION = ("auction", "clearing", "discrete", "break", "pause")


class SyncError(Exception):
    """ISS gave no usable calendar (or the file cannot take it); nothing was written."""


@dataclass(frozen=True)
class IssDay:
    """What ISS says about one day: per market True/False/None (unknown)."""

    day: date
    trades: Mapping[str, bool | None]
    reasons: Mapping[str, str | None]


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


def _block(client, path: str, params: dict, block: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(lower-case columns, one dict per row) of one block, all pages; IssError passes."""
    table = client.get_block(path, params, block, required_columns=(), all_pages=True).table
    columns = [str(c).lower() for c in table.columns]
    return columns, [dict(zip(columns, row, strict=True)) for row in table.rows]


def _get(client, path: str, params: dict, block: str, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        return _block(client, path, params, block)
    except IssError as exc:
        raise SyncError(f"{where}: {exc}") from None


def fetch_off_days(client, date_from: date, date_till: date) -> dict[date, IssDay]:
    """Per-day, per-market trading flags for [date_from, date_till]."""
    params = {"from": date_from.isoformat(), "till": date_till.isoformat(), "show_all_days": 1}
    where = "/iss/calendars.json"
    columns, rows = _get(client, "/iss/calendars.json", params, "off_days", where)
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
            market_columns, market_rows = _get(client, route, params, "off_days", route)
            flag = _first_column(market_columns, "is_traded", "workday", f"{iss}_workday")
            if "tradedate" not in market_columns or flag is None:
                raise SyncError(f"{route}: block off_days has no tradedate/is_traded columns "
                                f"(got {', '.join(market_columns) or 'none'})")
            per_market[market] = {
                _parse_date(row.get("tradedate"), route): (_flag(row.get(flag)), _text(row.get("reason")))
                for row in market_rows
            }
        for day in sorted(set().union(*(m.keys() for m in per_market.values()))):
            trades = {m: per_market[m].get(day, (None, None))[0] for m in MARKETS}
            reasons = {m: per_market[m].get(day, (None, None))[1] for m in MARKETS}
            days[day] = IssDay(day, trades, reasons)
    days = {d: v for d, v in days.items() if date_from <= d <= date_till}
    if not days:
        raise SyncError(f"ISS calendar has no days for {date_from}..{date_till}; nothing changed")
    return days


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


def _merge(spans: list[tuple[time, time]]) -> list[list[str]]:
    merged: list[list[time]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [[s.strftime("%H:%M"), e.strftime("%H:%M")] for s, e in merged]


def fetch_session_hours(client, date_from: date, date_till: date) -> dict[str, dict[date, list[list[str]]]]:
    """Best effort: per market, per calendar date, the merged main-session hours of our
    board. A market whose schedule is unavailable is left out (its special days then take
    the file's weekend template, else the default sessions)."""
    params = {"from": date_from.isoformat(), "till": date_till.isoformat()}
    hours: dict[str, dict[date, list[list[str]]]] = {}
    for iss, market in ISS_MARKETS.items():
        route = f"/iss/calendars/{iss}/session.json"
        try:
            _columns, rows = _block(client, route, params, SCHEDULE_BLOCK)
        except IssError as exc:
            log.warning("event=calendar_sync_sessions_unavailable route=%s block=%s error=%r", route,
                        SCHEDULE_BLOCK, str(exc)[:300])
            continue
        hours[market] = schedule_hours(rows, SCHEDULE_BOARDS[iss])
    return hours


__all__ = ["ISS_MARKETS", "SCHEDULE_BLOCK", "SCHEDULE_BOARDS", "IssDay", "SyncError", "fetch_off_days",
           "fetch_session_hours", "schedule_hours"]
