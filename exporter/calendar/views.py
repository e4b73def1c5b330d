"""Read-only views of a calendar for people (the bot's /calendar, /status, digests):
plain values, so callers never reach into `DayOverride` rules or session objects.

    day_view(cal, day) -> DayView            # one day: status, source, reason, hours per market
    month_days(cal, year, month) -> [DayView]  # the days of a month that have an entry
    market_now(cal, market, moment) -> MarketNow   # current session / next start
    trading_markets(cal, day, markets) -> [market]  # which of `markets` trade on `day`
    day_info(cal, day) -> dict               # DayView as JSON-ready data
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from .model import MARKETS, Calendar, DayOverride, Session, hhmm

Hours = tuple[tuple[str, str], ...]  # (("10:00", "19:00"), ...), empty = not trading


@dataclass(frozen=True)
class DayView:
    day: date
    weekday: int                 # 0 = Monday
    status: str                  # working | holiday
    source: str                  # default | manual | iss
    reason: str | None
    special: bool                # working, but only some markets or their own hours
    sessions: Mapping[str, Hours]  # every market, in MARKETS order
    override: DayOverride | None   # the file's entry, for fields a view does not name

    @property
    def working(self) -> bool:
        return self.status == "working"


@dataclass(frozen=True)
class MarketNow:
    market: str
    session: Session | None       # the session running at the moment, if any
    next_start: datetime | None   # else the next session start (within 30 days)


def day_view(cal: Calendar, day: date) -> DayView:
    entry = cal.override(day)
    return DayView(
        day=day, weekday=day.weekday(), status=cal.day_status(day), source=cal.day_source(day),
        reason=entry.reason if entry is not None else None,
        special=entry is not None and entry.status == "working" and entry.markets is not None,
        sessions={m: tuple((hhmm(s.start), hhmm(s.end)) for s in cal.sessions(m, day)) for m in MARKETS},
        override=entry)


def month_days(cal: Calendar, year: int, month: int) -> list[DayView]:
    return [day_view(cal, day) for day in sorted(cal.days) if (day.year, day.month) == (year, month)]


def market_now(cal: Calendar, market: str, moment: datetime) -> MarketNow:
    session = cal.current_session(market, moment)
    return MarketNow(market, session, None if session is not None else cal.next_session_start(market, moment))


def trading_markets(cal: Calendar, day: date, markets: Iterable[str]) -> list[str]:
    return [m for m in markets if cal.is_working_day(day, m)]


def day_info(cal: Calendar, day: date) -> dict:
    """{"date": "2026-11-28", "weekday": 5, "status": "working"|"holiday",
     "source": "default"|"manual"|"iss", "reason": str|None,
     "markets": {"eq": [["10:00", "19:00"]], "fx": [], "fo": [...]}}   # [] = not trading"""
    view = day_view(cal, day)
    return {"date": day.isoformat(), "weekday": view.weekday, "status": view.status, "source": view.source,
            "reason": view.reason, "markets": {m: [list(pair) for pair in view.sessions[m]] for m in MARKETS}}


__all__ = ["DayView", "Hours", "MarketNow", "day_info", "day_view", "market_now", "month_days", "trading_markets"]
