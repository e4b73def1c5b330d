"""The bot with a hostile calendar file (issue 14): missing, a YAML bomb, not UTF-8, a
ConfigMap-style symlink (writable and read-only), and a user whose Telegram name holds line
separators. The real Application against the fake Bot API; Prometheus/Alertmanager are
not needed for the calendar, so they point nowhere.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest

from bot import callbacks, texts
from bot.app import build_application
from exporter.calendar import load_calendar
from exporter.clock import SystemClock
from exporter.config import load_config
from sandbox.procs import free_port
from sandbox.telegram import FakeTelegram
from tests.calendars import calendar_text
from tests.unit.test_calendar_files import calendar_bomb

from .test_bot import ALLOWED_USER, ENV, GROUP, BotRunner, ask, press, write_config

pytestmark = pytest.mark.integration

DAY = date(SystemClock().today().year + 1, 3, 3)
while DAY.weekday() >= 5:
    DAY = date(DAY.year, DAY.month, DAY.day + 1)
MONTH = f"{DAY:%Y-%m}"
TEXT = calendar_text(f"{DAY.year}-01-01: holiday   # New Year (kept)", comment="bot file tests")


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot-files")
    mount = tmp / "mnt"
    mount.mkdir()
    path = mount / "calendar.yml"
    path.write_text(TEXT, encoding="utf-8")
    dead = f"http://127.0.0.1:{free_port()}"
    with FakeTelegram() as tg:
        config = load_config(write_config(tmp, dead, dead, tg.url, path), environ=ENV)
        runner = BotRunner(build_application(config, clock=SystemClock())).start()
        try:
            yield {"tg": tg, "mount": mount, "path": path}
        finally:
            runner.stop()


def reset(mount: Path, text: str | bytes | None = TEXT) -> Path:
    """Empty the directory the bot's calendar.yml lives in and put a plain file there."""
    for entry in mount.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    path = mount / "calendar.yml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    elif isinstance(text, bytes):
        path.write_bytes(text)
    return path


def configmap(mount: Path, text: str = TEXT) -> Path:
    """calendar.yml -> ..data/calendar.yml, ..data -> ..2027_01_01 (a Kubernetes ConfigMap volume)."""
    reset(mount, None)
    (mount / "..2027_01_01").mkdir()
    (mount / "..2027_01_01" / "calendar.yml").write_text(text, encoding="utf-8")
    os.symlink("..2027_01_01", mount / "..data")
    os.symlink("..data/calendar.yml", mount / "calendar.yml")
    return mount / "calendar.yml"


_seq = itertools.count(900_000)


