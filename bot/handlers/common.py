"""Small helpers the feature modules share: who pressed, durations and moments in Russian,
cutting long messages, editing a message in place."""

from __future__ import annotations

from datetime import datetime

from telegram import CallbackQuery, InlineKeyboardMarkup, User
from telegram.error import BadRequest

from bot import texts
from exporter.clock import MSK

LIMIT = 4096   # Telegram's message limit, UTF-16 code units


def actor_name(user: User | None) -> str:
    if user is None:
        return "?"
    handle = f"@{user.username}, " if user.username else ""
    return f"{user.full_name} ({handle}id {user.id})"


def user_id(user: User | None) -> int | None:
    return user.id if user else None


def fmt_duration(seconds: float) -> str:
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


def fmt_moment(moment: datetime, now: datetime) -> str:
    local = moment.astimezone(MSK)
    return f"{local:%H:%M}" if local.date() == now.date() else f"{local:%d.%m %H:%M}"


def truncate_lines(lines: list[str], limit: int = 3900) -> str:
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


def fit_lines(head: list[str], body: list[str], tail: list[str], limit: int = LIMIT) -> str:
    """Join head + body + tail, cutting body lines with "… и ещё N" so the text stays under `limit`
    in UTF-16 code units, as Telegram counts, of the HTML source (never shorter than the
    parsed text Telegram measures)."""
    def size(lines: list[str]) -> int:
        return len("\n".join(lines).encode("utf-16-le")) // 2

    if size(head + body + tail) <= limit:
        return "\n".join(head + body + tail)
    kept: list[str] = []
    for index, line in enumerate(body):
        marker = texts.TRUNCATED.format(n=len(body) - index)
        if size(head + kept + [line, marker] + tail) > limit:
            return "\n".join(head + kept + [marker] + tail)
        kept.append(line)
    return "\n".join(head + kept + tail)


async def edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Edit the button's message in place (HTML: the Application's default parse mode)."""
    try:
        await query.edit_message_text(text, reply_markup=markup)
    except BadRequest as exc:
        # A double tap or two concurrent presses render the same thing: nothing to do.
        if "not modified" not in str(exc).lower():
            raise
