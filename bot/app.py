"""The python-telegram-bot Application: every handler, registered in `build_application()`.

Group -1 holds the access gate (refuses and stops unauthorised updates before anything
else runs); group 0 holds the commands and one callback-query dispatcher that parses
button data through `bot.callbacks.parse` only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from telegram import BotCommand, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update, User
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    TypeHandler,
)

from bot import calendar_ui, callbacks, texts
from bot.access import AccessPolicy
from bot.deadman import DeadMan, TelegramTokenCheck, probe
from bot.digest import build_digest, digest_markets, png_reports, render_digest
from bot.ops import Alert, Alertmanager, OpsError, Prometheus, Silence
from bot.report import build_report
from bot.slo import build_slo, first_working_day, parse_month, previous_month, render_slo
from exporter.calendar import MARKETS, Calendar, CalendarError, load_calendar
from exporter.calendar_edit import CalendarReadOnly, toggle_day
from exporter.calendar_sync import SyncError, SyncResult, sync_calendar
from exporter.clock import MSK, Clock, clock_from_env

log = logging.getLogger("bot")

MAX_LISTED = 10  # alerts/silences with buttons in one message


@dataclass
class BotState:
    """Everything handlers need, kept in application.bot_data["state"]."""

    calendar_path: Path
    clock: Clock
    policy: AccessPolicy
    prometheus: Prometheus
    alertmanager: Alertmanager
    endpoints: dict[str, tuple[str, ...]]          # enabled market -> enabled endpoints
    report_time: time | None = None
    report_chat_id: int | None = None
    last_report_day: date | None = None
    iss: Any = None                                 # exporter.config.IssConfig, for /calendar sync
    deadman: DeadMan | None = None
    deadman_chat_id: int | None = None
    alert_token_check: Any = None                   # bot.deadman.TelegramTokenCheck, or None
    sync_days_ahead: int = 366
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def markets(self) -> list[str]:
        return list(self.endpoints)

    def calendar(self) -> Calendar:
        return load_calendar(str(self.calendar_path))


def _state(context: ContextTypes.DEFAULT_TYPE) -> BotState:
    return context.application.bot_data["state"]


def actor_name(user: User | None) -> str:
    if user is None:
        return "?"
    handle = f"@{user.username}, " if user.username else ""
    return f"{user.full_name} ({handle}id {user.id})"


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} с"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} мин" + (f" {sec} с" if sec and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} ч {minutes} мин"
    return f"{hours // 24} д {hours % 24} ч"


def _fmt_moment(moment: datetime, now: datetime) -> str:
    local = moment.astimezone(MSK)
    return f"{local:%H:%M}" if local.date() == now.date() else f"{local:%d.%m %H:%M}"


def _truncate_lines(lines: list[str], limit: int = 3900) -> str:
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        if size + len(line) + 40 > limit:
            kept.append(texts.TRUNCATED.format(n=len(lines) - index))
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
    except BadRequest as exc:
        # A double tap or two concurrent presses render the same thing: nothing to do.
        if "not modified" not in str(exc).lower():
            raise


# --------------------------------------------------------------------- access gate

async def access_gate(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not isinstance(update, Update):
        raise ApplicationHandlerStop
    state = _state(context)
    if state.policy.allows_update(update):
        return
    chat = update.effective_chat
    user = update.effective_user
    log.warning("event=access_refused chat_id=%s user_id=%s", chat.id if chat else None,
                user.id if user else None)
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(texts.REFUSED_SHORT, show_alert=True)
        elif update.effective_message is not None and chat is not None and user is not None:
            await update.effective_message.reply_text(
                texts.REFUSED.format(chat_id=chat.id, user_id=user.id), parse_mode=ParseMode.HTML)
    except TelegramError as exc:
        log.warning("event=refusal_not_sent error=%r", str(exc))
    raise ApplicationHandlerStop


# --------------------------------------------------------------------- simple commands

async def cmd_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(texts.START)


async def cmd_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(texts.HELP, parse_mode=ParseMode.HTML)


async def cmd_info(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat, user = update.effective_chat, update.effective_user
    title = f", «{texts.esc(chat.title)}»" if chat.title else ""
    username = f" (@{texts.esc(user.username)})" if user.username else ""
    await update.effective_message.reply_text(
        texts.INFO.format(chat_id=chat.id, chat_type=chat.type, title=title, user_id=user.id, username=username),
        parse_mode=ParseMode.HTML)


# --------------------------------------------------------------------- calendar

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


async def _calendar_or_problem(state: BotState) -> tuple[Calendar | None, str | None]:
    try:
        return await asyncio.to_thread(state.calendar), None
    except (CalendarError, OSError) as exc:
        log.warning("event=calendar_unreadable path=%s error=%r", state.calendar_path, str(exc)[:300])
        return None, calendar_problem(exc, state.calendar_path)


def _parse_month_arg(args: list[str], today: date) -> tuple[int, int] | int | None:
    """`/calendar` → this month; `/calendar 2026` → that year; `/calendar 2026-11` → that month."""
    if not args:
        return today.year, today.month
    action = callbacks.parse(f"cal:v1:m:{args[0]}", today) or callbacks.parse(f"cal:v1:y:{args[0]}", today)
    if action is None:
        return None
    return (action.year, action.month) if action.kind == "month" else action.year


async def cmd_calendar(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    state = _state(context)
    today = state.clock.today()
    if context.args and context.args[0].lower() == "sync":
        await _calendar_sync(update, context, state)
        return
    target = _parse_month_arg(context.args or [], today)
    if target is None:
        years = callbacks.year_range(today)
        await update.effective_message.reply_text(
            texts.BAD_ARGS_CALENDAR.format(first=years[0], last=years[-1]), parse_mode=ParseMode.HTML)
        return
    if isinstance(target, int):
        text, markup = calendar_ui.render_months(target, today)
    else:
        cal, problem = await _calendar_or_problem(state)
        if cal is None:
            await update.effective_message.reply_text(problem)
            return
        text, markup = calendar_ui.render_month(cal, target[0], target[1], today)
    await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


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
    return _truncate_lines(lines)


def _run_sync(state: BotState, date_from: date, date_till: date) -> SyncResult:
    from exporter.iss import IssClient

    with IssClient(state.iss) as client:
        return sync_calendar(client, str(state.calendar_path), date_from, date_till)


async def _calendar_sync(update: Update, context: ContextTypes.DEFAULT_TYPE, state: BotState) -> None:
    """`/calendar sync`: merge the exchange's calendar now (admins only)."""
    user = update.effective_user
    message = update.effective_message
    if not state.policy.may_edit_calendar(user.id if user else None) or state.iss is None:
        await message.reply_text(texts.CAL_SYNC_NOT_ADMIN)
        return
    today = state.clock.today()
    date_from, date_till = today, today + timedelta(days=state.sync_days_ahead)
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
    try:
        result = await asyncio.to_thread(_run_sync, state, date_from, date_till)
    except (SyncError, OSError, ValueError) as exc:  # CalendarError is a ValueError
        log.warning("event=calendar_sync_failed source=bot user_id=%s error=%r", user.id if user else None,
                    str(exc)[:300])
        if isinstance(exc, CalendarReadOnly) or isinstance(exc.__cause__, CalendarReadOnly):
            await message.reply_text(calendar_problem(CalendarReadOnly(str(exc)), state.calendar_path))
            return
        await message.reply_text(texts.CAL_SYNC_FAILED.format(error=texts.esc(str(exc)[:1500])),
                                 parse_mode=ParseMode.HTML)
        return
    log.info("event=calendar_sync_ok source=bot user_id=%s added=%d updated=%d kept_manual=%d",
             user.id if user else None, result.added, result.updated, result.kept_manual)
    await message.reply_text(render_sync_result(result, date_from, date_till, actor_name(user)),
                             parse_mode=ParseMode.HTML)


