"""/alerts and /silences: Alertmanager's active alerts with «🔕 1 ч» / «🔕 до конца дня»
buttons (a silence matching exactly that alert's labels) and the active silences with
«✖ снять». The lists are rendered again in place after every press."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import callbacks, texts
from bot.context import BotContext, BotState
from bot.handlers.common import actor_name, edit, fmt_moment, truncate_lines, user_id
from bot.ops import Alert, Alertmanager, OpsError, Silence
from exporter.clock import MSK, Clock

log = logging.getLogger("bot")

MAX_LISTED = 10  # alerts/silences with buttons in one message
ALERT_KINDS = ("alerts", "silence")        # button actions of /alerts
SILENCE_KINDS = ("silences", "expire")     # button actions of /silences
_SEVERITY = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


# --------------------------------------------------------------------- renderers

def where(labels: dict[str, str]) -> str:
    parts = [labels[key] for key in ("market", "endpoint") if labels.get(key)]
    return f" · {texts.esc(' '.join(parts))}" if parts else ""


def alert_line(index: int, alert: Alert, clock: Clock, now: datetime) -> str:
    since = fmt_moment(clock.to_virtual(alert.starts_at), now) if alert.starts_at else "?"
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    return texts.ALERT_LINE.format(n=index, severity=_SEVERITY.get(alert.labels.get("severity", ""), "⚪"),
                                   name=texts.esc(alert.name), where=where(alert.labels), since=since,
                                   summary=texts.esc(summary[:300])).rstrip()


def render_alerts(alerts: list[Alert], clock: Clock) -> tuple[str, InlineKeyboardMarkup]:
    now = clock.now()
    refresh = [InlineKeyboardButton(texts.REFRESH, callback_data=callbacks.alerts_refresh())]
    if not alerts:
        return texts.ALERTS_NONE, InlineKeyboardMarkup([refresh])
    lines = [texts.ALERTS_TITLE.format(n=len(alerts))]
    rows = []
    for index, alert in enumerate(alerts, 1):
        lines.append(alert_line(index, alert, clock, now))
        if index <= MAX_LISTED:
            rows.append([
                InlineKeyboardButton(texts.SILENCE_1H.format(n=index),
                                     callback_data=callbacks.silence(alert.fingerprint, "1h")),
                InlineKeyboardButton(texts.SILENCE_EOD.format(n=index),
                                     callback_data=callbacks.silence(alert.fingerprint, "eod")),
            ])
    rows.append(refresh)
    return truncate_lines(lines), InlineKeyboardMarkup(rows)


def matchers_text(matchers: list[dict[str, Any]]) -> str:
    parts = []
    for matcher in matchers:
        op = ("=" if matcher.get("isEqual", True) else "!=") if not matcher.get("isRegex") else (
            "=~" if matcher.get("isEqual", True) else "!~")
        parts.append(f"{matcher.get('name')}{op}{matcher.get('value')}")
    return texts.esc(", ".join(parts))


def render_silences(silences: list[Silence], clock: Clock) -> tuple[str, InlineKeyboardMarkup]:
    now = clock.now()
    refresh = [InlineKeyboardButton(texts.REFRESH, callback_data=callbacks.silences_refresh())]
    if not silences:
        return texts.SILENCES_NONE, InlineKeyboardMarkup([refresh])
    lines = [texts.SILENCES_TITLE.format(n=len(silences))]
    rows = []
    for index, silence in enumerate(silences, 1):
        until = fmt_moment(clock.to_virtual(silence.ends_at), now) if silence.ends_at else "?"
        comment = f" · {texts.esc(silence.comment)}" if silence.comment else ""
        lines.append(texts.SILENCE_LINE.format(n=index, matchers=matchers_text(silence.matchers), until=until,
                                               author=texts.esc(silence.created_by), comment=comment))
        if index <= MAX_LISTED:
            rows.append([InlineKeyboardButton(texts.SILENCE_EXPIRE.format(n=index),
                                              callback_data=callbacks.expire(silence.id))])
    rows.append(refresh)
    return truncate_lines(lines), InlineKeyboardMarkup(rows)


def silence_end(clock: Clock, duration: str) -> datetime:
    """Virtual end of a silence: an hour from now, or the end of today (Moscow)."""
    now = clock.now()
    if duration == "1h":
        return now + timedelta(hours=1)
    return datetime.combine(now.date() + timedelta(days=1), time(0, 0), MSK)


# --------------------------------------------------------------------- commands

async def _reply_from_alertmanager(update: Update, context: BotContext, fetch: Callable[[Alertmanager], list],
                                   render: Callable[[list, Clock], tuple[str, InlineKeyboardMarkup]]) -> None:
    """Fetch from Alertmanager off the event loop and reply with the rendered list, or say
    clearly that Alertmanager is down (the bot stays up)."""
    state = context.state
    try:
        items = await asyncio.to_thread(fetch, state.alertmanager)
    except OpsError as exc:
        await update.effective_message.reply_text(texts.ALERTMANAGER_DOWN.format(reason=texts.esc(str(exc))))
        return
    text, markup = render(items, state.clock)
    await update.effective_message.reply_text(text, reply_markup=markup)


async def cmd_alerts(update: Update, context: BotContext) -> None:
    await _reply_from_alertmanager(update, context, lambda am: am.alerts(), render_alerts)


async def cmd_silences(update: Update, context: BotContext) -> None:
    await _reply_from_alertmanager(update, context, lambda am: am.silences(), render_silences)


# --------------------------------------------------------------------- buttons

async def _silence(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    am = state.alertmanager
    alert = await asyncio.to_thread(am.alert, action.ref)
    if alert is None:
        await query.answer(texts.ALERT_GONE)
        return
    actor = actor_name(query.from_user)
    now = state.clock.now()
    until = silence_end(state.clock, action.duration)
    silence_id = await asyncio.to_thread(
        am.create_silence, alert.labels, state.clock.to_real(now), state.clock.to_real(until),
        actor, texts.SILENCE_COMMENT.format(actor=actor))
    log.info("event=silence_created id=%s alertname=%s user_id=%s", silence_id, alert.name,
             user_id(query.from_user))
    until_text = fmt_moment(until, now)
    await query.answer(texts.SILENCED_ANSWER.format(until=until_text))
    await query.message.reply_text(texts.SILENCED_NOTE.format(
        actor=texts.esc(actor), name=texts.esc(alert.name), where=where(alert.labels), until=until_text))


async def on_alerts_button(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    try:
        if action.kind == "silence":
            await _silence(query, action, state)
        else:
            await query.answer()
        alerts = await asyncio.to_thread(state.alertmanager.alerts)
        if action.kind == "silence":
            # Alertmanager marks the alert silenced a moment later; we already know it is.
            alerts = [a for a in alerts if a.fingerprint != action.ref]
    except OpsError as exc:
        await query.answer(texts.ALERTMANAGER_DOWN.format(reason=str(exc))[:200], show_alert=True)
        return
    await edit(query, *render_alerts(alerts, state.clock))


async def on_silences_button(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    am = state.alertmanager
    try:
        if action.kind == "expire":
            silence = await asyncio.to_thread(am.silence, action.ref)
            if silence is None or silence.state != "active":
                await query.answer(texts.STALE)
            else:
                await asyncio.to_thread(am.expire_silence, action.ref)
                log.info("event=silence_expired id=%s user_id=%s", action.ref, user_id(query.from_user))
                await query.answer(texts.SILENCE_EXPIRED_ANSWER)
                await query.message.reply_text(texts.SILENCE_EXPIRED_NOTE.format(
                    actor=texts.esc(actor_name(query.from_user)), matchers=matchers_text(silence.matchers)))
        else:
            await query.answer()
        silences = await asyncio.to_thread(am.silences)
    except OpsError as exc:
        await query.answer(texts.ALERTMANAGER_DOWN.format(reason=str(exc))[:200], show_alert=True)
        return
    await edit(query, *render_silences(silences, state.clock))
