"""The exchange merge: what ISS's calendar means for calendar.yml, decided on the model.

    merge_days(calendar, iss_days, hours) -> Merge(changes, lines, hours_lines, added, updated, kept_manual)

- a day whose ISS status equals the file's default for it needs no entry; an old
  `source: iss` entry for it is removed (e.g. a weekend session that was moved away);
- otherwise the day gets an entry with `source: iss` (added, or updated when it differs);
- manual entries (no `source`, or `source: manual`) always win and are never touched;
- a day ISS knows nothing about (every flag null) keeps whatever the file says.
Hours of a special (weekend/holiday) trading day: ISS's session schedule, else the hours of
the file's newest weekend entry for that market, else the market's default sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time

from .issreader import IssDay
from .model import MARKETS, Calendar, DayOverride, SessionTimes, hhmm

SPECIAL_REASONS = {"W", "H"}  # weekend / holiday: a weekend-style session when trading
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Hours = Mapping[str, Mapping[date, list]]  # market -> day -> [["HH:MM", "HH:MM"], ...]


@dataclass
class Merge:
    changes: dict[date, DayOverride | None] = field(default_factory=dict)  # None = remove the entry
    added: int = 0
    updated: int = 0
    kept_manual: int = 0
    lines: list[str] = field(default_factory=list)        # one per added/updated/kept day
    hours_lines: list[str] = field(default_factory=list)  # one per special trading day


def _default_trading(calendar: Calendar, day: date) -> set[str]:
    return set(MARKETS) if calendar.default_status(day) == "working" else set()


def _times(sessions: list[list[str]]) -> SessionTimes:
    return tuple((time.fromisoformat(s), time.fromisoformat(e)) for s, e in sessions)


def _weekend_template(calendar: Calendar, market: str) -> SessionTimes | None:
    """Hours of the newest weekend-style entry of `market` in the file, if any."""
    for day in sorted(calendar.days, reverse=True):
        entry = calendar.days[day]
        if entry.markets and entry.markets.get(market) is not None and entry.status == "working":
            return entry.markets[market]
    return None


def desired_entry(calendar: Calendar, iss_day: IssDay, hours: Hours) -> DayOverride | None:
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
        return None if not default else DayOverride("holiday", None, "iss", reason)
    if not special:
        if trading == set(MARKETS) and default == set(MARKETS):
            return None
        return DayOverride("working", {m: None for m in MARKETS if m in trading}, "iss", reason)
    markets: dict[str, SessionTimes | None] = {}
    for market in MARKETS:
        if market in trading:
            own = hours.get(market, {}).get(day)
            markets[market] = _times(own) if own else _weekend_template(calendar, market)
    return DayOverride("working", markets, "iss", reason)


def hours_line(day: date, desired: DayOverride, hours: Hours) -> str | None:
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
        spans = ",".join(f"{hhmm(s)}-{hhmm(e)}" for s, e in sessions)
        origin = "ISS" if hours.get(market, {}).get(day) else "file's weekend template"
        parts.append(f"{market} {spans} ({origin})")
    closed = [m for m in MARKETS if m not in desired.markets]
    if closed:
        parts.append(f"{'/'.join(closed)} closed")
    return f"{day} {_WEEKDAYS[day.weekday()]}: " + "; ".join(parts)


def _same(existing: DayOverride, desired: DayOverride) -> bool:
    return (existing.status, existing.markets, existing.source) == (desired.status, desired.markets, desired.source)


def describe(value: DayOverride | None) -> str:
    if value is None:
        return "default"
    if value.status != "working" or value.markets is None:
        return value.status
    parts = []
    for market in MARKETS:
        if market in value.markets:
            sessions = value.markets[market]
            if sessions is None:
                parts.append(f"{market} default")
            else:
                parts.append(market + " " + ",".join(f"{hhmm(s)}-{hhmm(e)}" for s, e in sessions))
    return "working: " + "; ".join(parts)


def merge_days(calendar: Calendar, iss_days: Mapping[date, IssDay], hours: Hours) -> Merge:
    merge = Merge()
    for day in sorted(iss_days):
        try:
            desired = desired_entry(calendar, iss_days[day], hours)
        except LookupError:
            continue  # ISS does not know: keep whatever the file says
        line = hours_line(day, desired, hours) if desired is not None else None
        if line is not None:
            merge.hours_lines.append(line)
        existing = calendar.override(day)
        if existing is not None and existing.source != "iss":
            if desired is None or not _same(DayOverride(existing.status, existing.markets, "iss"), desired):
                merge.kept_manual += 1
                merge.lines.append(f"= {day} manual {describe(existing)} kept (ISS: {describe(desired)})")
            continue
        if existing is None and desired is None:
            continue
        if existing is not None and desired is not None and _same(existing, desired):
            continue
        merge.changes[day] = desired
        if existing is None:
            merge.added += 1
            merge.lines.append(f"+ {day} {describe(desired)}")
        else:
            merge.updated += 1
            merge.lines.append(f"~ {day} {describe(existing)} -> {describe(desired)}")
    return merge


__all__ = ["Merge", "desired_entry", "describe", "hours_line", "merge_days"]
