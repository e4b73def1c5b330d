"""The one command table feeds add_handler, setMyCommands and /help; HTML is the default
parse mode; handlers get the typed context. Built, never run (no network)."""

from __future__ import annotations

from datetime import datetime

import pytest
import yaml
from telegram.constants import ParseMode
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import commands, texts
from bot.access import Access
from bot.app import build_application
from bot.context import BotContext, BotData, BotState
from exporter.clock import MSK, ManualClock
from exporter.config import load_config


@pytest.fixture()
def application(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({
        "calendar": {"file": str(tmp_path / "calendar.yml")},
        "telegram": {"api_url": "http://127.0.0.1:1", "allowed_user_ids": [42]},
        "prometheus": {"url": "http://127.0.0.1:1"}, "alertmanager": {"url": "http://127.0.0.1:1"},
    }), encoding="utf-8")
    config = load_config(path, environ={"TELEGRAM_BOT_TOKEN_BOT": "1:x", "TELEGRAM_GROUP_CHATID": "-100"})
    return build_application(config, clock=ManualClock(datetime(2026, 11, 25, 12, 0, tzinfo=MSK)))


def test_every_command_of_the_table_is_registered_once(application):
    registered = [name for handler in application.handlers[0] if isinstance(handler, CommandHandler)
                  for name in handler.commands]
    table = [c.name for c in commands.COMMANDS + commands.HIDDEN]
    assert sorted(registered) == sorted(table) and len(set(table)) == len(table)
    assert sum(isinstance(h, CallbackQueryHandler) for h in application.handlers[0]) == 1


def test_menu_and_help_come_from_the_table():
    assert commands.menu() == [(c.name, c.description) for c in commands.COMMANDS]
    text = commands.help_text()
    assert text.startswith(texts.HELP_TITLE) and text.endswith(texts.HELP_LEGEND)
    for command in commands.COMMANDS:
        assert command.help.startswith(f"/{command.name}") and command.help in text
        assert 0 < len(command.description) <= 256 and command.access in Access


def test_html_is_the_default_and_the_context_is_typed(application):
    assert application.bot.defaults.parse_mode == ParseMode.HTML
    assert application.context_types.context is BotContext
    assert isinstance(application.bot_data, BotData) and isinstance(application.bot_data.state, BotState)


def test_every_button_kind_has_one_feature():
    kinds = {"years", "months", "month", "toggle", "noop", "alerts", "silence", "silences", "expire"}
    assert set(commands.BUTTONS) == kinds