async def _on_calendar(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    today = state.clock.today()
    if action.kind == "noop":
        await query.answer()
        return
    if action.kind == "years":
        await query.answer()
        await _edit(query, *calendar_ui.render_years(today))
        return
    if action.kind == "months":
        await query.answer()
        await _edit(query, *calendar_ui.render_months(action.year, today))
        return
    if action.kind == "month":
        cal, problem = await _calendar_or_problem(state)
        if cal is None:
            await query.answer(problem[:200], show_alert=True)
            return
        await query.answer()
        await _edit(query, *calendar_ui.render_month(cal, action.year, action.month, today))
        return
    # toggle
    user = query.from_user
    if not state.policy.may_edit_calendar(user.id if user else None):
        await query.answer(texts.NOT_ADMIN, show_alert=True)
        return
    actor = actor_name(user)
    try:
        old, new = await asyncio.to_thread(toggle_day, str(state.calendar_path), action.day, actor)
    except (OSError, CalendarError) as exc:
        log.error("event=calendar_write_failed day=%s error=%r", action.day, str(exc)[:300])
        if isinstance(exc, CalendarReadOnly) or isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
            text = calendar_problem(exc, state.calendar_path)
        else:
            text = texts.CAL_WRITE_FAILED.format(error=str(exc))
        await query.answer(text[:200], show_alert=True)
        return
    log.info("event=calendar_toggled day=%s old=%s new=%s user_id=%s", action.day, old, new,
             user.id if user else None)
    await query.answer(texts.CAL_TOGGLED_ANSWER.format(day=f"{action.day:%d.%m.%Y}", new=texts.STATUS[new]))
    cal, problem = await _calendar_or_problem(state)
    if cal is None:  # changed on disk right after our write
        await _edit(query, texts.esc(problem), None)
        return
    note = texts.CAL_CHANGED.format(actor=texts.esc(actor), day=calendar_ui.fmt_day(action.day),
                                    old=texts.STATUS[old], new=texts.STATUS[new])
    note += "\n" + calendar_ui.day_line(cal, action.day)
    await _edit(query, *calendar_ui.render_month(cal, action.day.year, action.day.month, today, note))


# --------------------------------------------------------------------- status

def _where(labels: dict[str, str]) -> str:
    parts = [labels[key] for key in ("market", "endpoint") if labels.get(key)]
    return f" · {texts.esc(' '.join(parts))}" if parts else ""


_SEVERITY = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


def _alert_line(index: int, alert: Alert, clock: Clock, now: datetime) -> str:
    since = _fmt_moment(clock.to_virtual(alert.starts_at), now) if alert.starts_at else "?"
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    return texts.ALERT_LINE.format(n=index, severity=_SEVERITY.get(alert.labels.get("severity", ""), "⚪"),
                                   name=texts.esc(alert.name), where=_where(alert.labels), since=since,
                                   summary=texts.esc(summary[:300])).rstrip()


def _series_map(samples: list) -> dict[tuple[str, str], float]:
    return {(s.labels.get("market", ""), s.labels.get("endpoint", "")): s.value for s in samples}


def render_status(state: BotState, cal: Calendar, now: datetime, lag: dict | None, systime: dict | None,
                  prom_error: str | None, alerts: list[Alert] | None, am_error: str | None) -> str:
    lines = [texts.STATUS_TITLE.format(now=f"{now:%d.%m.%Y %H:%M}")]
    for market in state.markets:
        session = cal.current_session(market, now)
        if session is not None:
            head = texts.STATUS_IN_SESSION.format(end=f"{session.end:%H:%M}")
        else:
            upcoming = cal.next_session_start(market, now)
            head = texts.STATUS_OUT_OF_SESSION + ", " + (
                texts.STATUS_NEXT.format(start=_fmt_moment(upcoming, now)) if upcoming else texts.STATUS_NO_NEXT)
        lines += ["", f"<b>{texts.MARKET_LABELS[market]}</b> — {head}"]
        if prom_error is not None:
            continue
        endpoints = list(state.endpoints[market])
        endpoints += sorted({e for (m, e) in {**(lag or {}), **(systime or {})} if m == market} - set(endpoints))
        for endpoint in endpoints:
            last = (systime or {}).get((market, endpoint))
            if not last:
                age = texts.STATUS_NO_DATA
            else:
                last_moment = datetime.fromtimestamp(last, MSK)
                lag_value = (lag or {}).get((market, endpoint))
                age = texts.STATUS_AGE.format(ago=_fmt_duration(now.timestamp() - last),
                                              at=_fmt_moment(last_moment, now),
                                              lag=_fmt_duration(lag_value) if lag_value is not None else "?")
            lines.append(texts.STATUS_ENDPOINT.format(endpoint=texts.esc(endpoint), age=age))
    lines.append("")
    if prom_error is not None:
        lines.append(texts.PROMETHEUS_DOWN.format(reason=texts.esc(prom_error)))
    if am_error is not None:
        lines.append(texts.ALERTMANAGER_DOWN.format(reason=texts.esc(am_error)))
    elif alerts:
        lines.append(texts.STATUS_ALERTS.format(n=len(alerts)))
        lines += [_alert_line(i, a, state.clock, now) for i, a in enumerate(alerts, 1)]
    else:
        lines.append(texts.STATUS_NO_ALERTS)
    return _truncate_lines(lines)


async def cmd_status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    state = _state(context)
    now = state.clock.now()
    cal, problem = await _calendar_or_problem(state)
    if cal is None:
        await update.effective_message.reply_text(problem)
        return
    lag = systime = None
    prom_error = am_error = None
    alerts = None
    try:
        lag = _series_map(await asyncio.to_thread(state.prometheus.query, "algopack_lag_seconds"))
        systime = _series_map(await asyncio.to_thread(state.prometheus.query,
                                                      "algopack_last_systime_timestamp_seconds"))
    except OpsError as exc:
        prom_error = str(exc)
    try:
        alerts = await asyncio.to_thread(state.alertmanager.alerts)
    except OpsError as exc:
        am_error = str(exc)
    text = render_status(state, cal, now, lag, systime, prom_error, alerts, am_error)
    await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, disable_web_page_preview=True)


