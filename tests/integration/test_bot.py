"""The real bot Application against the fake Bot API, real Prometheus and real Alertmanager.

One module-scoped setup: a tiny scrape target (prometheus_client, real HTTP) that exposes a
few algopack_* series for eq, Prometheus scraping it every second, Alertmanager with a
do-nothing receiver, the fake Telegram server, and the bot polling it with a 1 s long poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Gauge
from telegram import Update

from bot import callbacks, commands, texts
from bot.app import build_application
from exporter.calendar import CalendarStore, load_calendar
from exporter.clock import MSK, SystemClock
from exporter.config import load_config
from sandbox.procs import ManagedProcess, free_port, python_module, wait_http
from sandbox.telegram import FakeTelegram
from tests.calendars import calendar_text
from tests.support import need_binary, prom_query, prometheus_over, wait_until

pytestmark = pytest.mark.integration

TOKEN = "4242:bot-test-token"
BOT_ID = 4242
GROUP = -1001234567890
ALLOWED_USER = 42
STRANGER = 666
STRANGER_CHAT = -100999

CALENDAR = calendar_text(comment="test calendar: comments and other entries must survive the bot's writes") + """\
days:
  NEXT_YEAR-01-01: holiday      # New Year (kept through every edit)
  SATURDAY:                # a weekend session
    status: working
    markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {}}
    source: iss
    reason: "weekend session"
"""


class BotRunner:
    """Runs an Application's polling loop in a background event loop."""

    def __init__(self, application):
        self.application = application
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bot-loop", daemon=True)

    def _run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        await self.application.initialize()
        if self.application.post_init is not None:   # what run_polling() does after initialize()
            await self.application.post_init(self.application)
        await self.application.start()
        await self.application.updater.start_polling(
            timeout=1, poll_interval=0.0, allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY])

    async def _stop(self) -> None:
        await self.application.updater.stop()
        await self.application.stop()
        await self.application.shutdown()

    def start(self) -> BotRunner:
        self.thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        try:
            self._run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def _saturday_after(day: date) -> date:
    return day + timedelta(days=(5 - day.weekday()) % 7 or 7)


def calendar_text(today: date) -> str:
    return CALENDAR.replace("NEXT_YEAR", str(today.year + 1)).replace("SATURDAY", _saturday_after(today).isoformat())


