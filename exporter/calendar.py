"""Trading calendar: which market trades when, per `calendar.yml`.

INTERFACE CONTRACT (implementation pending; other modules code against these names).

File format (see README "Calendar"):

    timezone: Europe/Moscow
    weekend_default: holiday            # or working
    markets:
      eq: {sessions: [["10:00", "18:40"], ["19:05", "23:50"]]}
      fx: {sessions: [["07:00", "19:00"]]}
      fo: {sessions: [["09:00", "23:50"]]}
    checks:
      hi2_deadline: {eq: "19:01", fx: "19:31", fo: "19:31"}
    days:
      2026-12-31: holiday                 # plain string: a manual override, all markets
      2026-11-30: working
      2026-11-28:                         # mapping form
        status: working                   # working | holiday
        markets:                          # only these markets trade that day
          eq: {sessions: [["10:00", "19:00"]]}
          fo: {}                          # {} / null = the market's default sessions
        source: iss                       # optional: who wrote it (iss = calendar-sync; absent = manual)
        reason: "weekend session"         # optional free text

Semantics:
- A day without an override is working Mon-Fri, and `weekend_default` on Sat/Sun.
- A working day without `markets` means every market trades its default sessions.
- A working day with `markets` means only the listed markets trade, with their sessions.
- Times are wall clock in `timezone`; sessions are [start, end] with start < end, no
  overlap within a market, "HH:MM" (24:00 not allowed; a session ends by 23:59).
- A bucket is labelled by its END time: in a session [S, E] buckets S+5m ... E exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

MARKETS = ("eq", "fx", "fo")
BUCKET_SECONDS = 300


class CalendarError(ValueError):
    """Invalid calendar; the message names the key path and the reason, e.g.
    "days.2026-02-30: not a valid date"."""


@dataclass(frozen=True)
class Session:
    start: datetime  # aware, calendar timezone
    end: datetime


@dataclass(frozen=True)
class Calendar:
    """Immutable, validated calendar. All `datetime` arguments must be aware; they are
    converted to the calendar's timezone, so host TZ never matters."""

    def tz(self):  # -> ZoneInfo
        raise NotImplementedError

    def is_working_day(self, day: date, market: str | None = None) -> bool:
        """Any market trades on `day` (market=None), or that market trades."""
        raise NotImplementedError

    def day_source(self, day: date) -> str:
        """'default' | 'manual' | 'iss' — where the day's status comes from."""
        raise NotImplementedError

    def sessions(self, market: str, day: date) -> list[Session]:
        """Sessions of `market` on `day`, [] when it does not trade."""
        raise NotImplementedError

    def in_session(self, market: str, moment: datetime) -> bool:
        """start <= moment < end for one of today's sessions."""
        raise NotImplementedError

    def current_session(self, market: str, moment: datetime) -> Session | None:
        raise NotImplementedError

    def session_start(self, market: str, moment: datetime) -> datetime | None:
        """Start of the current session, else of the last one that began before `moment`
        (searching back up to 14 days), else None."""
        raise NotImplementedError

    def next_session_start(self, market: str, moment: datetime) -> datetime | None:
        """First session start strictly after `moment` (searching up to 30 days)."""
        raise NotImplementedError

    def previous_working_day(self, day: date, market: str | None = None) -> date:
        """Latest working day strictly before `day` (for that market)."""
        raise NotImplementedError

    def expected_buckets(self, market: str, day: date) -> list[datetime]:
        """All bucket END times of `day`'s sessions: S+5m, S+10m, ..., E."""
        raise NotImplementedError

    def due_buckets(self, market: str, moment: datetime, grace_seconds: float) -> list[datetime]:
        """Buckets of moment's day with bucket_end + grace < moment (due by now)."""
        raise NotImplementedError

    def hi2_deadline(self, market: str, day: date) -> datetime | None:
        """Deadline moment on `day`, None when the market does not trade that day."""
        raise NotImplementedError


def parse_calendar(data: object) -> Calendar:
    """Validate a parsed YAML document; raise CalendarError naming the key."""
    raise NotImplementedError


def load_calendar(path: str) -> Calendar:
    """Read and validate a file; raise CalendarError (also for YAML syntax errors)."""
    raise NotImplementedError


class CalendarStore:
    """Holds the last good calendar and hot-reloads the file when it changes.

    store = CalendarStore(path)          # raises CalendarError if the first load fails
    store.current -> Calendar            # last good one
    store.last_reload_successful -> bool
    store.last_error -> str | None
    store.check() -> bool                # re-stat the file; reload if changed; True if reloaded OK
    store.start_watching(interval=1.0)   # daemon thread calling check()
    store.stop()
    """

    def __init__(self, path: str):
        raise NotImplementedError


__all__ = ["MARKETS", "BUCKET_SECONDS", "Calendar", "CalendarError", "CalendarStore", "Session",
           "load_calendar", "parse_calendar", "time"]
