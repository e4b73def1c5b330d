"""The calendar file as the bot reads it: the calendar now, or a clear Russian sentence
saying why it cannot be read or written (missing, not UTF-8, unreadable, read-only).
Shared by /calendar, /calendar sync, /status and /digest."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot import texts
from bot.context import BotState
from exporter.calendar import Calendar, CalendarError, CalendarReadOnly

log = logging.getLogger("bot")


def calendar_problem(exc: Exception, path: Path | str) -> str:
    """A clear Russian sentence for a calendar that cannot be read or written (plain text;
    the caller escapes it for HTML). Never longer than ~600 characters."""
    where = str(path)
    if len(where) > 120:
        where = "…" + where[-119:]
    message = str(exc)
    if isinstance(exc, CalendarReadOnly):
        return texts.CAL_READ_ONLY.format(path=where)
    if isinstance(exc, FileNotFoundError) or "No such file" in message:
        return texts.CAL_MISSING.format(path=where)
    detail = message.replace(str(path), "").lstrip(": ")
    if len(detail) > 300:
        detail = detail[:299] + "…"
    if "not UTF-8" in message:
        return texts.CAL_NOT_UTF8.format(path=where, error=detail)
    return texts.CAL_UNREADABLE.format(path=where, error=detail)


async def calendar_or_problem(state: BotState) -> tuple[Calendar | None, str | None]:
    """The calendar now, or (None, a plain-text Russian problem)."""
    try:
        return await asyncio.to_thread(state.calendar), None
    except (CalendarError, OSError) as exc:
        log.warning("event=calendar_unreadable path=%s error=%r", state.calendar_path, str(exc)[:300])
        return None, calendar_problem(exc, state.calendar_path)
