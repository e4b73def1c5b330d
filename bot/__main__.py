"""python -m bot --config.file=PATH [--log.level=info] [--clock=SPEC] [--poll-timeout=SECONDS]

Token: TELEGRAM_BOT_TOKEN_BOT (the bot's own), else TELEGRAM_BOT_TOKEN (shared with
Alertmanager — works, but see docs/bot.md for the trade-off). Bot API URL: telegram.api_url,
overridden by env TELEGRAM_API_URL (the fake server in tests and the demo).
"""

from __future__ import annotations

import argparse
import logging
import sys

from telegram import Update

from exporter.clock import clock_from_env
from exporter.config import ConfigError, load_config


class _RedactToken(logging.Filter):
    """httpx logs request URLs, which contain the token: never let it reach the log."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token and self.token in message:
            record.msg = message.replace(self.token, "<token>")
            record.args = None
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="ALGOPACK monitor Telegram bot")
    parser.add_argument("--config.file", dest="config_file", default="config.yml")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--clock", default=None, help="clock spec (default: env ALGOPACK_CLOCK or system)")
    parser.add_argument("--poll-timeout", dest="poll_timeout", type=float, default=10.0,
                        help="getUpdates long-poll timeout, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    errors = config.telegram.check_secrets()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2
    redact = _RedactToken(config.telegram.bot_token or "")
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    if config.telegram.bot_token == config.telegram.alert_token and "TELEGRAM_BOT_TOKEN_BOT" not in _env():
        logging.getLogger("bot").warning(
            "event=shared_token msg=\"TELEGRAM_BOT_TOKEN_BOT not set; using the Alertmanager token "
            "(alerts still work, but no other process may poll getUpdates with it)\"")

    from bot.app import build_application

    try:
        clock = clock_from_env(args.clock)
    except ValueError as exc:
        print(f"--clock: {exc}", file=sys.stderr)
        return 2
    application = build_application(config, clock=clock)
    logging.getLogger("bot").info("event=bot_starting api_url=%s allowed_chats=%d allowed_users=%d",
                                  config.telegram.api_url, len(config.telegram.allowed_chat_ids),
                                  len(config.telegram.allowed_user_ids))
    application.run_polling(allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
                            timeout=int(args.poll_timeout), poll_interval=0.0)
    return 0


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if v.strip()}


if __name__ == "__main__":
    raise SystemExit(main())
