"""The evening digest end to end: real Application, fake Bot API, real Prometheus with a rule.

A small prometheus_client target exposes the algopack_* series the digest reads; Prometheus
scrapes and evaluates every second, and one alerting rule (`missing_intervals > 0`) makes
real ALERTS / ALERTS_FOR_STATE series. Before the bot starts, the target plays a short day:
eq tradestats misses 2 intervals (alert 1), recovers (resolved), misses 3 (alert 2), while
fo obstats misses 1 throughout (alert 3); the eq tradestats publish delay goes 41 s → 5 s on
a new bucket. The bot runs a fast clock (×20) that starts at 00:30:00 with report_time 00:31,
so the daily job fires on the shared clock a few real seconds after start.
"""

from __future__ import annotations

import time
from datetime import datetime
from datetime import time as dtime
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Gauge

from bot.app import build_application
from exporter.clock import MSK, FastClock, SystemClock
from exporter.config import load_config
from sandbox.procs import free_port
from sandbox.telegram import FakeTelegram
from tests.integration.test_bot import ALLOWED_USER, BOT_ID, ENV, GROUP, BotRunner, ask
from tests.support import prometheus_over, wait_until

pytestmark = pytest.mark.integration

CALENDAR = """\
timezone: Europe/Moscow
weekend_default: working
markets:
  eq: {sessions: [["10:00", "18:40"], ["19:05", "23:50"]]}
  fx: {sessions: [["07:00", "19:00"]]}
  fo: {sessions: [["09:00", "23:50"]]}
"""

RULES = {"groups": [{"name": "digest-test", "interval": "1s", "rules": [{
    "alert": "AlgopackMissingIntervals", "expr": "algopack_missing_intervals > 0",
    "labels": {"severity": "warning"}}]}]}


def _query(prom_url: str, promql: str) -> list[dict]:
    return requests.get(prom_url + "/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    wait_until(predicate, timeout, what, step=0.2)


def wait_next_daily_check(runner, timeout: float = 30.0) -> None:
    """The daily-report job finished the run that posted and one more after it (which must post nothing)."""
    state = runner.application.bot_data.state
    _wait(lambda: state.last_report_check is not None and state.daily_checks >= state.last_report_check + 2,
          "one more daily-report run after the post", timeout)


def _firing(prom_url: str, market: str, endpoint: str) -> bool:
    return bool(_query(prom_url, f'ALERTS{{alertstate="firing",market="{market}",endpoint="{endpoint}"}}'))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digest-prom")
    registry = CollectorRegistry()
    labels = ["market", "endpoint"]
    delay = Gauge("algopack_publish_delay_seconds", "delay", labels, registry=registry)
    tradetime = Gauge("algopack_last_tradetime_timestamp_seconds", "tradetime", labels, registry=registry)
    missing = Gauge("algopack_missing_intervals", "missing", labels, registry=registry)
    hi2 = Gauge("algopack_hi2_present", "hi2", ["market"], registry=registry)
    now = time.time()
    delay.labels("eq", "tradestats").set(41)
    tradetime.labels("eq", "tradestats").set(now - 600)
    delay.labels("eq", "orderstats").set(12)
    tradetime.labels("eq", "orderstats").set(now - 600)
    missing.labels("eq", "tradestats").set(2)
    missing.labels("eq", "orderstats").set(0)
    missing.labels("fo", "obstats").set(1)
    hi2.labels("eq").set(1)
    hi2.labels("fx").set(0)                        # fo: no hi2 series at all
    with prometheus_over(registry, tmp, RULES) as url:
        _wait(lambda: _firing(url, "eq", "tradestats") and _firing(url, "fo", "obstats"), "first alerts")
        missing.labels("eq", "tradestats").set(0)              # eq tradestats recovers: resolved
        delay.labels("eq", "tradestats").set(5)                 # a new bucket, published faster
        tradetime.labels("eq", "tradestats").set(now - 300)
        _wait(lambda: not _firing(url, "eq", "tradestats"), "eq tradestats resolved")
        missing.labels("eq", "tradestats").set(3)               # and breaks again: a second episode
        _wait(lambda: _firing(url, "eq", "tradestats"), "second eq tradestats alert")
        yield url


def _config(tmp: Path, prom_url: str, tg_url: str, report_time: str | None = None):
    calendar = tmp / "calendar.yml"
    calendar.write_text(CALENDAR, encoding="utf-8")
    telegram = {"api_url": tg_url, "allowed_user_ids": [ALLOWED_USER]}
    if report_time:
        telegram["report_time"] = report_time
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump({
        "calendar": {"file": str(calendar)}, "telegram": telegram, "prometheus": {"url": prom_url},
        "alertmanager": {"url": f"http://127.0.0.1:{free_port()}"},
    }), encoding="utf-8")
    return load_config(path, environ=ENV)