# --------------------------------------------------------------------- alerts / silences

def render_alerts(alerts: list[Alert], clock: Clock) -> tuple[str, InlineKeyboardMarkup]:
    now = clock.now()
    if not alerts:
        return texts.ALERTS_NONE, InlineKeyboardMarkup([[InlineKeyboardButton(
            texts.REFRESH, callback_data=callbacks.alerts_refresh())]])
    lines = [texts.ALERTS_TITLE.format(n=len(alerts))]
    rows = []
    for index, alert in enumerate(alerts, 1):
        lines.append(_alert_line(index, alert, clock, now))
        if index <= MAX_LISTED:
            rows.append([
                InlineKeyboardButton(texts.SILENCE_1H.format(n=index),
                                     callback_data=callbacks.silence(alert.fingerprint, "1h")),
                InlineKeyboardButton(texts.SILENCE_EOD.format(n=index),
                                     callback_data=callbacks.silence(alert.fingerprint, "eod")),
            ])
    rows.append([InlineKeyboardButton(texts.REFRESH, callback_data=callbacks.alerts_refresh())])
    return _truncate_lines(lines), InlineKeyboardMarkup(rows)


def _matchers_text(matchers: list[dict[str, Any]]) -> str:
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
        until = _fmt_moment(clock.to_virtual(silence.ends_at), now) if silence.ends_at else "?"
        comment = f" · {texts.esc(silence.comment)}" if silence.comment else ""
        lines.append(texts.SILENCE_LINE.format(n=index, matchers=_matchers_text(silence.matchers), until=until,
                                               author=texts.esc(silence.created_by), comment=comment))
        if index <= MAX_LISTED:
            rows.append([InlineKeyboardButton(texts.SILENCE_EXPIRE.format(n=index),
                                              callback_data=callbacks.expire(silence.id))])
    rows.append(refresh)
    return _truncate_lines(lines), InlineKeyboardMarkup(rows)