def press_as(tg: FakeTelegram, message: dict, data: str, user: dict, timeout: float = 15.0) -> dict:
    """A press by a user with a display name of our choosing (Telegram sends it as given)."""
    stored = tg.stored_message(message["chat_id"], message["message_id"])
    before = len(tg.callback_answers())
    query_id = str(next(_seq))
    tg.inject_update({"callback_query": {"id": query_id, "from": user, "message": stored,
                                         "chat_instance": str(abs(message["chat_id"])), "data": data}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for answer in tg.callback_answers()[before:]:
            if answer["callback_query_id"] == query_id:
                return answer
        time.sleep(0.02)
    raise TimeoutError(f"no answer to {data!r}")


def test_calendar_with_the_file_missing_says_so_in_russian(bot):
    tg, mount = bot["tg"], bot["mount"]
    menu = ask(tg, f"/calendar {MONTH}")                      # while the file is there
    reset(mount, None)
    try:
        reply = ask(tg, f"/calendar {MONTH}")
        assert reply["text"] != texts.INTERNAL_ERROR
        assert "Файл календаря не найден" in reply["text"] and "calendar.yml" in reply["text"]
        answer = press(tg, menu, callbacks.month(DAY.year, DAY.month))
        assert "Файл календаря не найден" in answer["text"]
        answer = press(tg, menu, callbacks.toggle(DAY))
        assert "Файл календаря не найден" in answer["text"]
        assert not (mount / "calendar.yml").exists()            # nothing was invented in its place
    finally:
        reset(mount)


def test_yaml_bomb_calendar_is_refused_fast_and_the_bot_keeps_answering(bot):
    tg, mount = bot["tg"], bot["mount"]
    reset(mount, calendar_bomb(f"{DAY.year}-01-04"))
    try:
        started = time.monotonic()
        reply = ask(tg, f"/calendar {MONTH}", timeout=10)
        assert time.monotonic() - started < 5
        assert "не читается" in reply["text"] and "aliases" in reply["text"]
        assert len(reply["text"]) < 800
        assert str(GROUP) in ask(tg, "/info", timeout=10)["text"]
    finally:
        reset(mount)


def test_non_utf8_calendar_says_why(bot):
    tg, mount = bot["tg"], bot["mount"]
    reset(mount, TEXT.replace("bot file tests", "праздники").encode("cp1251"))
    try:
        reply = ask(tg, f"/calendar {MONTH}")
        assert "UTF-8" in reply["text"] and reply["text"] != texts.INTERNAL_ERROR
    finally:
        reset(mount)


def test_toggle_through_a_configmap_symlink_keeps_the_symlink(bot):
    tg, mount = bot["tg"], bot["mount"]
    link = configmap(mount)
    try:
        menu = ask(tg, f"/calendar {MONTH}")
        answer = press(tg, menu, callbacks.toggle(DAY), edit=True)
        assert answer["text"].startswith(f"{DAY:%d.%m.%Y}")
        assert link.is_symlink() and os.readlink(link) == "..data/calendar.yml"
        target = mount / "..2027_01_01" / "calendar.yml"
        assert load_calendar(str(target)).day_status(DAY) == "holiday"
        assert "# New Year (kept)" in target.read_text(encoding="utf-8")
    finally:
        reset(mount)


def test_read_only_configmap_says_read_only_in_russian(bot):
    tg, mount = bot["tg"], bot["mount"]
    reset(mount, None)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); tests/unit/test_calendar_files.py covers EROFS")
    try:
        link = configmap(mount)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        before = link.read_bytes()
        menu = ask(tg, f"/calendar {MONTH}")                   # reading works
        assert "Внутренняя ошибка" not in menu["text"]
        answer = press(tg, menu, callbacks.toggle(DAY))
        assert "только для чтения" in answer["text"], answer
        assert answer.get("show_alert") is True
        assert link.is_symlink() and link.read_bytes() == before
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        reset(mount)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\r\n", "\v\f", "\x1c\x1d\x1e"],
                         ids=["U+2028", "U+2029", "U+0085", "CRLF", "VT-FF", "FS-GS-RS"])
def test_user_with_line_separators_in_the_name_can_toggle(bot, separator):
    tg, mount = bot["tg"], bot["mount"]
    path = reset(mount)
    user = {"id": ALLOWED_USER, "is_bot": False, "first_name": f"Eve{separator}days:",
            "last_name": f"{separator}# x{separator}", "username": "eve", "language_code": "ru"}
    menu = ask(tg, f"/calendar {MONTH}")
    first = press_as(tg, menu, callbacks.toggle(DAY), user)
    assert first["text"].startswith(f"{DAY:%d.%m.%Y}"), first
    assert load_calendar(str(path)).day_status(DAY) == "holiday"
    second = press_as(tg, menu, callbacks.toggle(DAY), user)   # the same user again: still editable
    assert second["text"].startswith(f"{DAY:%d.%m.%Y}"), second
    assert load_calendar(str(path)).day_status(DAY) == "working"
    line = next(x for x in path.read_text(encoding="utf-8").split("\n") if x.lstrip().startswith(str(DAY)))
    assert "set by Eve days:" in line and "(@eve, id 42)" in line
    assert not any(ch in line for ch in separator)
