"""/slo end to end: real Application, fake Bot API, real Prometheus scraping SLO counters.

A prometheus_client target exposes algopack_buckets_total, the publish-delay histogram and
the SLO target for two pairs; Prometheus scrapes it every second. The counters start at 0,
then the "month's" verdicts are added at once. The bot's fast clock puts the previous
month's end on the newest scrape of those values, so Prometheus' increase() has nothing
to extrapolate and the report's numbers are exact. The clock starts at 00:00:00 on the 1st
(a working day), report_time 00:01: the daily job posts the previous month's SLO.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bot.app import build_application
from exporter import slo
from exporter.clock import MSK, FastClock, SystemClock
from sandbox.telegram import FakeTelegram
from tests.integration.test_bot import ALLOWED_USER, GROUP, BotRunner, ask
from tests.integration.test_bot_digest import _config, _wait, wait_next_daily_check
from tests.support import prometheus_over

pytestmark = pytest.mark.integration

EQ_LINE = "EQ tradestats: 98 % · 3 · 1 · 10/15/220 · исчерпан ❗"
FX_LINE = "FX obstats: 99.9 % · 1 · 0 · 2.5/4.8/5 · 80.02 %"


def _query(url: str, promql: str) -> list[dict]:
    return requests.get(url + "/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slo-prom")
    registry = CollectorRegistry()
    labels = ["market", "endpoint"]
    buckets = Counter("algopack_buckets", "verdicts", [*labels, "outcome"], registry=registry)
    delay = Histogram("algopack_bucket_publish_delay_seconds", "delay", labels, buckets=slo.DELAY_BUCKETS,
                      registry=registry)
    target = Gauge("algopack_slo_target_ratio", "target", labels, registry=registry)
    for pair in (("eq", "tradestats"), ("fx", "obstats")):
        target.labels(*pair).set(0.995)
        delay.labels(*pair)
        for outcome in slo.OUTCOMES:
            buckets.labels(*pair, outcome)
    with prometheus_over(registry, tmp) as url:
        _wait(lambda: len(_query(url, "algopack_buckets_total")) == 6, "first scrape (zeros)")
        # eq tradestats: 196 on time (100 at 7 s, 96 at 12 s), 3 late (200 s), 1 missing
        buckets.labels("eq", "tradestats", "on_time").inc(196)
        buckets.labels("eq", "tradestats", "late").inc(3)
        buckets.labels("eq", "tradestats", "missing").inc(1)
        for value, times in ((7, 100), (12, 96), (200, 3)):
            for _ in range(times):
                delay.labels("eq", "tradestats").observe(value)
        # fx obstats: 1000 on time at 3 s, 1 late at 150 s
        buckets.labels("fx", "obstats", "on_time").inc(1000)
        buckets.labels("fx", "obstats", "late").inc(1)
        for _ in range(1000):
            delay.labels("fx", "obstats").observe(3)
        delay.labels("fx", "obstats").observe(150)
        _wait(lambda: _query(url, 'sum(algopack_buckets_total) == 1201'), "the month's verdicts scraped")
        _wait(lambda: _query(url, 'count(algopack_bucket_publish_delay_seconds_count == 1001) == 1'),
              "the histogram scraped")
        newest = max(float(s["value"][1]) for s in _query(url, "timestamp(algopack_buckets_total)"))
        yield url, newest


def _first_of_next_month() -> datetime:
    today = SystemClock().today()
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return datetime(year, month, 1, tzinfo=MSK)


def test_monthly_post_on_the_first_working_day_and_slo_command(prometheus, tmp_path):
    url, newest = prometheus
    first = _first_of_next_month()
    previous = f"{first.year - 1}-12" if first.month == 1 else f"{first.year}-{first.month - 1:02d}"
    # the previous month ends exactly at the newest scrape: nothing to extrapolate
    clock = FastClock(start=first, speed=30, anchor=newest)
    with FakeTelegram() as tg:
        runner = BotRunner(build_application(_config(tmp_path, url, tg.url, report_time="00:01"),
                                             clock=clock)).start()
        try:
            posted = tg.wait_for(lambda r: r["method"] == "sendMessage" and r["chat_id"] == GROUP
                                 and "SLO за" in (r["text"] or ""), timeout=30)
            lines = posted["text"].splitlines()
            assert lines[0].startswith("📈 <b>SLO за ") and "(цель 99.5 % интервалов вовремя)" in lines[0]
            assert lines[2:4] == [EQ_LINE, FX_LINE]
            assert len(posted["text"]) < 4096
            wait_next_daily_check(runner)
            assert sum(1 for r in tg.messages() if "SLO за" in (r["text"] or "")) == 1  # once

            asked = ask(tg, f"/slo {previous}", chat_id=ALLOWED_USER, timeout=30)
            assert asked["text"] == posted["text"]
            # this month has no verdicts yet; a month to come is not computed
            assert "Нет данных" in ask(tg, "/slo", chat_id=ALLOWED_USER, timeout=30)["text"]
            assert "ещё не начался" in ask(tg, f"/slo {first.year + 1}-01", chat_id=ALLOWED_USER)["text"]
            assert "Не понял" in ask(tg, "/slo ноябрь", chat_id=ALLOWED_USER)["text"]
        finally:
            runner.stop()