async def _reply_from_alertmanager(update: Update, context: ContextTypes.DEFAULT_TYPE, fetch, render) -> None:
    """Fetch from Alertmanager off the event loop and reply with the rendered list, or say
    clearly that Alertmanager is down (the bot stays up)."""
    state = _state(context)
    try:
        items = await asyncio.to_thread(fetch, state.alertmanager)
    except OpsError as exc:
        await update.effective_message.reply_text(texts.ALERTMANAGER_DOWN.format(reason=texts.esc(str(exc))))
        return
    text, markup = render(items, state.clock)
    await update.effective_message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def cmd_alerts(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _reply_from_alertmanager(update, context, lambda am: am.alerts(), render_alerts)


async def cmd_silences(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _reply_from_alertmanager(update, context, lambda am: am.silences(), render_silences)


def silence_end(clock: Clock, duration: str) -> datetime:
    """Virtual end of a silence: an hour from now, or the end of today (Moscow)."""
    now = clock.now()
    if duration == "1h":
        return now + timedelta(hours=1)
    return datetime.combine(now.date() + timedelta(days=1), time(0, 0), MSK)


async def _on_alerts(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    am = state.alertmanager
    try:
        if action.kind == "silence":
            alert = await asyncio.to_thread(am.alert, action.ref)
            if alert is None:
                await query.answer(texts.ALERT_GONE)
            else:
                actor = actor_name(query.from_user)
                now = state.clock.now()
                until = silence_end(state.clock, action.duration)
                silence_id = await asyncio.to_thread(
                    am.create_silence, alert.labels, state.clock.to_real(now), state.clock.to_real(until),
                    actor, texts.SILENCE_COMMENT.format(actor=actor))
                log.info("event=silence_created id=%s alertname=%s user_id=%s", silence_id, alert.name,
                         query.from_user.id if query.from_user else None)
                until_text = _fmt_moment(until, now)
                await query.answer(texts.SILENCED_ANSWER.format(until=until_text))
                await query.message.reply_text(
                    texts.SILENCED_NOTE.format(actor=texts.esc(actor), name=texts.esc(alert.name),
                                               where=_where(alert.labels), until=until_text),
                    parse_mode=ParseMode.HTML)
        else:
            await query.answer()
        alerts = await asyncio.to_thread(am.alerts)
        if action.kind == "silence":
            # Alertmanager marks the alert silenced a moment later; we already know it is.
            alerts = [a for a in alerts if a.fingerprint != action.ref]
    except OpsError as exc:
        await query.answer(texts.ALERTMANAGER_DOWN.format(reason=str(exc))[:200], show_alert=True)
        return
    await _edit(query, *render_alerts(alerts, state.clock))


async def _on_silences(query: CallbackQuery, action: callbacks.Action, state: BotState) -> None:
    am = state.alertmanager
    try:
        if action.kind == "expire":
            silence = await asyncio.to_thread(am.silence, action.ref)
            if silence is None or silence.state != "active":
                await query.answer(texts.STALE)
            else:
                await asyncio.to_thread(am.expire_silence, action.ref)
                actor = actor_name(query.from_user)
                log.info("event=silence_expired id=%s user_id=%s", action.ref,
                         query.from_user.id if query.from_user else None)
                await query.answer(texts.SILENCE_EXPIRED_ANSWER)
                await query.message.reply_text(
                    texts.SILENCE_EXPIRED_NOTE.format(actor=texts.esc(actor),
                                                      matchers=_matchers_text(silence.matchers)),
                    parse_mode=ParseMode.HTML)
        else:
            await query.answer()
        silences = await asyncio.to_thread(am.silences)
    except OpsError as exc:
        await query.answer(texts.ALERTMANAGER_DOWN.format(reason=str(exc))[:200], show_alert=True)
        return
    await _edit(query, *render_silences(silences, state.clock))


# --------------------------------------------------------------------- callback dispatcher

async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    state = _state(context)
    action = callbacks.parse(query.data, state.clock.today())
    if action is None:
        log.warning("event=stale_callback user_id=%s data=%r", query.from_user.id if query.from_user else None,
                    (query.data or "")[:64])
        await query.answer(texts.STALE, show_alert=True)
        return
    if action.kind in ("years", "months", "month", "toggle", "noop"):
        await _on_calendar(query, action, state)
    elif action.kind in ("alerts", "silence"):
        await _on_alerts(query, action, state)
    else:
        await _on_silences(query, action, state)


# --------------------------------------------------------------------- report

def parse_report_args(args: list[str], markets: list[str], today: date) -> tuple[list[str], date] | None:
    chosen: list[str] = []
    day = today
    for arg in args:
        word = arg.strip().lower()
        if word in markets:
            chosen.append(word)
            continue
        parsed = None
        for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
            try:
                parsed = datetime.strptime(word, fmt).date()
                break
            except ValueError:
                continue
        if parsed is None or parsed > today or parsed.year < today.year - 1:
            return None
        day = parsed
    return (chosen or list(markets)), day


async def send_reports(bot: Any, state: BotState, chat_id: int, markets: list[str], day: date) -> None:
    for market in markets:
        try:
            report = await asyncio.to_thread(build_report, state.prometheus, state.clock, market, day)
        except OpsError as exc:
            await bot.send_message(chat_id, texts.PROMETHEUS_DOWN.format(reason=texts.esc(str(exc))),
                                   parse_mode=ParseMode.HTML)
            return
        if report.png is None:
            await bot.send_message(chat_id, report.caption, parse_mode=ParseMode.HTML)
        else:
            await bot.send_photo(chat_id, photo=report.png, caption=report.caption, parse_mode=ParseMode.HTML,
                                 filename=f"report-{market}-{day.isoformat()}.png")


async def cmd_report(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    state = _state(context)
    parsed = parse_report_args(context.args or [], state.markets, state.clock.today())
    if parsed is None:
        await update.effective_message.reply_text(texts.REPORT_BAD_ARGS, parse_mode=ParseMode.HTML)
        return
    markets, day = parsed
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.UPLOAD_PHOTO)
    await send_reports(context.bot, state, update.effective_chat.id, markets, day)


async def send_digest(bot: Any, state: BotState, chat_id: int, markets: list[str], day: date) -> None:
    """The digest text, then /report's PNG of every market that had data that day."""
    digest = await asyncio.to_thread(build_digest, state.prometheus, state.clock, markets, day)
    await bot.send_message(chat_id, render_digest(digest), parse_mode=ParseMode.HTML)
    if digest.error is not None:
        log.warning("event=digest_failed day=%s error=%r", day, digest.error)
        return
    for report in await asyncio.to_thread(png_reports, digest, state.clock):
        await bot.send_photo(chat_id, photo=report.png, caption=report.caption, parse_mode=ParseMode.HTML,
                             filename=f"report-{report.market}-{day.isoformat()}.png")


async def cmd_digest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`/digest [date] [market…]`: the evening digest on demand."""
    state = _state(context)
    args = context.args or []
    parsed = parse_report_args(args, state.markets, state.clock.today())
    if parsed is None:
        await update.effective_message.reply_text(texts.DIGEST_BAD_ARGS, parse_mode=ParseMode.HTML)
        return
    markets, day = parsed
    requested = markets if any(arg.strip().lower() in state.markets for arg in args) else None
    cal, problem = await _calendar_or_problem(state)
    if cal is None:
        await update.effective_message.reply_text(problem)
        return
    working = [m for m in state.markets if cal.is_working_day(day, m)]
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.UPLOAD_PHOTO)
    await send_digest(context.bot, state, update.effective_chat.id,
                      digest_markets(requested, working, state.markets), day)


async def send_slo(bot: Any, state: BotState, chat_id: int, year: int, month: int) -> None:
    report = await asyncio.to_thread(build_slo, state.prometheus, state.clock, year, month)
    if report.error is not None:
        log.warning("event=slo_failed month=%04d-%02d error=%r", year, month, report.error)
    await bot.send_message(chat_id, render_slo(report), parse_mode=ParseMode.HTML)


async def cmd_slo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`/slo [YYYY-MM]`: the month's feed SLO (the current month so far by default)."""
    state = _state(context)
    parsed = parse_month(context.args or [], state.clock.today())
    if parsed is None:
        await update.effective_message.reply_text(texts.SLO_BAD_ARGS, parse_mode=ParseMode.HTML)
        return
    await send_slo(context.bot, state, update.effective_chat.id, *parsed)


async def daily_report_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Runs every few (real) seconds; once per virtual day after report_time posts the digest
    of the markets trading that day followed by their /report PNGs (nothing on a day off)."""
    state = _state(context)
    now = state.clock.now()
    if state.report_time is None or state.report_chat_id is None or now.time() < state.report_time:
        return
    if state.last_report_day == now.date():
        return
    state.last_report_day = now.date()
    cal = await asyncio.to_thread(state.calendar)
    markets = [m for m in state.markets if cal.is_working_day(now.date(), m)]
    log.info("event=daily_report day=%s markets=%s", now.date(), ",".join(markets) or "-")
    if markets:
        await send_digest(context.bot, state, state.report_chat_id, markets, now.date())
    if first_working_day(cal, now.date(), state.markets):
        year, month = previous_month(now.date())
        log.info("event=monthly_slo month=%04d-%02d", year, month)
        await send_slo(context.bot, state, state.report_chat_id, year, month)


async def deadman_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every check interval: probe Prometheus, the exporter target, Alertmanager and the
    watchdog; post what bot/deadman.py decides (usually nothing)."""
    state = _state(context)
    problems = await asyncio.to_thread(probe, state.prometheus, state.alertmanager, state.alert_token_check)
    now = state.clock.now()
    for message in state.deadman.observe(problems, now):
        log.warning("event=deadman_message problems=%s", ",".join(p.key for p in problems) or "-")
        try:
            await context.bot.send_message(state.deadman_chat_id, message, parse_mode=ParseMode.HTML)
        except TelegramError as exc:
            # A revoked token or no network: nothing to post to; the external heartbeat covers it.
            log.error("event=deadman_send_failed error=%r", str(exc))


# --------------------------------------------------------------------- wiring

async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    log.error("event=handler_error error=%r", str(context.error), exc_info=context.error)
    if not isinstance(update, Update):
        return
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(texts.INTERNAL_ERROR)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(texts.INTERNAL_ERROR)
    except TelegramError:
        pass


async def _post_init(application: Application) -> None:
    try:
        await application.bot.set_my_commands([BotCommand(name, description) for name, description in texts.COMMANDS])
    except TelegramError as exc:
        log.warning("event=set_my_commands_failed error=%r", str(exc))


def build_application(config: Any, clock: Clock | None = None, token: str | None = None) -> Application:
    """The bot for one `exporter.config.Config` (telegram, prometheus, alertmanager, calendar)."""
    clock = clock or clock_from_env()
    tg = config.telegram
    token = token or tg.bot_token
    if not token:
        raise ValueError("no bot token: set TELEGRAM_BOT_TOKEN_BOT (or TELEGRAM_BOT_TOKEN)")
    api_url = tg.api_url.rstrip("/")
    application = (
        Application.builder()
        .token(token)
        .base_url(api_url + "/bot")
        .base_file_url(api_url + "/file/bot")
        .concurrent_updates(8)
        .post_init(_post_init)
        .build()
    )
    endpoints = {name: tuple(m.endpoints) for name, m in config.markets.items() if m.enabled and name in MARKETS}
    report_time = None
    if tg.report_time:
        hours, minutes = (int(part) for part in tg.report_time.split(":"))
        report_time = time(hours, minutes)
    state = BotState(
        calendar_path=Path(config.calendar.file), clock=clock, policy=AccessPolicy.from_config(tg),
        prometheus=Prometheus(config.prometheus.urls), alertmanager=Alertmanager(config.alertmanager.urls),
        endpoints={m: endpoints[m] for m in MARKETS if m in endpoints},
        report_time=report_time, report_chat_id=tg.report_chat_id,
        iss=config.iss, sync_days_ahead=config.calendar.sync.days_ahead,
    )
    if report_time is not None and clock.now().time() >= report_time:
        state.last_report_day = clock.today()  # started after today's report time: next one tomorrow
    application.bot_data["state"] = state

    application.add_handler(TypeHandler(object, access_gate), group=-1)
    for name, handler in (("start", cmd_start), ("help", cmd_help), ("info", cmd_info),
                          ("calendar", cmd_calendar), ("status", cmd_status), ("alerts", cmd_alerts),
                          ("silences", cmd_silences), ("report", cmd_report), ("digest", cmd_digest),
                          ("slo", cmd_slo)):
        application.add_handler(CommandHandler(name, handler))
    application.add_handler(CallbackQueryHandler(on_callback))
    application.add_error_handler(error_handler)

    dm = config.deadman
    if dm.enabled and tg.report_chat_id is not None and application.job_queue is not None:
        state.deadman = DeadMan(threshold=timedelta(seconds=dm.threshold_seconds),
                                reminder=timedelta(hours=dm.reminder_hours) if dm.reminder_hours else None)
        state.deadman_chat_id = tg.report_chat_id
        if tg.alert_token and tg.alert_token != token:
            state.alert_token_check = TelegramTokenCheck(api_url, tg.alert_token)
        interval = max(0.2, clock.real_seconds(dm.check_interval_seconds))
        application.job_queue.run_repeating(deadman_job, interval=interval, first=interval, name="deadman")
    if report_time is not None and state.report_chat_id is not None and application.job_queue is not None:
        interval = min(30.0, max(1.0, clock.real_seconds(60)))
        application.job_queue.run_repeating(daily_report_job, interval=interval, first=interval,
                                            name="daily-report")
    return application
