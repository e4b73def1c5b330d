"""Trading calendar: which market trades when, per `calendar.yml`.

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
- A holiday may keep `markets`: they are ignored while the day is a holiday and come back
  into force when someone switches the day to working again (the bot's toggle relies on it).
- Times are wall clock in `timezone`; sessions are [start, end] with start < end, no
  overlap within a market, sorted, "HH:MM" (24:00 not allowed; a session ends by 23:59).
  Times must be quoted: YAML 1.1 (PyYAML) reads an unquoted 10:00 as the number 600.
- A bucket is labelled by its END time: in a session [S, E] buckets S+5m ... E exist.
  Bucket ends lie on the 5-minute grid of the wall clock; a session that does not start
  on the grid gets its first bucket at the first grid point >= S+5m.
- `checks.hi2_deadline` is optional per market; a market without one never expects hi2.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from exporter.yamlsafe import YamlBombError, check_expansion, short

log = logging.getLogger(__name__)

MARKETS = ("eq", "fx", "fo")
BUCKET_SECONDS = 300
STATUSES = ("working", "holiday")
SOURCES = ("manual", "iss")
DEFAULT_TIMEZONE = "Europe/Moscow"

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_BUCKET = timedelta(seconds=BUCKET_SECONDS)
_SESSION_START_LOOKBACK_DAYS = 14
_NEXT_SESSION_LOOKAHEAD_DAYS = 30
_PREVIOUS_WORKING_DAY_LIMIT = 400


class CalendarError(ValueError):
    """Invalid calendar; the message names the key path and the reason, e.g.
    "days.2026-02-30: not a valid date"."""


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
    """

    status: str
    markets: Mapping[str, SessionTimes | None] | None = None
    source: str = "manual"
    reason: str | None = None


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

    def day_status(self, day: date) -> str:
        """'working' | 'holiday': the effective status of the whole day."""
        entry = self.days.get(day)
        if entry is not None:
            return entry.status
        if day.weekday() >= 5:
            return self.weekend_default
        return "working"

    def _market_times(self, market: str, day: date) -> SessionTimes:
        """Session wall times of `market` on `day` (empty when it does not trade)."""
        _check_market(market)
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
            for session in self._sessions(market, day):
                # Wall-clock minutes of the day: bucket ends lie on the wall-clock grid
                # (aware + timedelta is wall-clock arithmetic in Python).
                first = _minutes(session.start.timetz()) + BUCKET_SECONDS // 60
                first += -first % (BUCKET_SECONDS // 60)
                last = _minutes(session.end.timetz())
                ends.extend(midnight + timedelta(minutes=m)
                            for m in range(first, last + 1, BUCKET_SECONDS // 60))
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


def _check_market(market: str) -> None:
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; expected one of {', '.join(MARKETS)}")


def _minutes(value: time) -> int:
    return value.hour * 60 + value.minute


# ----- parsing ------------------------------------------------------------------------


def _fail(path: str, reason: str) -> CalendarError:
    return CalendarError(f"{path}: {reason}")


def _expect_mapping(value: object, path: str, allowed: tuple[str, ...]) -> Mapping:
    """path "" is the document itself."""
    if not isinstance(value, Mapping):
        raise _fail(path or "calendar", f"must be a mapping, got {_describe(value)}")
    for key in value:
        if key not in allowed:
            raise _fail(f"{path}.{_key(key)}" if path else _key(key),
                        f"unknown key; allowed: {', '.join(allowed)}")
    return value


def _describe(value: object) -> str:
    """Type and a bounded repr (never the whole value: it may be huge)."""
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {short(value)}"


def _key(key: object) -> str:
    """A mapping key for a key path in an error, at most 80 characters."""
    text = str(key) if isinstance(key, str | date | int) else short(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_hhmm(value: object, path: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        raise _fail(path, f'must be a quoted "HH:MM" string (unquoted YAML read it as the number {value})')
    if not isinstance(value, str):
        raise _fail(path, f'must be a "HH:MM" string, got {_describe(value)}')
    match = _HHMM.match(value)
    if not match:
        raise _fail(path, f'{short(value)} is not a time "HH:MM" between 00:00 and 23:59')
    return time(int(match.group(1)), int(match.group(2)))


def _fmt(t: time) -> str:
    return t.strftime("%H:%M")


def _parse_sessions(value: object, path: str) -> SessionTimes:
    if not isinstance(value, list | tuple):
        raise _fail(path, f'must be a list of ["HH:MM", "HH:MM"] pairs, got {_describe(value)}')
    if not value:
        raise _fail(path, "must list at least one session")
    parsed: list[tuple[time, time]] = []
    for index, pair in enumerate(value):
        item = f"{path}[{index}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _fail(item, f'must be a pair ["HH:MM", "HH:MM"], got {_describe(pair)}')
        start = _parse_hhmm(pair[0], f"{item}[0]")
        end = _parse_hhmm(pair[1], f"{item}[1]")
        if start >= end:
            raise _fail(item, f"start {_fmt(start)} must be before end {_fmt(end)}")
        for other_start, other_end in parsed:
            if start < other_end and other_start < end:
                raise _fail(item, f'overlaps ["{_fmt(other_start)}", "{_fmt(other_end)}"]')
        if parsed and start < parsed[-1][0]:
            raise _fail(item, f"sessions must be sorted: starts before the previous one ({_fmt(parsed[-1][0])})")
        parsed.append((start, end))
    return tuple(parsed)


def _parse_market_block(value: object, path: str, required: bool) -> SessionTimes | None:
    """`{sessions: [...]}`; with required=False, `{}` / null means "default sessions"."""
    if value is None and not required:
        return None
    block = _expect_mapping(value, path, ("sessions",))
    if "sessions" not in block:
        if required:
            raise _fail(f"{path}.sessions", "required")
        return None
    return _parse_sessions(block["sessions"], f"{path}.sessions")


def _parse_day_key(key: object) -> date:
    if isinstance(key, datetime):
        raise _fail(f"days.{_key(key)}", "must be a date YYYY-MM-DD without a time")
    if isinstance(key, date):
        return key
    if isinstance(key, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
            raise _fail(f"days.{_key(key)}", "must be a date YYYY-MM-DD")
        try:
            return date.fromisoformat(key)
        except ValueError:
            raise _fail(f"days.{_key(key)}", "not a valid date") from None
    raise _fail(f"days.{_key(key)}", f"must be a date YYYY-MM-DD, got {_describe(key)}")


def _parse_day(value: object, path: str) -> DayOverride:
    if isinstance(value, str):
        if value not in STATUSES:
            raise _fail(path, f"{short(value)} is not a status; use working or holiday")
        return DayOverride(status=value)
    entry = _expect_mapping(value, path, ("status", "markets", "source", "reason"))
    if "status" not in entry:
        raise _fail(f"{path}.status", "required (working or holiday)")
    status = entry["status"]
    if status not in STATUSES:
        raise _fail(f"{path}.status", f"{short(status)} is not a status; use working or holiday")
    markets: dict[str, SessionTimes | None] | None = None
    if entry.get("markets") is not None:
        block = _expect_mapping(entry["markets"], f"{path}.markets", MARKETS)
        if not block:
            raise _fail(f"{path}.markets", "must list at least one market (use status: holiday for none)")
        markets = {m: _parse_market_block(block[m], f"{path}.markets.{m}", required=False)
                   for m in MARKETS if m in block}
    source = entry.get("source")
    if source is None:
        source = "manual"
    if source not in SOURCES:
        raise _fail(f"{path}.source", f"{short(source)} is not a source; use {' or '.join(SOURCES)}")
    reason = entry.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise _fail(f"{path}.reason", f"must be text, got {_describe(reason)}")
    return DayOverride(status=status, markets=markets, source=source, reason=reason)


def parse_calendar(data: object) -> Calendar:
    """Validate a parsed YAML document; raise CalendarError naming the key."""
    if data is None:
        raise CalendarError("calendar: the file is empty")
    top = _expect_mapping(data, "", ("timezone", "weekend_default", "markets", "checks", "days"))

    tz_name = top.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(tz_name, str) or not tz_name:
        raise _fail("timezone", f"must be a time zone name such as Europe/Moscow, got {_describe(tz_name)}")
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail("timezone", f"{short(tz_name)} is not a known time zone") from None

    weekend_default = top.get("weekend_default", "holiday")
    if weekend_default not in STATUSES:
        raise _fail("weekend_default", f"{short(weekend_default)} is not valid; use working or holiday")

    if "markets" not in top:
        raise _fail("markets", f"required (sessions for {', '.join(MARKETS)})")
    markets_block = _expect_mapping(top["markets"], "markets", MARKETS)
    default_sessions: dict[str, SessionTimes] = {}
    for market in MARKETS:
        if market not in markets_block:
            raise _fail(f"markets.{market}", "required")
        parsed = _parse_market_block(markets_block[market], f"markets.{market}", required=True)
        assert parsed is not None
        default_sessions[market] = parsed

    hi2: dict[str, time] = {}
    checks = top.get("checks")
    if checks is not None:
        checks = _expect_mapping(checks, "checks", ("hi2_deadline",))
        deadlines = checks.get("hi2_deadline")
        if deadlines is not None:
            deadlines = _expect_mapping(deadlines, "checks.hi2_deadline", MARKETS)
            for market in MARKETS:
                if deadlines.get(market) is not None:
                    hi2[market] = _parse_hhmm(deadlines[market], f"checks.hi2_deadline.{market}")

    days: dict[date, DayOverride] = {}
    days_block = top.get("days")
    if days_block is not None:
        if not isinstance(days_block, Mapping):
            raise _fail("days", f"must be a mapping of YYYY-MM-DD to a day, got {_describe(days_block)}")
        for key, value in days_block.items():
            day = _parse_day_key(key)
            path = f"days.{day.isoformat()}"
            if day in days:
                raise _fail(path, "listed twice (once quoted, once not?)")
            days[day] = _parse_day(value, path)

    return Calendar(timezone=tz_name, weekend_default=weekend_default, default_sessions=default_sessions,
                    hi2_deadlines=hi2, days=days, _zone=zone)


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves an impossible date (2026-02-30) as a string, so validation
    can name it instead of failing inside the YAML parser."""


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def parse_calendar_text(text: str, origin: str = "calendar") -> Calendar:
    """Parse YAML text exactly as the exporter reads the file. Aliases that expand beyond
    a small bound are refused before anything is built (exporter/yamlsafe.py)."""
    try:
        check_expansion(text, origin)
    except YamlBombError as exc:
        raise CalendarError(str(exc)) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CalendarError(f"{origin}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_calendar(data)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's message, bounded (it may quote a piece of the document)."""
    text = str(exc)
    return text if len(text) <= 400 else text[:397] + "..."


def load_calendar(path: str) -> Calendar:
    """Read and validate a file; raise CalendarError (also for YAML syntax errors)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CalendarError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    return parse_calendar_text(text, origin=path)


def _stat_signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CalendarStore:
    """Holds the last good calendar and hot-reloads the file when it changes.

    store = CalendarStore(path)          # raises CalendarError if the first load fails
    store.current -> Calendar            # last good one
    store.last_reload_successful -> bool
    store.last_error -> str | None
    store.check() -> bool                # re-stat the file; reload if changed; True if reloaded OK
    store.start_watching(interval=1.0)   # daemon thread calling check()
    store.stop()
    store.on_reload                      # list of callables(store), called after every
                                         # reload attempt (success or failure)
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.on_reload: list[Callable[[CalendarStore], None]] = []
        self.last_reload_successful = True
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signature: tuple[int, int, int] | None = None
        calendar, signature = self._read()
        self.current: Calendar = calendar
        self._signature = signature

    def _read(self) -> tuple[Calendar, tuple[int, int, int]]:
        """Read through one open file so the signature matches the content read."""
        try:
            with open(self.path, "rb") as handle:
                signature = _stat_signature(os.fstat(handle.fileno()))
                raw = handle.read()
        except OSError as exc:
            raise CalendarError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._signature = signature
            raise CalendarError(f"{self.path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        try:
            return parse_calendar_text(text, origin=self.path), signature
        except CalendarError:
            self._signature = signature  # do not retry the same broken file every second
            raise

    def check(self) -> bool:
        """Re-stat the file; reload if it changed. True if a reload happened and succeeded."""
        with self._lock:
            outcome = self._check_locked()
        if outcome is not None:
            self._notify()
        return bool(outcome)

    def _check_locked(self) -> bool | None:
        """True: reloaded; False: reload failed; None: nothing changed."""
        try:
            signature = _stat_signature(os.stat(self.path))
        except OSError as exc:
            error = f"{self.path}: cannot read: {exc.strerror or exc}"
            if self._signature is None and self.last_error == error:
                return None  # still missing: report once
            self._signature = None
            return self._failed(error)
        if signature == self._signature:
            return None
        try:
            calendar, self._signature = self._read()
        except CalendarError as exc:
            return self._failed(str(exc))
        self.current = calendar
        self.last_reload_successful = True
        self.last_error = None
        log.info("event=calendar_reloaded path=%s days=%d", self.path, len(calendar.days))
        return True

    def _failed(self, error: str) -> bool:
        self.last_reload_successful = False
        self.last_error = error
        log.error("event=calendar_reload_failed path=%s error=%r", self.path, error)
        return False

    def _notify(self) -> None:
        for callback in list(self.on_reload):
            try:
                callback(self)
            except Exception:  # a broken listener must not stop reloading
                log.exception("event=calendar_on_reload_failed path=%s", self.path)

    def start_watching(self, interval: float = 1.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, args=(interval,),
                                        name="calendar-watch", daemon=True)
        self._thread.start()

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # keep watching whatever happens
                log.exception("event=calendar_check_failed path=%s", self.path)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


__all__ = ["MARKETS", "BUCKET_SECONDS", "Calendar", "CalendarError", "CalendarStore", "DayOverride",
           "Session", "load_calendar", "parse_calendar", "parse_calendar_text", "time"]
