"""The one command table: name, Russian menu description, Russian /help entry, handler and
access level. It feeds `add_handler` (bot.app), `set_my_commands` (the Telegram menu) and
/help, so a new command is its handler module + one row here + its test.

Buttons: `BUTTONS` maps the kinds of `bot.callbacks.Action` to the feature that handles
them; `on_callback` is the one CallbackQueryHandler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import BotCommand, CallbackQuery, Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot import callbacks, texts
from bot.access import Access
from bot.context import BotContext, BotState
from bot.handlers import alerts, basic, calendar, digest, report, slo, status

log = logging.getLogger("bot")


@dataclass(frozen=True)
class Command:
    name: str
    description: str                                        # the Telegram menu (setMyCommands)
    help: str                                               # its /help entry (HTML, one or more lines)
    handler: Callable[[Update, BotContext], Awaitable[None]]
    access: Access = Access.ALLOWED


async def cmd_help(update: Update, context: BotContext) -> None:
    await update.effective_message.reply_text(help_text())


COMMANDS: tuple[Command, ...] = (
    Command("calendar", "Календарь торговых дней: просмотр и правка", (
        "/calendar — календарь торговых дней. Год → месяц → сетка дней (Пн–Вс). Нажатие на день "
        "переключает его: рабочий ⇄ выходной, изменение сразу записывается в calendar.yml и "
        "подхватывается экспортёром. <code>/calendar 2026-11</code> — сразу нужный месяц.\n"
        "<code>/calendar sync</code> — сейчас же загрузить календарь биржи (ISS) и показать, что изменилось; "
        "ручные правки не трогаются (только администраторы)."), calendar.cmd_calendar),
    Command("status", "Сессии, свежесть данных, активные алерты", (
        "/status — по каждому рынку: идёт ли сессия, когда следующая, возраст последних данных по "
        "каждому датасету (из Prometheus) и активные алерты (из Alertmanager)."), status.cmd_status),
    Command("alerts", "Активные алерты с кнопками «заглушить»", (
        "/alerts — активные алерты; кнопки «🔕 1 ч» и «🔕 до конца дня» создают заглушку "
        "(silence) ровно для этого алерта."), alerts.cmd_alerts),
    Command("silences", "Активные заглушки (silence) и их снятие",
            "/silences — активные заглушки; кнопка «✖ снять» удаляет заглушку.", alerts.cmd_silences),
    Command("report", "График задержки публикации: /report [рынок] [дата]", (
        "/report [рынок] [дата] — PNG-график задержки публикации (SYSTIME − время интервала) по "
        "датасетам за день и таблица макс/мин/средн/медиана. Пример: <code>/report fo 2026-11-25</code>; "
        "без аргументов — все рынки за сегодня."), report.cmd_report),
    Command("digest", "Итоги дня: /digest [дата]", (
        "/digest [дата] [рынок] — итоги дня: HI2 по рынкам, задержка публикации (макс/мин/средн/медиана), "
        "пропущенные интервалы и число алертов за день, затем графики /report. Пример: "
        "<code>/digest 2026-11-25</code>; без аргументов — сегодня. Тот же отчёт бот сам присылает "
        "вечером в заданное время."), digest.cmd_digest),
    Command("slo", "SLO ленты за месяц: /slo [ГГГГ-ММ]", (
        "/slo [ГГГГ-ММ] — SLO ленты за месяц по рынкам и датасетам: доля интервалов вовремя, опоздавшие и "
        "пропущенные, задержка публикации p50/p95/p99 и остаток бюджета ошибок. Пример: "
        "<code>/slo 2026-11</code>; без аргумента — текущий месяц. За прошлый месяц бот присылает отчёт "
        "сам в первый рабочий день месяца."), slo.cmd_slo),
    Command("info", "ID чата и пользователя",
            "/info — ID этого чата, тип чата и ваш ID (для настройки доступа).", basic.cmd_info),
    Command("help", "Что умеет бот", "/help — эта справка.", cmd_help),
)
# Not in the menu or /help: /start, Telegram's greeting command.
HIDDEN: tuple[Command, ...] = (Command("start", "", "", basic.cmd_start),)


def menu() -> list[tuple[str, str]]:
    """(name, description) of every command, in the order of the Telegram menu and /help."""
    return [(c.name, c.description) for c in COMMANDS]


def help_text() -> str:
    return "\n".join([texts.HELP_TITLE, *(c.help for c in COMMANDS)]) + "\n\n" + texts.HELP_LEGEND


async def set_menu(application: Application) -> None:
    """post_init: register the menu with Telegram (a failure is logged, the bot still runs)."""
    try:
        await application.bot.set_my_commands([BotCommand(name, description) for name, description in menu()])
    except TelegramError as exc:
        log.warning("event=set_my_commands_failed error=%r", str(exc))


# --------------------------------------------------------------------- buttons

ButtonHandler = Callable[[CallbackQuery, callbacks.Action, BotState], Awaitable[None]]
BUTTONS: dict[str, ButtonHandler] = {
    **dict.fromkeys(calendar.KINDS, calendar.on_button),
    **dict.fromkeys(alerts.ALERT_KINDS, alerts.on_alerts_button),
    **dict.fromkeys(alerts.SILENCE_KINDS, alerts.on_silences_button),
}


async def on_callback(update: Update, context: BotContext) -> None:
    """Every button press: parsed through `bot.callbacks.parse` only; stale or forged data changes nothing."""
    query = update.callback_query
    state = context.state
    action = callbacks.parse(query.data, state.clock.today())
    handler = BUTTONS.get(action.kind) if action is not None else None
    if handler is None:
        log.warning("event=stale_callback user_id=%s data=%r", query.from_user.id if query.from_user else None,
                    (query.data or "")[:64])
        await query.answer(texts.STALE, show_alert=True)
        return
    await handler(query, action, state)
