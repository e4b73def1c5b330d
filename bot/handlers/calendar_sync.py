"""`/calendar sync` (admins only): merge the exchange's calendar (ISS) into calendar.yml now,
for today … today + calendar.sync.days_ahead, and say what changed; manual edits are kept."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta

from telegram import Update
from telegram.constants import ChatAction

from bot import texts
from bot.context import BotContext, BotState
from bot.handlers.calendar_file import calendar_problem
from bot.handlers.common import actor_name, truncate_lines, user_id
from exporter.calendar import CalendarReadOnly
from exporter.calendar.sync import SyncError, SyncResult, sync_calendar
from exporter.iss import IssClient

log = logging.getLogger("bot")

_SYNC_WORDS = (("working", "рабочий"), ("holiday", "выходной"), ("default", "по умолчанию"),
               ("manual", "вручную"), ("kept", "оставлен"), ("ISS", "биржа"))


def sync_change_line(line: str) -> str:
    """One change line of calendar-sync ("+ 2026-02-07 working: eq 10:00-19:00") in Russian."""
    for english, russian in _SYNC_WORDS:
        line = line.replace(english, russian)
    return texts.esc(line)


def render_sync_result(result: SyncResult, date_from: date, date_till: date, actor: str) -> str:
    lines = [texts.CAL_SYNC_DONE.format(actor=texts.esc(actor), first=f"{date_from:%d.%m.%Y}",
                                        last=f"{date_till:%d.%m.%Y}", added=result.added,
                                        updated=result.updated, kept=result.kept_manual)]
    if result.changes:
        lines += [texts.CAL_SYNC_LEGEND, *(sync_change_line(line) for line in result.changes)]
    else:
        lines.append(texts.CAL_SYNC_NO_CHANGES)
    return truncate_lines(lines)


def _run_sync(state: BotState, date_from: date, date_till: date) -> SyncResult:
    with IssClient(state.iss) as client:
        return sync_calendar(client, str(state.calendar_path), date_from, date_till)


async def calendar_sync(update: Update, context: BotContext) -> None:
    state = context.state
    user = update.effective_user
    message = update.effective_message
    if not state.policy.may_edit_calendar(user_id(user)) or state.iss is None:
        await message.reply_text(texts.CAL_SYNC_NOT_ADMIN)
        return
    today = state.clock.today()
    date_from, date_till = today, today + timedelta(days=state.sync_days_ahead)
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
    try:
        result = await asyncio.to_thread(_run_sync, state, date_from, date_till)
    except (SyncError, OSError, ValueError) as exc:  # CalendarError is a ValueError
        log.warning("event=calendar_sync_failed source=bot user_id=%s error=%r", user_id(user), str(exc)[:300])
        if isinstance(exc, CalendarReadOnly) or isinstance(exc.__cause__, CalendarReadOnly):
            await message.reply_text(texts.esc(calendar_problem(CalendarReadOnly(str(exc)), state.calendar_path)))
            return
        await message.reply_text(texts.CAL_SYNC_FAILED.format(error=texts.esc(str(exc)[:1500])))
        return
    log.info("event=calendar_sync_ok source=bot user_id=%s added=%d updated=%d kept_manual=%d",
             user_id(user), result.added, result.updated, result.kept_manual)
    await message.reply_text(render_sync_result(result, date_from, date_till, actor_name(user)))
