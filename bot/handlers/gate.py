"""The access gate (handler group -1: refuses and stops unauthorised updates before anything
else runs) and the per-command access level of the command table."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import texts
from bot.access import Access
from bot.context import BotContext

log = logging.getLogger("bot")


async def access_gate(update: object, context: BotContext) -> None:
    """Group -1: a refusal (with both ids, so an admin can allow-list them) and nothing else runs."""
    if not isinstance(update, Update):
        raise ApplicationHandlerStop
    if context.state.policy.allows_update(update):
        return
    chat = update.effective_chat
    user = update.effective_user
    log.warning("event=access_refused chat_id=%s user_id=%s", chat.id if chat else None,
                user.id if user else None)
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(texts.REFUSED_SHORT, show_alert=True)
        elif update.effective_message is not None and chat is not None and user is not None:
            await update.effective_message.reply_text(texts.REFUSED.format(chat_id=chat.id, user_id=user.id))
    except TelegramError as exc:
        log.warning("event=refusal_not_sent error=%r", str(exc))
    raise ApplicationHandlerStop


Handler = Callable[[Update, BotContext], Awaitable[None]]


def guarded(level: Access, handler: Handler) -> Handler:
    """The command handler for its access level (ALLOWED: the gate already checked it)."""
    if level is Access.ALLOWED:
        return handler

    async def admin_only(update: Update, context: BotContext) -> None:
        user = update.effective_user
        if not context.state.policy.is_admin(user.id if user else None):
            await update.effective_message.reply_text(texts.ADMIN_ONLY)
            return
        await handler(update, context)

    return admin_only
