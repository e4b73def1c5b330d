"""/start, /info, and the error handler (a short Russian apology; the error goes to the log)."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from bot import texts
from bot.context import BotContext

log = logging.getLogger("bot")


async def cmd_start(update: Update, context: BotContext) -> None:
    await update.effective_message.reply_text(texts.START)


async def cmd_info(update: Update, context: BotContext) -> None:
    chat, user = update.effective_chat, update.effective_user
    title = f", «{texts.esc(chat.title)}»" if chat.title else ""
    username = f" (@{texts.esc(user.username)})" if user.username else ""
    await update.effective_message.reply_text(
        texts.INFO.format(chat_id=chat.id, chat_type=chat.type, title=title, user_id=user.id, username=username))


async def error_handler(update: object, context: BotContext) -> None:
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
