"""/calendar: year list → month list → day grid (Mon–Sun); tapping a day toggles it
working ⇄ holiday in calendar.yml (which the exporter hot-reloads) and the grid is rendered
again in place. `/calendar sync` lives in `bot.handlers.calendar_sync`.

The renderers are pure functions from a Calendar to (text, markup).
"""

from __future__ import annotations

import asyncio
import calendar as stdcal
import logging
from datetime import date

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import callbacks, texts
from bot.context import BotContext, BotState
from bot.handlers.calendar_file import calendar_or_problem, calendar_problem
from bot.handlers.calendar_sync import calendar_sync
from bot.handlers.common import actor_name, edit, user_id
from exporter.calendar import (
    Calendar,
    CalendarError,
    CalendarReadOnly,
    DayView,
    day_view,
    month_days,
    toggle,
)

log = logging.getLogger("bot")

Rendered = tuple[str, InlineKeyboardMarkup]
KINDS = ("years", "months", "month", "toggle", "noop")   # the button actions handled here


# --------------------------------------------------------------------- renderers

def _button(label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=data)


def fmt_day(day: date) -> str:
    return f"{day:%d.%m.%Y} ({texts.WEEKDAYS[day.weekday()]})"


def day_mark(day: date, working: bool, special: bool, today: date) -> str:
    if not working:
        label = f"🔴{day.day}"
    elif special:
        label = f"🟡{day.day}"
    else:
        label = str(day.day)
    return f"[{label}]" if day == today else label


def _sessions_text(view: DayView) -> str:
    return "; ".join(f"{market.upper()} {', '.join(f'{start}–{end}' for start, end in hours)}"
                     for market, hours in view.sessions.items() if hours)


def render_day(view: DayView) -> str:
    """One line about a day: status, custom sessions, where the status comes from."""
    detail = ""
    if view.special:
        detail = texts.CAL_SESSIONS.format(sessions=texts.CAL_ONLY_MARKETS.format(
            markets=texts.esc(_sessions_text(view))))
    source = texts.SOURCE.get(view.source, view.source)
    if view.reason:
        source = f"{source} · {texts.esc(view.reason)}"
    return texts.CAL_DAY_LINE.format(day=fmt_day(view.day), status=texts.STATUS[view.status], detail=detail,
                                     source=source)


def day_line(cal: Calendar, day: date) -> str:
    return render_day(day_view(cal, day))


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
    entries = {view.day: view for view in month_days(cal, year, month)}   # the days with an entry

    def mark(day: date) -> str:
        view = entries.get(day)
        if view is not None:
            return day_mark(day, view.working, view.special, today)
        return day_mark(day, cal.day_status(day) == "working", False, today)

    rows: list[list[InlineKeyboardButton]] = [[_button(name, callbacks.noop()) for name in texts.WEEKDAYS]]
    for week in stdcal.Calendar(firstweekday=0).monthdatescalendar(year, month):
        rows.append([_button(" ", callbacks.noop()) if day.month != month
                     else _button(mark(day), callbacks.toggle(day)) for day in week])
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
    if entries:
        lines.append(texts.CAL_SPECIAL_HEADER)
        lines += [render_day(view) for view in entries.values()]
    else:
        lines.append(texts.CAL_NO_SPECIAL)
    return "\n".join(lines), InlineKeyboardMarkup(rows)


# --------------------------------------------------------------------- handlers

def _parse_month_arg(args: list[str], today: date) -> tuple[int, int] | int | None:
    """`/calendar` → this month; `/calendar 2026` → that year; `/calendar 2026-11` → that month."""
    if not args:
        return today.year, today.month
    action = callbacks.parse(f"cal:v1:m:{args[0]}", today) or callbacks.parse(f"cal:v1:y:{args[0]}", today)
    if action is None:
        return None
    return (action.year, action.month) if action.kind == "month" else action.year


async def cmd_calendar(update: Update, context: BotContext) -> None:
    state = context.state
    today = state.clock.today()
    if context.args and context.args[0].lower() == "sync":
        await calendar_sync(update, context)
        return
    target = _parse_month_arg(context.args or [], today)
    if target is None:
        years = callbacks.year_range(today)
        await update.effective_message.reply_text(texts.BAD_ARGS_CALENDAR.format(first=years[0], last=years[-1]))
        return
    if isinstance(target, int):
        text, markup = render_months(target, today)
    else:
        cal, problem = await calendar_or_problem(state)
        if cal is None:
            await update.effective_message.reply_text(texts.esc(problem))
            return
        text, markup = render_month(cal, target[0], target[1], today)
    await update.effective_message.reply_text(text, reply_markup=markup)


async def on_button(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    today = state.clock.today()
    if action.kind == "noop":
        await query.answer()
        return
    if action.kind == "years":
        await query.answer()
        await edit(query, *render_years(today))
        return
    if action.kind == "months":
        await query.answer()
        await edit(query, *render_months(action.year, today))
        return
    if action.kind == "month":
        cal, problem = await calendar_or_problem(state)
        if cal is None:
            await query.answer(problem[:200], show_alert=True)
            return
        await query.answer()
        await edit(query, *render_month(cal, action.year, action.month, today))
        return
    await _toggle(query, action.day, state, today)


async def _toggle(query: CallbackQuery, day: date, state: BotState, today: date) -> None:
    user = query.from_user
    if not state.policy.may_edit_calendar(user_id(user)):
        await query.answer(texts.NOT_ADMIN, show_alert=True)
        return
    actor = actor_name(user)
    try:
        done = await asyncio.to_thread(toggle, str(state.calendar_path), day, actor)
    except (OSError, CalendarError) as exc:
        log.error("event=calendar_write_failed day=%s error=%r", day, str(exc)[:300])
        if isinstance(exc, CalendarReadOnly) or isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
            text = calendar_problem(exc, state.calendar_path)
        else:
            text = texts.CAL_WRITE_FAILED.format(error=str(exc))
        await query.answer(text[:200], show_alert=True)
        return
    old, new = done.old_status, done.new_status
    log.info("event=calendar_toggled day=%s old=%s new=%s user_id=%s", day, old, new, user_id(user))
    await query.answer(texts.CAL_TOGGLED_ANSWER.format(day=f"{day:%d.%m.%Y}", new=texts.STATUS[new]))
    # rendered from the calendar as written (validated by the edit): no second read of the file
    note = texts.CAL_CHANGED.format(actor=texts.esc(actor), day=fmt_day(day), old=texts.STATUS[old],
                                    new=texts.STATUS[new])
    note += "\n" + day_line(done.calendar, day)
    await edit(query, *render_month(done.calendar, day.year, day.month, today, note))
