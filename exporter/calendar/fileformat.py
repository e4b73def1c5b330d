"""`calendar.yml` <-> the model: validation that names the key, and the YAML values an
edit writes. The YAML library itself is in `yamldoc` (one for read and write).

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

Times are "HH:MM" (00:00..23:59; 24:00 is not allowed). The file is read as YAML 1.2, so
10:00 needs no quotes; edits still write them quoted (readable by any YAML tool).
Semantics of the fields: `exporter.calendar.model`.

A new optional day field: a field of `DayOverride` (model.py) and a row in `DAY_FIELDS`
below (how it is read and written); its test. Nothing else reads the YAML of a day.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from exporter.yamlsafe import short

from .model import (
    DEFAULT_TIMEZONE,
    MARKETS,
    SOURCES,
    STATUSES,
    Calendar,
    CalendarError,
    DayOverride,
    SessionTimes,
    hhmm,
)
from .yamldoc import read_document, read_text

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _fail(path: str, reason: str) -> CalendarError:
    return CalendarError(f"{path}: {reason}")


def _expect_mapping(value: object, path: str, allowed: tuple[str, ...]) -> Mapping:
    """path "" is the document itself."""
    if not isinstance(value, Mapping):
        raise _fail(path or "calendar", f"must be a mapping, got {_describe(value)}")
    for key in value:
        if key not in allowed:
            raise _fail(f"{path}.{_key(key)}" if path else _key(key), f"unknown key; allowed: {', '.join(allowed)}")
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


def parse_hhmm(value: object, path: str) -> time:
    if not isinstance(value, str):
        raise _fail(path, f'must be a "HH:MM" string, got {_describe(value)}')
    match = _HHMM.match(value)
    if not match:
        raise _fail(path, f'{short(str(value))} is not a time "HH:MM" between 00:00 and 23:59')
    return time(int(match.group(1)), int(match.group(2)))


def parse_sessions(value: object, path: str) -> SessionTimes:
    if not isinstance(value, list | tuple):
        raise _fail(path, f'must be a list of ["HH:MM", "HH:MM"] pairs, got {_describe(value)}')
    if not value:
        raise _fail(path, "must list at least one session")
    parsed: list[tuple[time, time]] = []
    for index, pair in enumerate(value):
        item = f"{path}[{index}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _fail(item, f'must be a pair ["HH:MM", "HH:MM"], got {_describe(pair)}')
        start = parse_hhmm(pair[0], f"{item}[0]")
        end = parse_hhmm(pair[1], f"{item}[1]")
        if start >= end:
            raise _fail(item, f"start {hhmm(start)} must be before end {hhmm(end)}")
        for other_start, other_end in parsed:
            if start < other_end and other_start < end:
                raise _fail(item, f'overlaps ["{hhmm(other_start)}", "{hhmm(other_end)}"]')
        if parsed and start < parsed[-1][0]:
            raise _fail(item, f"sessions must be sorted: starts before the previous one ({hhmm(parsed[-1][0])})")
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
    return parse_sessions(block["sessions"], f"{path}.sessions")


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


def _parse_markets(value: object, path: str) -> dict[str, SessionTimes | None]:
    block = _expect_mapping(value, path, MARKETS)
    if not block:
        raise _fail(path, "must list at least one market (use status: holiday for none)")
    return {m: _parse_market_block(block[m], f"{path}.{m}", required=False) for m in MARKETS if m in block}


def _read_source(value: object, path: str) -> str:
    if value not in SOURCES:
        raise _fail(path, f"{short(value)} is not a source; use {' or '.join(SOURCES)}")
    return str(value)


def _read_reason(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"must be text, got {_describe(value)}")
    return str(value)


def _write_markets(markets: Mapping[str, SessionTimes | None]) -> CommentedMap:
    node = _flow(CommentedMap())
    for market in MARKETS:
        if market not in markets:
            continue
        block = _flow(CommentedMap())
        sessions = markets[market]
        if sessions is not None:
            block["sessions"] = _flow_seq(_flow_seq(DoubleQuotedScalarString(hhmm(t)) for t in pair)
                                          for pair in sessions)
        node[market] = block
    return node


# The optional fields of a day entry, in the order they are written: name -> (read, write).
# read(yaml value, key path) -> model value (raises CalendarError); write(model value) ->
# YAML value. A field absent or null in the file keeps the DayOverride default, and a
# field at its default is not written.
DAY_FIELDS: dict[str, tuple[Callable[[object, str], object], Callable[[object], object]]] = {
    "markets": (_parse_markets, _write_markets),
    "source": (_read_source, str),
    "reason": (_read_reason, str),
}
_DEFAULTS = {f.name: f.default for f in fields(DayOverride)}


def parse_day(value: object, path: str) -> DayOverride:
    if isinstance(value, str):
        if value not in STATUSES:
            raise _fail(path, f"{short(value)} is not a status; use working or holiday")
        return DayOverride(status=str(value))
    entry = _expect_mapping(value, path, ("status", *DAY_FIELDS))
    if "status" not in entry:
        raise _fail(f"{path}.status", "required (working or holiday)")
    status = entry["status"]
    if status not in STATUSES:
        raise _fail(f"{path}.status", f"{short(status)} is not a status; use working or holiday")
    values = {name: read(entry[name], f"{path}.{name}")
              for name, (read, _write) in DAY_FIELDS.items() if entry.get(name) is not None}
    return DayOverride(status=str(status), **values)


def day_node(entry: DayOverride) -> object:
    """The YAML value of a day entry: the plain string form when nothing but the status
    is said, else a one-line flow mapping (times quoted)."""
    if entry.plain:
        return entry.status
    node = _flow(CommentedMap())
    node["status"] = entry.status
    for name, (_read, write) in DAY_FIELDS.items():
        value = getattr(entry, name)
        if value != _DEFAULTS[name]:
            node[name] = write(value)
    return node


def _flow(mapping: CommentedMap) -> CommentedMap:
    mapping.fa.set_flow_style()
    return mapping


def _flow_seq(items) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


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
        raise _fail("timezone", f"{short(str(tz_name))} is not a known time zone") from None

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
                    hi2[market] = parse_hhmm(deadlines[market], f"checks.hi2_deadline.{market}")

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
            days[day] = parse_day(value, path)

    return Calendar(timezone=str(tz_name), weekend_default=str(weekend_default),
                    default_sessions=default_sessions, hi2_deadlines=hi2, days=days, _zone=zone)


def parse_calendar_text(text: str, origin: str = "calendar") -> Calendar:
    """Parse YAML text exactly as the exporter reads the file (bombs refused first)."""
    return parse_calendar(read_document(text, origin))


def load_calendar(path: str) -> Calendar:
    """Read and validate a file; raise CalendarError (also for YAML syntax errors)."""
    return parse_calendar_text(read_text(path), origin=path)


__all__ = ["DAY_FIELDS", "day_node", "load_calendar", "parse_calendar", "parse_calendar_text", "parse_day",
           "parse_hhmm", "parse_sessions"]
