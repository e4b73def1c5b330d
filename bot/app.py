"""`build_application(config)`: the python-telegram-bot Application, built and nothing else.

HTML is the default parse mode (`Defaults`); handlers get a typed `bot.context.BotContext`.
Group -1 holds the access gate; group 0 the commands of the one command table
(`bot.commands.COMMANDS`, also the Telegram menu and /help) and one callback-query
dispatcher. Two repeating jobs: the dead-man check and the daily report.
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Any

from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, Defaults, TypeHandler

from bot import commands
from bot.access import AccessPolicy
from bot.context import CONTEXT_TYPES, BotState
from bot.handlers.basic import error_handler
from bot.handlers.deadman import DeadMan, DeadManCheck, TelegramTokenCheck, deadman_job
from bot.handlers.digest import daily_report_job
from bot.handlers.gate import access_gate, guarded
from bot.ops import Alertmanager, Prometheus
from exporter.calendar import MARKETS
from exporter.clock import Clock, clock_from_env


def _report_time(text: str | None) -> time | None:
    if not text:
        return None
    hours, minutes = (int(part) for part in text.split(":"))
    return time(hours, minutes)


def build_state(config: Any, clock: Clock) -> BotState:
    """The handlers' state for one `exporter.config.Config`."""
    tg = config.telegram
    endpoints = {name: tuple(m.endpoints) for name, m in config.markets.items() if m.enabled and name in MARKETS}
    state = BotState(
        calendar_path=Path(config.calendar.file), clock=clock, policy=AccessPolicy.from_config(tg),
        prometheus=Prometheus(config.prometheus.urls), alertmanager=Alertmanager(config.alertmanager.urls),
        endpoints={m: endpoints[m] for m in MARKETS if m in endpoints},
        report_time=_report_time(tg.report_time), report_chat_id=tg.report_chat_id,
        iss=config.iss, sync_days_ahead=config.calendar.sync.days_ahead,
    )
    if state.report_time is not None and clock.now().time() >= state.report_time:
        state.last_report_day = clock.today()  # started after today's report time: next one tomorrow
    return state


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
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .context_types(CONTEXT_TYPES)
        .concurrent_updates(8)
        .post_init(commands.set_menu)
        .build()
    )
    state = application.bot_data.state = build_state(config, clock)

    application.add_handler(TypeHandler(object, access_gate), group=-1)
    for command in commands.COMMANDS + commands.HIDDEN:
        application.add_handler(CommandHandler(command.name, guarded(command.access, command.handler)))
    application.add_handler(CallbackQueryHandler(commands.on_callback))
    application.add_error_handler(error_handler)

    jobs = application.job_queue
    dm = config.deadman
    if dm.enabled and tg.report_chat_id is not None and jobs is not None:
        check = DeadManCheck(
            DeadMan(threshold=timedelta(seconds=dm.threshold_seconds),
                    reminder=timedelta(hours=dm.reminder_hours) if dm.reminder_hours else None),
            chat_id=tg.report_chat_id, prometheus=state.prometheus, alertmanager=state.alertmanager, clock=clock,
            alert_token_check=TelegramTokenCheck(api_url, tg.alert_token)
            if tg.alert_token and tg.alert_token != token else None)
        interval = max(0.2, clock.real_seconds(dm.check_interval_seconds))
        jobs.run_repeating(deadman_job, interval=interval, first=interval, name="deadman", data=check)
    if state.report_time is not None and state.report_chat_id is not None and jobs is not None:
        interval = min(30.0, max(1.0, clock.real_seconds(60)))
        jobs.run_repeating(daily_report_job, interval=interval, first=interval, name="daily-report")
    return application
