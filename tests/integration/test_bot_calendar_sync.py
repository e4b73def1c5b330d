"""`/calendar sync` and what /calendar shows about synced days: the real bot Application
against the fake Bot API and the sandbox ISS calendar routes (sandbox/isscalendar.py,
serving the shipped calendar.yml as the 'exchange'). Prometheus/Alertmanager are not
needed here. The bot's clock starts on 2026-01-10, so the synced range is that year.
"""

from __future__ import annotations

import sys
from datetime import date, datetime

import pytest
import requests
import yaml

from bot import texts
from bot.app import build_application
from exporter.calendar import load_calendar
from exporter.clock import MSK, FastClock
from exporter.config import load_config
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, wait_http
from sandbox.telegram import FakeTelegram
from tests.calendars import calendar_text

from .test_bot import ENV, GROUP, BotRunner, ask, digest

pytestmark = pytest.mark.integration

ADMIN = 42
NON_ADMIN = 43

TARGET = calendar_text("2026-07-15: holiday   # manual: must survive every sync",
                       comment="our calendar: comments must survive the sync")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bot-sync")
    source = tmp / "exchange.yml"
    source.write_text((REPO_ROOT / "calendar.yml").read_text(encoding="utf-8"), encoding="utf-8")
    port = free_port()
    iss = ManagedProcess("iss-calendar", [sys.executable, "-m", "sandbox.isscalendar", "--listen",
                                          f"127.0.0.1:{port}", "--calendar", str(source)], tmp / "iss-calendar.log")
    iss_url = f"http://127.0.0.1:{port}"
    target = tmp / "calendar.yml"
    target.write_text(TARGET, encoding="utf-8")
    try:
        wait_http(f"{iss_url}/sandbox/health", timeout=20, proc=iss)
        with FakeTelegram() as tg:
            config_path = tmp / "config.yml"
            config_path.write_text(yaml.safe_dump({
                "iss": {"base_url": iss_url, "auth": "none", "retries": 0, "timeout_seconds": 5},
                "calendar": {"file": str(target)},
                "telegram": {"api_url": tg.url, "allowed_user_ids": [ADMIN, NON_ADMIN], "admin_user_ids": [ADMIN]},
                "prometheus": {"url": f"http://127.0.0.1:{free_port()}"},
                "alertmanager": {"url": f"http://127.0.0.1:{free_port()}"},
            }), encoding="utf-8")
            config = load_config(config_path, environ=ENV)
            clock = FastClock(start=datetime(2026, 1, 10, 12, 0, tzinfo=MSK), speed=1)
            runner = BotRunner(build_application(config, clock=clock)).start()
            try:
                yield {"tg": tg, "iss": iss_url, "calendar": target}
            finally:
                runner.stop()
    finally:
        iss.stop()


def fault(iss_url: str, mode: str) -> None:
    requests.post(f"{iss_url}/sandbox/calendar-fault", json={"mode": mode}, timeout=5).raise_for_status()


def test_calendar_sync_admin_only_failure_then_success_and_display(setup):
    tg, iss_url, path = setup["tg"], setup["iss"], setup["calendar"]
    before = digest(path)

    # an allowed user who is not an admin: refused, nothing fetched or written
    reply = ask(tg, "/calendar sync", user_id=NON_ADMIN)
    assert reply["text"] == texts.CAL_SYNC_NOT_ADMIN
    assert digest(path) == before

    # ISS answers an HTML page: a clear message, the file is untouched
    fault(iss_url, "html")
    try:
        reply = ask(tg, "/calendar sync", user_id=ADMIN, timeout=30)
    finally:
        fault(iss_url, "none")
    assert "не удалась" in reply["text"] and "календарь не изменён" in reply["text"]
    assert "/iss/calendars.json" in reply["text"]
    assert digest(path) == before

    # a real sync: counts, the changed days (truncated under the Telegram limit), the file filled
    reply = ask(tg, "/calendar sync", user_id=ADMIN, timeout=60)
    text = reply["text"]
    assert len(text) <= 4096
    assert "календарь сверен с биржей (ISS) за 10.01.2026–11.01.2027" in text
    assert "ручных правок сохранено 1" in text
    added = int(text.split("добавлено ")[1].split(",")[0])
    assert added > 50
    assert "+ 2026-01-31 рабочий: eq" in text  # the first weekend session of the range
    assert "… и ещё" in text  # a year of changes does not fit one message
    ours = load_calendar(str(path))
    assert ours.day_source(date(2026, 2, 7)) == "iss"
    assert not ours.is_working_day(date(2026, 7, 15))
    assert "# manual: must survive every sync" in path.read_text(encoding="utf-8")

    # /calendar shows where each day comes from, and the hours of a weekend session
    month = ask(tg, "/calendar 2026-02")
    assert "07.02.2026 (Сб) — рабочий (торгуют: EQ 10:00–19:00; FO 10:00–19:00) · биржа" in month["text"]
    july = ask(tg, "/calendar 2026-07")
    assert "15.07.2026 (Ср) — выходной · вручную" in july["text"]

    # a re-sync changes nothing and says the manual day was kept
    synced = digest(path)
    reply = ask(tg, "/calendar sync", user_id=ADMIN, timeout=60)
    assert "добавлено 0, обновлено 0, ручных правок сохранено 1" in reply["text"]
    assert "= 2026-07-15 вручную выходной оставлен (биржа: рабочий" in reply["text"] or \
        "= 2026-07-15 вручную выходной оставлен (биржа: по умолчанию)" in reply["text"]
    assert digest(path) == synced


def test_calendar_sync_in_help(setup):
    reply = ask(setup["tg"], "/help", chat_id=GROUP, user_id=ADMIN)
    assert "/calendar sync" in reply["text"]
