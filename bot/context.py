"""What every handler gets: `BotState` (built once by `bot.app.build_application`), held in a
typed `bot_data`, and `BotContext`, whose `.state` replaces untyped `bot_data["..."]` lookups.

`CONTEXT_TYPES` is given to the Application builder; handlers are typed
`async def cmd_x(update: Update, context: BotContext) -> None`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any

from telegram.ext import CallbackContext, ContextTypes, ExtBot

from bot.access import AccessPolicy
from bot.ops import Alertmanager, Prometheus
from exporter.calendar import Calendar, load_calendar
from exporter.clock import Clock


@dataclass
class BotState:
    """Everything handlers need; one per Application."""

    calendar_path: Path
    clock: Clock
    policy: AccessPolicy
    prometheus: Prometheus
    alertmanager: Alertmanager
    endpoints: dict[str, tuple[str, ...]]          # enabled market -> enabled endpoints
    report_time: time | None = None
    report_chat_id: int | None = None
    last_report_day: date | None = None
    daily_checks: int = 0                           # finished runs of the daily-report job
    last_report_check: int | None = None            # daily_checks before the run that posted last
    iss: Any = None                                 # exporter.config.IssConfig, for /calendar sync
    sync_days_ahead: int = 366

    @property
    def markets(self) -> list[str]:
        return list(self.endpoints)

    def calendar(self) -> Calendar:
        return load_calendar(str(self.calendar_path))


class BotData:
    """`application.bot_data`: PTB creates it empty; `build_application` sets `state`."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: BotState | None = None


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]):
    """The callback context of this bot: `context.state` is the Application's `BotState`."""

    @property
    def state(self) -> BotState:
        state = self.bot_data.state
        if state is None:
            raise RuntimeError("BotState not set: build the Application with bot.app.build_application")
        return state


CONTEXT_TYPES = ContextTypes(context=BotContext, bot_data=BotData)