def write_config(tmp: Path, prom_url: str, am_url: str, tg_url: str, calendar_path: Path,
                 admins: list[int] | None = None) -> Path:
    config = {
        "calendar": {"file": str(calendar_path)},
        "telegram": {"api_url": tg_url, "allowed_user_ids": [ALLOWED_USER], "admin_user_ids": admins or []},
        "prometheus": {"url": prom_url},
        "alertmanager": {"url": am_url},
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


ENV = {"TELEGRAM_BOT_TOKEN_BOT": TOKEN, "TELEGRAM_GROUP_CHATID": str(GROUP)}


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot-backends")
    # a real scrape target with a few algopack_* series (eq only: fx/fo must render "нет данных")
    registry = CollectorRegistry()
    now = time.time()
    labels = ["market", "endpoint"]
    Gauge("algopack_lag_seconds", "lag", labels, registry=registry).labels("eq", "tradestats").set(95)
    # always 95 s old, however long the module's tests take (a fixed value aged past 2 min on a slow run)
    Gauge("algopack_last_systime_timestamp_seconds", "systime", labels,
          registry=registry).labels("eq", "tradestats").set_function(lambda: time.time() - 95)
    delay = Gauge("algopack_publish_delay_seconds", "delay", labels, registry=registry)
    tradetime = Gauge("algopack_last_tradetime_timestamp_seconds", "tradetime", labels, registry=registry)
    for endpoint, value in (("tradestats", 41), ("orderstats", 12)):
        delay.labels("eq", endpoint).set(value)
        tradetime.labels("eq", endpoint).set(now - 300)
    am_port = free_port()
    am_cfg = tmp / "alertmanager.yml"
    am_cfg.write_text(yaml.safe_dump({
        "route": {"receiver": "nowhere", "group_by": ["alertname", "market"]},
        "receivers": [{"name": "nowhere", "webhook_configs": [{"url": "http://127.0.0.1:9/hook"}]}],
    }), encoding="utf-8")
    am_url = f"http://127.0.0.1:{am_port}"
    with prometheus_over(registry, tmp / "prometheus") as prom_url, \
            ManagedProcess("alertmanager", [need_binary("prometheus-alertmanager"), f"--config.file={am_cfg}",
                                            f"--storage.path={tmp / 'am-data'}", "--cluster.listen-address=",
                                            f"--web.listen-address=127.0.0.1:{am_port}"],
                           tmp / "alertmanager.log") as am:
        wait_http(am_url + "/-/ready", timeout=30, proc=am)
        wait_until(lambda: len(prom_query(prom_url, "algopack_publish_delay_seconds")) == 2, 20,
                   "Prometheus scraping the test target", step=0.3)
        yield {"prometheus": prom_url, "alertmanager": am_url}


@pytest.fixture(scope="module")
def setup(backends, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot")
    today = SystemClock().today()
    calendar_path = tmp / "calendar.yml"
    sat = _saturday_after(today)
    calendar_path.write_text(calendar_text(today), encoding="utf-8")
    with FakeTelegram() as tg:
        config = load_config(write_config(tmp, backends["prometheus"], backends["alertmanager"], tg.url,
                                          calendar_path), environ=ENV)
        runner = BotRunner(build_application(config, clock=SystemClock())).start()
        try:
            yield {"tg": tg, "calendar": calendar_path, "today": today, "saturday": sat, **backends}
        finally:
            runner.stop()


def ask(tg: FakeTelegram, text: str, chat_id: int = GROUP, user_id: int = ALLOWED_USER, timeout: float = 15.0,
        method: str = "sendMessage") -> dict:
    since = len(tg.messages())
    tg.inject_text(text, chat_id=chat_id, user_id=user_id, chat_type="supergroup" if chat_id < 0 else "private")
    return tg.wait_for(lambda r: r["method"] == method and r["chat_id"] == chat_id and r["bot_id"] == BOT_ID,
                       timeout=timeout, since=since)


def press(tg: FakeTelegram, message: dict, data: str, user_id: int = ALLOWED_USER, timeout: float = 15.0,
          edit: bool = False) -> dict:
    """Press a button; returns the callback answer (after the message was edited, with edit=True)."""
    answers_before = len(tg.callback_answers())
    records_before = len(tg.messages())
    update = tg.inject_callback(data, chat_id=message["chat_id"], user_id=user_id, message_id=message["message_id"])
    query_id = update["callback_query"]["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for answer in tg.callback_answers()[answers_before:]:
            if answer["callback_query_id"] == query_id:
                if edit:
                    tg.wait_for(lambda r: r["method"] == "editMessageText"
                                and r["message_id"] == message["message_id"], timeout=timeout, since=records_before)
                return answer
        time.sleep(0.02)
    raise TimeoutError(f"no answer to callback {data!r}")


def buttons(markup: dict | None) -> list[list[tuple[str, str]]]:
    return [[(b["text"], b.get("callback_data", "")) for b in row] for row in (markup or {}).get("inline_keyboard", [])]


def current(tg: FakeTelegram, message: dict) -> dict:
    stored = tg.stored_message(message["chat_id"], message["message_id"])
    return {"text": stored.get("_raw") or stored.get("text"), "reply_markup": stored.get("reply_markup")}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------- commands


def test_help_documents_every_command_and_commands_are_registered(setup):
    tg = setup["tg"]
    reply = ask(tg, "/help")
    for name, _ in commands.menu():
        assert f"/{name}" in reply["text"]
    start = ask(tg, "/start")
    assert "/help" in start["text"]
    registered = requests.get(f"{tg.url}/bot{TOKEN}/getMyCommands", timeout=5).json()["result"]
    assert [c["command"] for c in registered] == [name for name, _ in commands.menu()]


def test_info_shows_chat_and_user_ids(setup):
    reply = ask(setup["tg"], "/info@fake4242_bot")
    assert str(GROUP) in reply["text"] and str(ALLOWED_USER) in reply["text"] and "supergroup" in reply["text"]


def test_allowed_user_in_private_chat(setup):
    reply = ask(setup["tg"], "/info", chat_id=ALLOWED_USER)
    assert "private" in reply["text"]


def test_stranger_is_refused_and_changes_nothing(setup):
    tg, path = setup["tg"], setup["calendar"]
    before = digest(path)
    reply = ask(tg, "/calendar", chat_id=STRANGER_CHAT, user_id=STRANGER)
    assert "Доступ запрещён" in reply["text"] and str(STRANGER_CHAT) in reply["text"]
    assert reply["reply_markup"] is None
    # a stranger pressing a (copied) calendar button in their own chat
    answer = press(tg, {"chat_id": STRANGER_CHAT, "message_id": 1}, callbacks.toggle(setup["today"]),
                   user_id=STRANGER)
    assert answer["text"] == texts.REFUSED_SHORT
    assert digest(path) == before


# ------------------------------------------------------------------------- calendar


def test_calendar_navigation_edits_in_place(setup):
    tg, today = setup["tg"], setup["today"]
    menu = ask(tg, "/calendar")
    grid = buttons(menu["reply_markup"])
    assert [label for label, _ in grid[0]] == list(texts.WEEKDAYS)
    # day 1 sits under its weekday; today is marked
    first = today.replace(day=1)
    assert grid[1][first.weekday()][1] == callbacks.toggle(first)
    labels = [label for row in grid[1:-1] for label, _ in row]
    assert any(label.startswith("[") and label.strip("[]🔴🟡") == str(today.day) for label in labels)

    assert press(tg, menu, callbacks.years(), edit=True)["text"] == ""
    years = buttons(current(tg, menu)["reply_markup"])
    assert [data for _, data in years[0]] == [callbacks.months(y) for y in range(today.year - 1, today.year + 3)]

    press(tg, menu, callbacks.months(today.year + 1), edit=True)
    state = current(tg, menu)
    assert str(today.year + 1) in state["text"]
    assert buttons(state["reply_markup"])[-1] == [(texts.CAL_BACK_YEARS, callbacks.years())]

    sat = setup["saturday"]
    press(tg, menu, callbacks.month(sat.year, sat.month), edit=True)
    state = current(tg, menu)
    assert texts.MONTHS[sat.month - 1] in state["text"]
    # the weekend session day is marked and explained with its sessions and source
    assert any(label == f"🟡{sat.day}" or label == f"[🟡{sat.day}]"
               for row in buttons(state["reply_markup"]) for label, _ in row)
    assert "EQ 10:00–19:00" in state["text"] and "биржа" in state["text"]
    # back to the months of that year
    nav = buttons(state["reply_markup"])[-1]
    assert (texts.CAL_BACK_MONTHS.format(year=sat.year), callbacks.months(sat.year)) in nav


def test_toggle_writes_calendar_keeps_other_entries_and_exporter_reloads(setup):
    tg, path, today = setup["tg"], setup["calendar"], setup["today"]
    day = today + timedelta(days=3)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    store = CalendarStore(str(path))
    store.start_watching(interval=0.2)
    try:
        before = load_calendar(str(path))
        assert before.day_status(day) == "working"
        menu = ask(tg, f"/calendar {day:%Y-%m}")
        answer = press(tg, menu, callbacks.toggle(day), edit=True)
        assert answer["text"] == f"{day:%d.%m.%Y}: выходной"
        text = path.read_text(encoding="utf-8")
        assert f"{day.isoformat()}: holiday" in text
        assert "# New Year (kept through every edit)" in text and "weekend session" in text
        after = load_calendar(str(path))
        assert after.day_status(day) == "holiday" and after.day_source(day) == "manual"
        assert set(after.days) == set(before.days) | {day}
        state = current(tg, menu)
        assert "User42" in state["text"] and "рабочий → выходной" in state["text"]
        assert any(label.strip("[]") == f"🔴{day.day}" for row in buttons(state["reply_markup"]) for label, _ in row)
        # the exporter's hot reload sees it within seconds
        deadline = time.monotonic() + 5
        while store.current.day_status(day) != "holiday" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.current.day_status(day) == "holiday"
        # and back
        press(tg, menu, callbacks.toggle(day), edit=True)
        assert load_calendar(str(path)).day_status(day) == "working"
        assert "выходной → рабочий" in current(tg, menu)["text"]
    finally:
        store.stop()


@pytest.mark.parametrize("data", [
    "cal:v1:t:2026-02-30", "cal:v1:t:{far}-01-05", "cal:v1:t:{old}-01-05", "cal:v2:t:{ok}",
    "cal:v1:rm:{ok}", "cal:v1:t:{ok}:x", "al:v1:s:zzzz:1h", "si:v1:x:not-a-uuid", "", "x" * 64,
])
def test_forged_or_stale_callbacks_change_nothing(setup, data):
    tg, path, today = setup["tg"], setup["calendar"], setup["today"]
    data = data.format(far=today.year + 3, old=today.year - 2, ok=today.isoformat())
    menu = ask(tg, "/calendar")
    before_file, before_menu = digest(path), current(tg, menu)
    answer = press(tg, menu, data)
    assert answer["text"] == texts.STALE
    assert digest(path) == before_file
    assert current(tg, menu) == before_menu


def test_hundred_concurrent_toggles_lose_no_write(setup):
    tg, path, today = setup["tg"], setup["calendar"], setup["today"]
    start = date(today.year + 1, 2, 1)
    days = [start + timedelta(days=n) for n in range(100)]
    before = load_calendar(str(path))
    expected = {day: ("holiday" if before.day_status(day) == "working" else "working") for day in days}
    menu = ask(tg, f"/calendar {start:%Y-%m}")
    answers_before = len(tg.callback_answers())
    query_ids = {tg.inject_callback(callbacks.toggle(day), chat_id=GROUP, user_id=ALLOWED_USER,
                                    message_id=menu["message_id"])["callback_query"]["id"] for day in days}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        answered = {a["callback_query_id"] for a in tg.callback_answers()[answers_before:]}
        if query_ids <= answered:
            break
        time.sleep(0.1)
    assert query_ids <= {a["callback_query_id"] for a in tg.callback_answers()[answers_before:]}
    after = load_calendar(str(path))
    assert {day: after.day_status(day) for day in days} == expected
    assert set(before.days) <= set(after.days)
    assert "# New Year (kept through every edit)" in path.read_text(encoding="utf-8")


def test_admin_only_calendar_edits(backends, tmp_path):
    """With admin_user_ids set, an allowed non-admin can look but not change."""
    calendar_path = tmp_path / "calendar.yml"
    today = SystemClock().today()
    calendar_path.write_text(calendar_text(today), encoding="utf-8")
    with FakeTelegram() as tg:
        config = load_config(write_config(tmp_path, backends["prometheus"], backends["alertmanager"], tg.url,
                                          calendar_path, admins=[7]), environ=ENV)
        runner = BotRunner(build_application(config, clock=SystemClock())).start()
        try:
            before = digest(calendar_path)
            menu = ask(tg, "/calendar")
            assert press(tg, menu, callbacks.toggle(today))["text"] == texts.NOT_ADMIN
            assert digest(calendar_path) == before
        finally:
            runner.stop()


# ------------------------------------------------------------------------- ops


def _push_alert(am_url: str, **labels: str) -> None:
    now = datetime.now(MSK)
    response = requests.post(am_url + "/api/v2/alerts", timeout=5, json=[{
        "labels": labels, "annotations": {"summary": f"Тестовый алерт <{labels['alertname']}>"},
        "startsAt": (now - timedelta(minutes=3)).isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
    }])
    response.raise_for_status()


def test_status_shows_sessions_data_age_and_alerts(setup):
    tg = setup["tg"]
    _push_alert(setup["alertmanager"], alertname="AlgopackDataDelayed", market="eq", endpoint="tradestats",
                severity="critical")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = ask(tg, "/status")
        if "AlgopackDataDelayed" in reply["text"]:
            break
        time.sleep(0.5)
    text = reply["text"]
    for label in texts.MARKET_LABELS.values():
        assert f"<b>{label}</b>" in text
    assert "tradestats: данные 1 мин" in text and "отставание 1 мин" in text
    assert "orderstats: нет данных" in text          # a series without a systime
    assert "futoi: нет данных" in text               # fo: nothing exported at all
    assert "AlgopackDataDelayed" in text and "&lt;AlgopackDataDelayed&gt;" in text
    assert ("идёт сессия" in text) or ("вне сессии" in text)


def test_alerts_silence_button_creates_exact_silence_and_silences_expire(setup):
    tg, am_url = setup["tg"], setup["alertmanager"]
    labels = {"alertname": "AlgopackMissingIntervals", "market": "fo", "endpoint": "obstats", "severity": "warning"}
    _push_alert(am_url, **labels)
    deadline = time.monotonic() + 10
    while True:
        reply = ask(tg, "/alerts")
        if "AlgopackMissingIntervals" in reply["text"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    alerts = requests.get(am_url + "/api/v2/alerts", timeout=5).json()
    target = next(a for a in alerts if a["labels"]["alertname"] == "AlgopackMissingIntervals")
    data = callbacks.silence(target["fingerprint"], "1h")
    assert data in [d for row in buttons(reply["reply_markup"]) for _, d in row]
    assert len(data.encode()) <= 64

    answer = press(tg, reply, data, edit=True)
    assert answer["text"].startswith("🔕 Заглушено до")
    silences = [s for s in requests.get(am_url + "/api/v2/silences", timeout=5).json()
                if s["status"]["state"] == "active"]
    [silence] = [s for s in silences if any(m["value"] == "AlgopackMissingIntervals" for m in s["matchers"])]
    assert {m["name"]: m["value"] for m in silence["matchers"]} == target["labels"]
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"])
    length = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00")) - \
        datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < length <= timedelta(hours=1, seconds=5)
    note = tg.wait_for(lambda r: r["method"] == "sendMessage" and "заглушил" in (r["text"] or ""), timeout=5)
    assert "User42" in note["text"]
    # the silenced alert left the list in place
    assert "AlgopackMissingIntervals" not in current(tg, reply)["text"]

    listing = ask(tg, "/silences")
    assert "alertname=AlgopackMissingIntervals" in listing["text"]
    expire = callbacks.expire(silence["id"])
    assert expire in [d for row in buttons(listing["reply_markup"]) for _, d in row]
    assert press(tg, listing, expire, edit=True)["text"] == texts.SILENCE_EXPIRED_ANSWER
    state = requests.get(f"{am_url}/api/v2/silence/{silence['id']}", timeout=5).json()["status"]["state"]
    assert state == "expired"
    # pressing it again: stale
    assert press(tg, listing, expire)["text"] == texts.STALE


def test_report_sends_png_with_stats_and_says_when_no_data(setup):
    tg = setup["tg"]
    photo = ask(tg, "/report eq", method="sendPhoto", timeout=30)
    png = tg.file_bytes(photo["photo_sha256"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert "tradestats: 41 / 41 / 41 / 41" in photo["text"] and "orderstats: 12 /" in photo["text"]
    none = ask(tg, "/report fx")
    assert "нет данных" in none["text"]
    assert "Не понял" in ask(tg, "/report eq 2099-01-01")["text"]


def test_backends_down_give_clear_message_and_bot_stays_up(tmp_path):
    calendar_path = tmp_path / "calendar.yml"
    today = SystemClock().today()
    calendar_path.write_text(calendar_text(today), encoding="utf-8")
    dead = f"http://127.0.0.1:{free_port()}"
    with FakeTelegram() as tg:
        config = load_config(write_config(tmp_path, dead, dead, tg.url, calendar_path), environ=ENV)
        runner = BotRunner(build_application(config, clock=SystemClock())).start()
        try:
            status = ask(tg, "/status")["text"]
            assert "Prometheus недоступен (нет соединения)" in status
            assert "Alertmanager недоступен" in status and "<b>EQ | Акции</b>" in status
            assert "Alertmanager недоступен" in ask(tg, "/alerts")["text"]
            assert "Alertmanager недоступен" in ask(tg, "/silences")["text"]
            assert "Prometheus недоступен" in ask(tg, "/report eq")["text"]
            assert str(GROUP) in ask(tg, "/info")["text"]       # still answering
        finally:
            runner.stop()


def test_python_m_bot_polls_answers_and_keeps_token_out_of_logs(tmp_path):
    calendar_path = tmp_path / "calendar.yml"
    today = SystemClock().today()
    calendar_path.write_text(calendar_text(today), encoding="utf-8")
    dead = f"http://127.0.0.1:{free_port()}"
    with FakeTelegram() as tg:
        config_path = write_config(tmp_path, dead, dead, "https://api.telegram.org", calendar_path)
        env = {**ENV, "TELEGRAM_API_URL": tg.url, "TELEGRAM_BOT_TOKEN_BOT": "", "TELEGRAM_BOT_TOKEN": TOKEN}
        log_path = tmp_path / "bot.log"
        with ManagedProcess("bot", python_module("bot", f"--config.file={config_path}", "--poll-timeout=1",
                                                 "--log.level=debug"), log_path, env=env):
            reply = ask(tg, "/info", timeout=30)
            assert str(GROUP) in reply["text"]
        log_text = log_path.read_text(errors="replace")
        assert "bot-test-token" not in log_text
        assert "event=shared_token" in log_text