def _after(tg: FakeTelegram, record: dict, method: str, timeout: float = 30.0) -> dict:
    """The next record of `method` in the same chat after `record`."""
    index = next(i for i, r in enumerate(tg.messages()) if r is record or r == record)
    return tg.wait_for(lambda r: r["method"] == method and r["chat_id"] == record["chat_id"]
                       and r["bot_id"] == BOT_ID, timeout=timeout, since=index + 1)


def _check_digest_text(text: str) -> None:
    lines = text.splitlines()
    assert lines[0].startswith("📊 <b>Итоги дня ")
    assert lines[1] == "HI2: EQ ✅ · FX ❌ · FO — нет данных"
    assert lines[2] == "Задержка публикации, с (макс / мин / средн / медиана):"
    assert "EQ orderstats 12 / 12 / 12 / 12" in lines
    assert "EQ tradestats 41 / 5 / 23 / 23" in lines          # two buckets, one delay each
    assert "FX: нет данных" in lines and "FO: нет данных" in lines
    assert lines[-1] == "Пропущенных интервалов: 4 (EQ 3 · FO 1) · Алертов за день: 3"


def test_daily_job_posts_digest_then_png_and_digest_command(prometheus, tmp_path):
    # shortly after midnight: the day so far is 90 real seconds long, so /report's query step is 1 s
    # and every scraped bucket is seen
    start = datetime.combine(SystemClock().today(), datetime.min.time(), MSK).replace(minute=30)
    clock = FastClock(start=start, speed=20)
    with FakeTelegram() as tg:
        config = _config(tmp_path, prometheus, tg.url, report_time="00:31")
        assert config.telegram.report_time == "00:31"
        runner = BotRunner(build_application(config, clock=clock)).start()
        try:
            # the daily job, on the shared clock: 00:31 virtual = 3 s real after start
            digest = tg.wait_for(lambda r: r["method"] == "sendMessage" and r["chat_id"] == GROUP
                                 and "Итоги дня" in (r["text"] or ""), timeout=30)
            assert clock.now().time() >= dtime(0, 31)
            assert f"Итоги дня {start:%d.%m.%Y}" in digest["text"]
            _check_digest_text(digest["text"])
            photo = _after(tg, digest, "sendPhoto")
            png = tg.file_bytes(photo["photo_sha256"])
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
            assert "EQ | Акции" in photo["text"] and "tradestats: 41 / 5 / 23 / 23" in photo["text"]
            # only markets with data get a plot, and only once a day
            wait_next_daily_check(runner)
            group = [r for r in tg.messages() if r["chat_id"] == GROUP]
            assert sum(1 for r in group if r["method"] == "sendPhoto") == 1
            assert sum(1 for r in group if "Итоги дня" in (r["text"] or "")) == 1

            # on demand, in a private chat
            reply = ask(tg, "/digest", chat_id=ALLOWED_USER, timeout=30)
            _check_digest_text(reply["text"])
            assert _after(tg, reply, "sendPhoto")["photo_sha256"]
            narrowed = ask(tg, f"/digest fo {start:%d.%m.%Y}", chat_id=ALLOWED_USER, timeout=30)
            assert narrowed["text"].splitlines()[1:] == [
                "HI2: FO — нет данных", "Задержка публикации, с (макс / мин / средн / медиана):",
                "FO: нет данных", "Пропущенных интервалов: 1 (FO 1) · Алертов за день: 1"]
            assert "Не понял" in ask(tg, "/digest 2099-01-01", chat_id=ALLOWED_USER)["text"]
        finally:
            runner.stop()


def test_prometheus_down_digest_says_so_and_bot_stays_up(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with FakeTelegram() as tg:
        runner = BotRunner(build_application(_config(tmp_path, dead, tg.url), clock=SystemClock())).start()
        try:
            reply = ask(tg, "/digest", chat_id=ALLOWED_USER)
            assert "Итоги дня" in reply["text"]
            assert "Prometheus недоступен (нет соединения) — итоги дня посчитать не удалось" in reply["text"]
            assert not [r for r in tg.messages() if r["method"] == "sendPhoto"]
            assert str(ALLOWED_USER) in ask(tg, "/info", chat_id=ALLOWED_USER)["text"]
        finally:
            runner.stop()
