"""The /calendar inline keyboard: pure functions from a Calendar to (text, markup).

Year list → month list → day grid (Mon–Sun). Tapping a day toggles it (handled in app.py)
and the grid is rendered again in place.
"""

from __future__ import annotations

import calendar as stdcal
from datetime import date

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks, texts
from exporter.calendar import MARKETS, Calendar

Rendered = tuple[str, InlineKeyboardMarkup]


def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def fmt_day(day: date) -> str:
    return f"{day:%d.%m.%Y} ({texts.WEEKDAYS[day.weekday()]})"


def is_special(cal: Calendar, day: date) -> bool:
    """A working day whose override restricts markets or sets its own sessions."""
    entry = cal.override(day)
    return entry is not None and entry.status == "working" and entry.markets is not None


def day_mark(cal: Calendar, day: date, today: date) -> str:
    if cal.day_status(day) != "working":
        label = f"🔴{day.day}"
    elif is_special(cal, day):
        label = f"🟡{day.day}"
    else:
        label = str(day.day)
    return f"[{label}]" if day == today else label


def _sessions_text(cal: Calendar, day: date) -> str:
    parts = []
    for market in MARKETS:
        sessions = cal.sessions(market, day)
        if sessions:
            spans = ", ".join(f"{s.start:%H:%M}–{s.end:%H:%M}" for s in sessions)
            parts.append(f"{market.upper()} {spans}")
    return "; ".join(parts)


def day_line(cal: Calendar, day: date) -> str:
    """One line about a day: status, custom sessions, where the status comes from."""
    status = cal.day_status(day)
    detail = ""
    if is_special(cal, day):
        detail = texts.CAL_SESSIONS.format(sessions=texts.CAL_ONLY_MARKETS.format(
            markets=texts.esc(_sessions_text(cal, day))))
    source = texts.SOURCE.get(cal.day_source(day), cal.day_source(day))
    entry = cal.override(day)
    if entry is not None and entry.reason:
        source = f"{source} · {texts.esc(entry.reason)}"
    return texts.CAL_DAY_LINE.format(day=fmt_day(day), status=texts.STATUS[status], detail=detail,
                                     source=source)


def render_years(today: date) -> Rendered:
    row = [_button(str(year) + (" •" if year == today.year else ""), callbacks.months(year))
           for year in callbacks.year_range(today)]
    return texts.CAL_YEARS, InlineKeyboardMarkup([row])


def render_months(year: int, today: date) -> Rendered:
    rows: list[list[InlineKeyboardButton]] = []
    for first in range(1, 13, 3):
        row = []
        for number in range(first, first + 3):
            label = texts.MONTHS[number - 1]
            if (year, number) == (today.year, today.month):
                label = f"[{label}]"
            row.append(_button(label, callbacks.month(year, number)))
        rows.append(row)
    rows.append([_button(texts.CAL_BACK_YEARS, callbacks.years())])
    return texts.CAL_MONTHS.format(year=year), InlineKeyboardMarkup(rows)


def render_month(cal: Calendar, year: int, month: int, today: date, note: str | None = None) -> Rendered:
    """Day grid of one month; `note` (e.g. who changed what) goes on top."""
    rows: list[list[InlineKeyboardButton]] = [[_button(name, callbacks.noop()) for name in texts.WEEKDAYS]]
    for week in stdcal.Calendar(firstweekday=0).monthdatescalendar(year, month):
        row = []
        for day in week:
            if day.month != month:
                row.append(_button(" ", callbacks.noop()))
            else:
                row.append(_button(day_mark(cal, day, today), callbacks.toggle(day)))
        rows.append(row)
    years = callbacks.year_range(today)
    prev_year, prev_month = (year, month - 1) if month > 1 else (year - 1, 12)
    next_year, next_month = (year, month + 1) if month < 12 else (year + 1, 1)
    nav = []
    if prev_year in years:
        nav.append(_button(f"« {texts.MONTHS_SHORT[prev_month - 1]}", callbacks.month(prev_year, prev_month)))
    nav.append(_button(texts.CAL_BACK_MONTHS.format(year=year), callbacks.months(year)))
    if next_year in years:
        nav.append(_button(f"{texts.MONTHS_SHORT[next_month - 1]} »", callbacks.month(next_year, next_month)))
    rows.append(nav)

    lines = []
    if note:
        lines += [note, ""]
    lines += [texts.CAL_MONTH_TITLE.format(month=texts.MONTHS[month - 1], year=year), texts.CAL_LEGEND, ""]
    special = sorted(day for day in cal.days if (day.year, day.month) == (year, month))
    if special:
        lines.append(texts.CAL_SPECIAL_HEADER)
        lines += [day_line(cal, day) for day in special]
    else:
        lines.append(texts.CAL_NO_SPECIAL)
    return "\n".join(lines), InlineKeyboardMarkup(rows)
