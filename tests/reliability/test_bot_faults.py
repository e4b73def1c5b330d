"""Bot faults: Telegram answering 429/5xx in the middle of a calendar edit, Telegram's
getUpdates failing, and a flood of strangers. The real Application against the fake
Bot API; Prometheus/Alertmanager are not needed for the calendar, so they point nowhere.

Already covered (RELIABILITY.md names them): one stranger (test_bot.py
::test_stranger_is_refused_and_changes_nothing), forged and stale callback data
(::test_forged_or_stale_callbacks_change_nothing, tests/unit/test_bot_callbacks.py),
100 concurrent toggles (::test_hundred_concurrent_toggles_lose_no_write), backends down
(::test_backends_down_give_clear_message_and_bot_stays_up).
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from bot import callbacks, texts
from bot.app import build_application
from exporter.calendar import load_calendar
from exporter.clock import SystemClock
from exporter.config import load_config
from sandbox.procs import free_port
from sandbox.telegram import FakeTelegram
from tests.integration.test_bot import ENV, GROUP, BotRunner, ask, calendar_text, digest, press, write_config

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot-faults")
    today = SystemClock().today()
    path = tmp / "calendar.yml"
    path.write_text(calendar_text(today), encoding="utf-8")
    dead = f"http://127.0.0.1:{free_port()}"
    with FakeTelegram() as tg:
        config = load_config(write_config(tmp, dead, dead, tg.url, path), environ=ENV)
        runner = BotRunner(build_application(config, clock=SystemClock())).start()
        try:
            yield {"tg": tg, "calendar": path, "today": today}
        finally:
            runner.stop()


def _wait_answer(tg: FakeTelegram, query_id: str, timeout: float = 15.0, text: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for answer in tg.callback_answers():
            if answer["callback_query_id"] == query_id and text in (None, answer["text"]):
                return answer
        time.sleep(0.05)
    raise TimeoutError(f"callback {query_id} not answered")


def _weekdays(start: date, count: int) -> list[date]:
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def test_telegram_errors_while_editing_lose_no_write_and_duplicate_none(bot):
    tg, path, today = bot["tg"], bot["calendar"], bot["today"]
    days = _weekdays(date(today.year + 1, 3, 2), 4)
    before = load_calendar(str(path))
    menu = ask(tg, f"/calendar {days[0]:%Y-%m}")
    faults = [("editMessageText", 429, 1), ("editMessageText", 502, None), ("answerCallbackQuery", 429, 1)]
    for day, (method, status, retry_after) in zip(days, faults, strict=False):
        tg.add_fault(method, status, retry_after=retry_after, count=1)
        query = tg.inject_callback(callbacks.toggle(day), chat_id=GROUP, user_id=42,
                                   message_id=menu["message_id"])["callback_query"]
        deadline = time.monotonic() + 15
        while load_calendar(str(path)).day_status(day) == before.day_status(day):
            assert time.monotonic() < deadline, f"toggle of {day} under {method} {status} was lost"
            time.sleep(0.05)
        if method != "answerCallbackQuery":
            _wait_answer(tg, query["id"])
        # The handler is over once the error handler has answered (a wrong retry would come before it).
        _wait_answer(tg, query["id"], text=texts.INTERNAL_ERROR)
        assert all(fault["count"] == 0 for fault in tg._faults), tg._faults   # the fault did hit
    # Telegram is healthy again: the next press edits the menu in place as usual.
    tg.clear_faults()
    answer = press(tg, menu, callbacks.toggle(days[3]), edit=True)
    assert answer["text"].startswith(f"{days[3]:%d.%m.%Y}")
    after = load_calendar(str(path))
    for day in days:
        assert after.day_status(day) != before.day_status(day), day   # each flipped exactly once
    assert "# New Year (kept through every edit)" in path.read_text(encoding="utf-8")
    stored = tg.stored_message(menu["chat_id"], menu["message_id"])
    assert f"{days[3]:%d.%m}" in (stored.get("_raw") or stored.get("text"))


def test_get_updates_failing_then_recovering_keeps_the_bot_answering(bot):
    tg = bot["tg"]
    tg.add_fault("getUpdates", 502, count=2)
    reply = ask(tg, "/info", timeout=30)
    assert str(GROUP) in reply["text"]
    tg.add_fault("getUpdates", 429, retry_after=1, count=1)
    assert str(GROUP) in ask(tg, "/info", timeout=30)["text"]


def test_flood_of_strangers_changes_nothing(bot):
    tg, path, today = bot["tg"], bot["calendar"], bot["today"]
    before = digest(path)
    queries = []
    for n in range(30):
        chat_id, user_id = -100700 - n, 7000 + n          # neither chat nor user is allow-listed
        tg.inject_text("/calendar", chat_id=chat_id, user_id=user_id, chat_type="supergroup")
        queries.append(tg.inject_callback(callbacks.toggle(today + timedelta(days=n % 7)), chat_id=chat_id,
                                          user_id=user_id, message_id=1)["callback_query"]["id"])
    answers = [_wait_answer(tg, query_id) for query_id in queries]
    assert {a["text"] for a in answers} == {texts.REFUSED_SHORT}
    deadline = time.monotonic() + 15
    while len([m for m in tg.messages() if m["chat_id"] <= -100700 and m["chat_id"] > -100730]) < 30:
        assert time.monotonic() < deadline, "not every stranger got a refusal"
        time.sleep(0.05)
    for message in (m for m in tg.messages() if -100730 < m["chat_id"] <= -100700):
        assert "Доступ запрещён" in message["text"] and message["reply_markup"] is None
    assert digest(path) == before
    assert str(GROUP) in ask(tg, "/info")["text"]          # still serving the group
