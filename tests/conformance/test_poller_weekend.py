"""A weekend session through the real client and poller, rows filed either way.

Fixture facts (iss-api.md §11 "weekend sessions"; §7): a Saturday session counts as part of
the NEXT trading day; which `tradedate` ALGOPACK rows of a Saturday carry is unverified, so
both are served: mode "calendar" files them under the calendar date D (Sat 21 Nov 2026), mode
"next" under the next trading day N (Mon 23 Nov), served only for queries whose from/till
covers N (§11 "SuperCandles paging": ascending rows, `data.cursor`; "column casing": SYSTIME).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from exporter.clock import MSK

from .poller_iss import Exporter, FakeIss, supercandles_page, tradestats_row

PAIR = ("eq", "tradestats")
ROUTE = "/iss/datashop/algopack/eq/tradestats/SBER.json"
MARKETS = {"eq": {"enabled": True, "probe": "SBER", "endpoints": ["tradestats"]},
           "fx": {"enabled": False}, "fo": {"enabled": False}}
WEEKEND = """
    2026-11-21: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}}}
"""


def sat(hh, mm, ss=0):
    return datetime(2026, 11, 21, hh, mm, ss, tzinfo=MSK)


def mon(hh, mm, ss=0):
    return datetime(2026, 11, 23, hh, mm, ss, tzinfo=MSK)


def buckets(first, last):
    bucket = first
    while bucket <= last:
        yield bucket
        bucket += timedelta(minutes=5)


def weekend_iss(clock, mode: str, monday_until: datetime | None = None):
    """SBER rows of Saturday's session (filed per `mode`) and of Monday up to `monday_until`."""
    def handler(path, query):
        now = clock.now()
        filed = "2026-11-21" if mode == "calendar" else "2026-11-23"
        rows = []
        for bucket in buckets(sat(10, 5), sat(19, 0)):
            loaded = bucket + timedelta(seconds=11)
            if loaded <= now and query["from"] <= filed <= query["till"]:
                rows.append((filed, bucket.strftime("%H:%M:%S"), 0,
                             tradestats_row(filed, bucket.strftime("%H:%M:%S"), loaded.strftime("%Y-%m-%d %H:%M:%S"))))
        for bucket in buckets(mon(10, 5), monday_until or mon(10, 0)):
            loaded = bucket + timedelta(seconds=11)
            if loaded <= now and query["from"] <= "2026-11-23" <= query["till"]:
                rows.append(("2026-11-23", bucket.strftime("%H:%M:%S"), 1,
                             tradestats_row("2026-11-23", bucket.strftime("%H:%M:%S"),
                                            loaded.strftime("%Y-%m-%d %H:%M:%S"))))
        rows.sort(key=lambda r: r[:3])  # ascending by tradedate, tradetime
        return supercandles_page([r[3] for r in rows], int(query.get("start", 0)))
    return handler


@pytest.fixture
def iss():
    fake = FakeIss()
    yield fake
    fake.close()


@pytest.mark.parametrize("mode", ["calendar", "next"])
def test_a_whole_weekend_session_has_no_false_hole_either_way(tmp_path, iss, mode):
    exporter = Exporter(tmp_path, iss, sat(9, 58), MARKETS, days=WEEKEND)
    iss.route(ROUTE, weekend_iss(exporter.clock, mode))
    try:
        for bucket in buckets(sat(10, 5), sat(19, 0)):
            state = exporter.poll(PAIR, bucket + timedelta(seconds=20))
            assert state.up, state.last_error
            assert exporter.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 0, bucket
        exporter.clock.set(sat(19, 5))
        assert exporter.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 0
        assert len(state.seen_buckets) == 108
        assert exporter.value("algopack_last_tradetime_timestamp_seconds", market="eq",
                              endpoint="tradestats") == sat(19, 0).timestamp()
        assert exporter.value("algopack_publish_delay_seconds", market="eq", endpoint="tradestats") == 11
        # from = D, till = N on the weekend session day
        assert {(q["from"], q["till"]) for _, q in iss.requests} == {("2026-11-21", "2026-11-23")}
        assert exporter.value("algopack_rows_rejected_total", market="eq", endpoint="tradestats",
                              reason="other_day") == 0
    finally:
        exporter.close()


def test_saturday_rows_filed_under_monday_never_mark_mondays_buckets_seen(tmp_path, iss):
    exporter = Exporter(tmp_path, iss, mon(9, 58), MARKETS, days=WEEKEND)
    iss.route(ROUTE, weekend_iss(exporter.clock, "next", monday_until=mon(10, 10)))  # Monday stops after 10:10
    try:
        for bucket in buckets(mon(10, 5), mon(10, 40)):
            state = exporter.poll(PAIR, bucket + timedelta(seconds=20))
            assert state.up, state.last_error
        assert state.seen_buckets == {mon(10, 5).timestamp(), mon(10, 10).timestamp()}
        exporter.clock.set(mon(10, 42, 30))
        # 10:15 .. 10:40 are due (grace 120 s) and missing although Saturday has rows at those times
        assert exporter.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 6
        assert exporter.value("algopack_last_tradetime_timestamp_seconds", market="eq",
                              endpoint="tradestats") == mon(10, 10).timestamp()
        assert exporter.value("algopack_rows_rejected_total", market="eq", endpoint="tradestats",
                              reason="before_bucket") == 108
        assert {(q["from"], q["till"]) for _, q in iss.requests} == {("2026-11-23", "2026-11-23")}
    finally:
        exporter.close()
