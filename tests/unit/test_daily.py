"""Daily aggregates (exporter/daily.py): streamed counts equal the whole-day checks, a stream
holds one page at a time, observed counts carry over only for a completely observed day,
and the exporter process imports no pandas/numpy."""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import weakref
from dataclasses import replace
from datetime import date, datetime
from types import MappingProxyType

from exporter import checks, daily
from exporter.clock import MSK
from exporter.config import IssConfig
from exporter.iss import IssClient, IssStats, PageStream
from exporter.state import PairState
from exporter.table import Table
from tests.support import FakeIss

DAY = date(2026, 11, 24)
TODAY = date(2026, 11, 25)


def obstats_rows(seed: int = 3, secids: int = 60, intervals: int = 40) -> list[list]:
    rnd = random.Random(seed)
    rows = []
    for i in range(intervals):
        t = f"{10 + i // 12:02d}:{(i % 12) * 5:02d}:00"
        for s in range(secids):
            if rnd.random() < 0.8:
                rows.append([t, f"S{s:03d}"])
                if rnd.random() < 0.05:
                    rows.append([t, f"S{s:03d}"])  # a duplicate row counts once
    rows.append([None, "S000"])
    rows.append(["garbage", "S001"])
    return rows


def test_streamed_counts_equal_the_whole_day_check_page_by_page():
    rows = obstats_rows()
    whole = checks.secids_per_interval(Table(("tradetime", "secid"), rows))
    counter = daily.IntervalCounter()
    for start in range(0, len(rows), 97):  # any page boundaries
        counter.add(Table(("tradetime", "secid"), rows[start:start + 97]).values("tradetime", "secid"))
    assert counter.result() == whole and "garbage" not in whole
    assert max(whole.values()) == checks.max_secids_per_interval(whole)


def test_streamed_liquidity_equals_most_liquid():
    rows = [["SiZ6", 5.0], ["RIZ6", 7.0], ["SiZ6", 4.0], [None, 99.0], ["BRF7", None], ["X", float("nan")]]
    totals = daily.ValueTotals()
    totals.add(Table(("secid", "val"), rows[:2]).values("secid", "val"))
    totals.add(Table(("secid", "val"), rows[2:]).values("secid", "val"))
    assert totals.best() == checks.most_liquid(Table(("secid", "val"), rows)) == "SiZ6"
    assert daily.ValueTotals().best() is None


def test_the_stream_never_holds_more_than_one_page(monkeypatch):
    rows = [["2026-11-24", t, f"S{s:04d}", "2026-11-24 10:00:00"]
            for t in ("10:05:00", "10:10:00", "10:15:00") for s in range(900)]
    pagesize = 250
    fake = FakeIss()

    def answer(path, query):
        start = int(query.get("start", 0))
        return {"data": {"columns": ["tradedate", "tradetime", "secid", "SYSTIME"],
                         "data": rows[start:start + pagesize]},
                "data.cursor": {"columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, len(rows), pagesize]]}}

    fake.route("/iss/datashop/algopack/eq/obstats.json", answer)
    alive: list[weakref.ref] = []
    most_alive = 0
    blocks = sys.modules[PageStream.__module__]  # where the stream parses its pages
    real_parse, real_get = blocks.parse_block, IssClient._get_json

    def parse(payload, block, required=()):
        table = real_parse(payload, block, required)
        if block == "data":
            alive.append(weakref.ref(table))
        return table

    def get_json(self, path, params):
        nonlocal most_alive
        gc.collect()
        most_alive = max(most_alive, sum(1 for ref in alive if ref() is not None))
        return real_get(self, path, params)

    monkeypatch.setattr(blocks, "parse_block", parse)
    monkeypatch.setattr(IssClient, "_get_json", get_json)
    client = IssClient(IssConfig(base_url=fake.url, timeout_seconds=2.0, retries=0), IssStats())
    try:
        counter = daily.IntervalCounter()
        pages = client.iter_pages("/iss/datashop/algopack/eq/obstats.json", {"date": "2026-11-24"},
                                  required_columns=daily.SECID_COLUMNS, columns=daily.SECID_COLUMNS, max_pages=100)
        for page in pages:
            counter.add(page.values(*daily.SECID_COLUMNS))
            del page
        counts = counter.result()
    finally:
        client.close()
        fake.close()
    assert pages.pages == len(rows) // pagesize + 1 and pages.rows == len(rows)
    assert counts == {"10:05:00": 900, "10:10:00": 900, "10:15:00": 900}
    assert most_alive == 0, "an earlier page was still held when the next one was requested"


def ts(hh, mm, day=24):
    return datetime(2026, 11, day, hh, mm, tzinfo=MSK).timestamp()


def test_observed_counts_carry_over_only_for_a_completely_observed_day():
    state = PairState("eq", "obstats", day=DAY, seen_buckets=frozenset({ts(10, 5), ts(10, 10)}))
    state = daily.observe(state, DAY, "10:05:00", 200)
    assert daily.carried(state, DAY, DAY) is None  # still being observed
    state = daily.observe(state, DAY, "10:10:00", 190)
    kept = daily.close_day(state)
    assert dict(daily.carried(replace(kept, day=TODAY), DAY, TODAY)) == {"10:05:00": 200, "10:10:00": 190}
    # a probe bucket whose interval was never counted (started late, a skipped bucket): a gap
    gap = replace(state, seen_buckets=state.seen_buckets | {ts(10, 15)})
    assert daily.carried(replace(daily.close_day(gap), day=TODAY), DAY, TODAY) is None
    # only the last KEEP_DAYS days stay
    many = replace(state, observed_counts=MappingProxyType(
        {f"2026-11-{d:02d}": MappingProxyType({"10:05:00": 1}) for d in range(10, 25)}))
    assert len(daily.close_day(many).observed_counts) == daily.KEEP_DAYS


def test_the_exporter_process_imports_no_pandas_or_numpy():
    code = "import exporter.app, sys; assert 'pandas' not in sys.modules and 'numpy' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
