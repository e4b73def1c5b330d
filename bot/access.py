"""Who may use the bot. Checked once, before every handler (`bot.handlers.gate`, handler group -1).

An update is allowed when its chat is on `telegram.allowed_chat_ids` (the alert group
TELEGRAM_GROUP_CHATID is always there: any member of that group may use the bot in it), or
its user is on `telegram.allowed_user_ids` (in any chat, e.g. a private one). Changing the
calendar additionally needs `telegram.admin_user_ids` when that list is not empty; so does a
command whose access level in the command table (`bot.commands`) is `Access.ADMIN`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from telegram import Update


class Access(enum.Enum):
    ALLOWED = "allowed"      # anyone the allow-list lets in (the gate checks it for every update)
    ADMIN = "admin"          # additionally on telegram.admin_user_ids (when that list is set)


@dataclass(frozen=True)
class AccessPolicy:
    allowed_chat_ids: frozenset[int] = frozenset()
    allowed_user_ids: frozenset[int] = frozenset()
    admin_user_ids: frozenset[int] = frozenset()

    @classmethod
    def from_config(cls, telegram_config: object) -> AccessPolicy:
        return cls(frozenset(getattr(telegram_config, "allowed_chat_ids", ()) or ()),
                   frozenset(getattr(telegram_config, "allowed_user_ids", ()) or ()),
                   frozenset(getattr(telegram_config, "admin_user_ids", ()) or ()))

    def allows(self, chat_id: int | None, user_id: int | None) -> bool:
        if user_id is None or chat_id is None:
            return False
        return chat_id in self.allowed_chat_ids or user_id in self.allowed_user_ids

    def is_admin(self, user_id: int | None) -> bool:
        if user_id is None:
            return False
        return not self.admin_user_ids or user_id in self.admin_user_ids

    def may_edit_calendar(self, user_id: int | None) -> bool:
        return self.is_admin(user_id)

    def allows_update(self, update: Update) -> bool:
        chat = update.effective_chat
        user = update.effective_user
        return self.allows(chat.id if chat else None, user.id if user else None)
