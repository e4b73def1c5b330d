"""The calendar model: which market trades when. Immutable and validated; built by
`exporter.calendar.fileformat` from `calendar.yml` (its docstring has the file format).

Semantics:
- A day without an override is working Mon-Fri, and `weekend_default` on Sat/Sun.
- A working day without `markets` means every market trades its default sessions.
- A working day with `markets` means only the listed markets trade, with their sessions.
- A holiday may keep `markets`: they are ignored while the day is a holiday and come back
  into force when someone switches the day to working again (the bot's toggle relies on it).
- Times are wall clock in `timezone`; sessions are [start, end] with start < end, no
  overlap within a market, sorted (a session ends by 23:59).
- A bucket is labelled by its END time: in a session [S, E] buckets S+5m ... E exist.
  Bucket ends lie on the 5-minute grid of the wall clock; a session that does not start
  on the grid gets its first bucket at the first grid point >= S+5m.
- `hi2_deadlines` is optional per market; a market without one never expects hi2.

The day rules that edits need (the effective status, what a toggle or a new entry keeps)
live here too (`Calendar.toggled`, `Calendar.entry_for`), so writers never re-implement
them on the YAML document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from exporter.yamlsafe import short

MARKETS = ("eq", "fx", "fo")
BUCKET_SECONDS = 300
STATUSES = ("working", "holiday")
SOURCES = ("manual", "iss")
DEFAULT_TIMEZONE = "Europe/Moscow"

_SESSION_START_LOOKBACK_DAYS = 14
_NEXT_SESSION_LOOKAHEAD_DAYS = 30
_PREVIOUS_WORKING_DAY_LIMIT = 400


class CalendarError(ValueError):
    """Invalid calendar; the message names the key path and the reason, e.g.
    "days.2026-02-30: not a valid date"."""


class CalendarReadOnly(CalendarError):
    """The calendar cannot be written here (read-only directory, e.g. a ConfigMap)."""


class CalendarUnreadable(CalendarError):
    """The file as it is on disk cannot be read (missing, not UTF-8, a YAML bomb, not YAML)."""


@dataclass(frozen=True)
class Session:
    start: datetime  # aware, calendar timezone
    end: datetime


SessionTimes = tuple[tuple[time, time], ...]


@dataclass(frozen=True)
class DayOverride:
    """One validated entry of `days`.

    `markets` is None when the entry does not restrict markets; otherwise it maps each
    listed market to its own sessions, or to None for "the market's default sessions".
    A new optional field of a day goes here (with its default) and into
    `fileformat.DAY_FIELDS` (how it is read and written): nothing else changes.
    """

    status: str
    markets: Mapping[str, SessionTimes | None] | None = None
    source: str = "manual"
    reason: str | None = None

    @property
    def plain(self) -> bool:
        """Nothing but the status is said (the file writes it as a plain string)."""
        return self == DayOverride(self.status)


@dataclass(frozen=True, eq=False)
class Calendar:
    """Immutable, validated calendar. All `datetime` arguments must be aware; they are
    converted to the calendar's timezone, so host TZ never matters.

    Build one with `parse_calendar` / `load_calendar`. Answers are cached per (market, day),
    so asking on every scrape costs a dict lookup.
    """

    timezone: str
    weekend_default: str
    default_sessions: Mapping[str, SessionTimes]
    hi2_deadlines: Mapping[str, time]
    days: Mapping[date, DayOverride]
    _zone: ZoneInfo = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ----- days -----------------------------------------------------------------------

    def tz(self) -> ZoneInfo:
        return self._zone

    def override(self, day: date) -> DayOverride | None:
        """The explicit `days` entry for `day`, if any."""
        return self.days.get(day)

    def default_status(self, day: date) -> str:
        """The status `day` has without an entry."""
        return self.weekend_default if day.weekday() >= 5 else "working"

    def day_status(self, day: date) -> str:
        """'working' | 'holiday': the effective status of the whole day."""
        entry = self.days.get(day)
        return entry.status if entry is not None else self.default_status(day)

    def _market_times(self, market: str, day: date) -> SessionTimes:
        """Session wall times of `market` on `day` (empty when it does not trade)."""
        check_market(market)
        if self.day_status(day) != "working":
            return ()
        entry = self.days.get(day)
        if entry is None or entry.markets is None:
            return self.default_sessions[market]
        if market not in entry.markets:
            return ()
        own = entry.markets[market]
        return self.default_sessions[market] if own is None else own

    def is_working_day(self, day: date, market: str | None = None) -> bool:
        """Any market trades on `day` (market=None), or that market trades."""
        if market is None:
            return any(self._market_times(m, day) for m in MARKETS)
        return bool(self._market_times(market, day))

    def day_source(self, day: date) -> str:
        """'default' | 'manual' | 'iss' — where the day's status comes from."""
        entry = self.days.get(day)
        return "default" if entry is None else entry.source

    # ----- edits (pure: the writer stores the returned entries) -------------------------

    def entry_for(self, day: date, status: str, *, markets: Mapping[str, SessionTimes | None] | None = None,
                  **fields: object) -> DayOverride:
        """The entry an explicit edit writes: markets=None keeps the custom market
        sessions of the day's current entry (if it had any); `fields` are the other
        `DayOverride` fields (source, reason, ...), their defaults when not given."""
        if status not in STATUSES:
            raise CalendarError(f"status: {short(status)} is not a status; use working or holiday")
        source = fields.get("source", "manual")
        if source not in SOURCES:
            raise CalendarError(f"source: {short(source)} is not a source; use {' or '.join(SOURCES)}")
        if markets is not None:
            unknown = sorted(set(markets) - set(MARKETS))
            if unknown:
                raise CalendarError(f"markets.{unknown[0]}: unknown market; allowed: {', '.join(MARKETS)}")
            markets = {m: markets[m] for m in MARKETS if m in markets}
        else:
            old = self.days.get(day)
            markets = old.markets if old is not None else None
        return DayOverride(status=status, markets=markets, **fields)

    def toggled(self, day: date) -> DayOverride:
        """`day` flipped working <-> holiday relative to its effective status, as a manual
        entry that keeps the day's custom market sessions (they apply whenever it works)."""
        new_status = "holiday" if self.day_status(day) == "working" else "working"
        return self.entry_for(day, new_status)

    def with_days(self, changes: Mapping[date, DayOverride | None]) -> Calendar:
        """A copy with `changes` applied (None removes a day's entry)."""
        days = dict(self.days)
        for day, entry in changes.items():
            if entry is None:
                days.pop(day, None)
            else:
                days[day] = entry
        return replace(self, days=days, _cache={})

    # ----- sessions -------------------------------------------------------------------

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("calendar questions need an aware datetime")
        return moment.astimezone(self._zone)

    def _sessions(self, market: str, day: date) -> tuple[Session, ...]:
        key = ("sessions", market, day)
        cached = self._cache.get(key)
        if cached is None:
            cached = tuple(
                Session(datetime.combine(day, start, tzinfo=self._zone),
                        datetime.combine(day, end, tzinfo=self._zone))
                for start, end in self._market_times(market, day)
            )
            self._cache[key] = cached
        return cached

    def sessions(self, market: str, day: date) -> list[Session]:
        """Sessions of `market` on `day`, [] when it does not trade."""
        return list(self._sessions(market, day))

    def in_session(self, market: str, moment: datetime) -> bool:
        """start <= moment < end for one of today's sessions."""
        return self.current_session(market, moment) is not None

    def current_session(self, market: str, moment: datetime) -> Session | None:
        local = self._local(moment)
        for session in self._sessions(market, local.date()):
            if session.start <= local < session.end:
                return session
        return None

    def session_start(self, market: str, moment: datetime) -> datetime | None:
        """Start of the current session, else of the last one that began before `moment`
        (searching back up to 14 days), else None."""
        local = self._local(moment)
        day = local.date()
        for back in range(_SESSION_START_LOOKBACK_DAYS + 1):
            for session in reversed(self._sessions(market, day - timedelta(days=back))):
                if session.start <= local:
                    return session.start
        return None

    def next_session_start(self, market: str, moment: datetime) -> datetime | None:
        """First session start strictly after `moment` (searching up to 30 days)."""
        local = self._local(moment)
        day = local.date()
        for ahead in range(_NEXT_SESSION_LOOKAHEAD_DAYS + 1):
            for session in self._sessions(market, day + timedelta(days=ahead)):
                if session.start > local:
                    return session.start
        return None

    def previous_working_day(self, day: date, market: str | None = None) -> date:
        """Latest working day strictly before `day` (for that market)."""
        candidate = day
        for _ in range(_PREVIOUS_WORKING_DAY_LIMIT):
            candidate -= timedelta(days=1)
            if self.is_working_day(candidate, market):
                return candidate
        raise ValueError(f"no working day within {_PREVIOUS_WORKING_DAY_LIMIT} days before {day}")

    # ----- buckets --------------------------------------------------------------------

    def _buckets(self, market: str, day: date) -> tuple[datetime, ...]:
        key = ("buckets", market, day)
        cached = self._cache.get(key)
        if cached is None:
            ends: list[datetime] = []
            midnight = datetime.combine(day, time(0), tzinfo=self._zone)
            step = BUCKET_SECONDS // 60
            for session in self._sessions(market, day):
                # Wall-clock minutes of the day: bucket ends lie on the wall-clock grid
                # (aware + timedelta is wall-clock arithmetic in Python).
                first = _minutes(session.start.timetz()) + step
                first += -first % step
                last = _minutes(session.end.timetz())
                ends.extend(midnight + timedelta(minutes=m) for m in range(first, last + 1, step))
            cached = tuple(ends)
            self._cache[key] = cached
        return cached

    def expected_buckets(self, market: str, day: date) -> list[datetime]:
        """All bucket END times of `day`'s sessions: S+5m, S+10m, ..., E."""
        return list(self._buckets(market, day))

    def due_buckets(self, market: str, moment: datetime, grace_seconds: float) -> list[datetime]:
        """Buckets of moment's day with bucket_end + grace < moment (due by now)."""
        local = self._local(moment)
        grace = timedelta(seconds=grace_seconds)
        return [end for end in self._buckets(market, local.date()) if end + grace < local]

    def hi2_deadline(self, market: str, day: date) -> datetime | None:
        """Deadline moment on `day`, None when the market does not trade that day
        (or has no `checks.hi2_deadline`)."""
        deadline = self.hi2_deadlines.get(market)
        if deadline is None or not self.is_working_day(day, market):
            return None
        return datetime.combine(day, deadline, tzinfo=self._zone)


def check_market(market: str) -> None:
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; expected one of {', '.join(MARKETS)}")


def _minutes(value: time) -> int:
    return value.hour * 60 + value.minute


def hhmm(value: time) -> str:
    return value.strftime("%H:%M")


__all__ = ["BUCKET_SECONDS", "DEFAULT_TIMEZONE", "MARKETS", "SOURCES", "STATUSES", "Calendar", "CalendarError",
           "CalendarReadOnly", "CalendarUnreadable", "DayOverride", "Session", "SessionTimes", "check_market",
           "hhmm"]
