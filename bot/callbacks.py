"""Callback data: short, versioned, built and validated in this one place.

    cal:v1:Y                   year list
    cal:v1:y:2026              months of 2026
    cal:v1:m:2026-11           day grid of November 2026
    cal:v1:t:2026-11-25        toggle 25 Nov 2026 working <-> holiday
    cal:v1:n                   a label cell (weekday header, blank): does nothing
    al:v1:r                    refresh the /alerts list
    al:v1:s:<fingerprint>:1h   silence that alert for an hour (:eod = until the end of the day)
    si:v1:r                    refresh the /silences list
    si:v1:x:<silence id>       expire that silence

Telegram limits callback data to 64 bytes; every form above stays well below. A button
whose data does not parse, names a date that does not exist or a year outside
[today.year - 1, today.year + 2], is "stale" (answered "меню устарело", nothing changes).
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from datetime import date

MAX_BYTES = 64
SILENCE_DURATIONS = ("1h", "eod")

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_SILENCE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_YEAR = re.compile(r"\d{4}", re.ASCII)
_MONTH = re.compile(r"(\d{4})-(\d{2})", re.ASCII)
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)


@dataclass(frozen=True)
class Action:
    """A validated button press. `kind` is one of the names below."""

    kind: str             # years | months | month | toggle | noop | alerts | silence | silences | expire
    year: int | None = None
    month: int | None = None
    day: date | None = None
    ref: str | None = None        # alert fingerprint or silence id
    duration: str | None = None   # 1h | eod


def short(value: object, limit: int = 80) -> str:
    """repr(value) for an error message, at most `limit` characters."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def year_range(today: date) -> range:
    return range(today.year - 1, today.year + 3)


def _check(data: str) -> str:
    if len(data.encode()) > MAX_BYTES:
        raise ValueError(f"callback data longer than {MAX_BYTES} bytes: {short(data)}")
    return data


def years() -> str:
    return "cal:v1:Y"


def months(year: int) -> str:
    return _check(f"cal:v1:y:{year:04d}")


def month(year: int, month_number: int) -> str:
    return _check(f"cal:v1:m:{year:04d}-{month_number:02d}")


def toggle(day: date) -> str:
    return _check(f"cal:v1:t:{day.isoformat()}")


def noop() -> str:
    return "cal:v1:n"


def alerts_refresh() -> str:
    return "al:v1:r"


def silence(fingerprint: str, duration: str) -> str:
    if not _FINGERPRINT.fullmatch(fingerprint) or duration not in SILENCE_DURATIONS:
        raise ValueError(f"bad silence button: {short(fingerprint)} {short(duration)}")
    return _check(f"al:v1:s:{fingerprint}:{duration}")


def silences_refresh() -> str:
    return "si:v1:r"


def expire(silence_id: str) -> str:
    if not _SILENCE_ID.fullmatch(silence_id):
        raise ValueError(f"bad silence id: {short(silence_id)}")
    return _check(f"si:v1:x:{silence_id}")


def _parse_year(text: str, today: date) -> int | None:
    if not _YEAR.fullmatch(text):
        return None
    year = int(text)
    return year if year in year_range(today) else None


def _parse_month(text: str, today: date) -> tuple[int, int] | None:
    match = _MONTH.fullmatch(text)
    if not match:
        return None
    year, month_number = int(match.group(1)), int(match.group(2))
    if year not in year_range(today) or not 1 <= month_number <= 12:
        return None
    return year, month_number


def _parse_day(text: str, today: date) -> date | None:
    match = _DAY.fullmatch(text)
    if not match:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:  # 2026-02-30
        return None
    return day if day.year in year_range(today) else None


def parse(data: str | None, today: date) -> Action | None:
    """The action a button carries, or None when it is stale, forged or malformed."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    parts = data.split(":")
    if len(parts) < 3 or parts[1] != "v1":
        return None
    scope, rest = parts[0], parts[2:]
    if scope == "cal":
        return _parse_calendar(rest, today)
    if scope == "al":
        if rest == ["r"]:
            return Action("alerts")
        if len(rest) == 3 and rest[0] == "s" and _FINGERPRINT.fullmatch(rest[1]) \
                and rest[2] in SILENCE_DURATIONS:
            return Action("silence", ref=rest[1], duration=rest[2])
        return None
    if scope == "si":
        if rest == ["r"]:
            return Action("silences")
        if len(rest) == 2 and rest[0] == "x" and _SILENCE_ID.fullmatch(rest[1]):
            return Action("expire", ref=rest[1])
        return None
    return None


def _parse_calendar(rest: list[str], today: date) -> Action | None:
    if rest == ["Y"]:
        return Action("years")
    if rest == ["n"]:
        return Action("noop")
    if len(rest) != 2:
        return None
    verb, value = rest
    if verb == "y":
        year = _parse_year(value, today)
        return Action("months", year=year) if year is not None else None
    if verb == "m":
        parsed = _parse_month(value, today)
        return Action("month", year=parsed[0], month=parsed[1]) if parsed else None
    if verb == "t":
        day = _parse_day(value, today)
        return Action("toggle", year=day.year, month=day.month, day=day) if day else None
    return None
