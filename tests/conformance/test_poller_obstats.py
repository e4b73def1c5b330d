"""obstats coverage: today's newest interval against the SAME interval of the previous day.

Fixture facts (iss-api.md §11 "FX instruments": EQ's evening session lists fewer shares than
the main one, so the count of distinct secids follows the time of day; §2 all-instruments
route `obstats.json?date=D`, `latest=1`; §11 "SuperCandles paging", "column casing").
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from .poller_iss import Exporter, FakeIss, at, supercandles_page

MARKETS = {"eq": {"enabled": True, "probe": "SBER", "endpoints": ["obstats"]},
           "fx": {"enabled": False}, "fo": {"enabled": False}}
PAIR = ("eq", "obstats")
COLUMNS = ["tradedate", "tradetime", "secid", "spread_bbo", "SYSTIME"]


def secids(tradetime: str) -> int:
    """Main session lists 200 shares, the evening session 80; yesterday had no 23:50 bucket."""
    return 200 if tradetime <= "18:40:00" else 80


def obstats_iss(iss: FakeIss, clock, today_evening: int) -> None:
    def rows_of(day: str, tradetimes, count):
        return [[day, t, f"S{i:03d}" if i else "SBER", 0.1, f"{day} {t}"] for t in tradetimes for i in range(count(t))]

    def all_instruments(path, query):
        if query["date"] == "2026-11-24":
            times = [t for t in ("10:05:00", "12:00:00", "18:40:00", "19:10:00", "19:15:00")]
            rows = rows_of("2026-11-24", times, secids)
        else:
            now = clock.now()
            newest = (now - timedelta(minutes=(now.minute % 5), seconds=now.second)).strftime("%H:%M:%S")
            rows = rows_of("2026-11-25", [newest], lambda t: secids(t) if t <= "18:40:00" else today_evening)
        return supercandles_page(rows, int(query.get("start", 0)), COLUMNS)

    def sber(path, query):
        rows = []
        bucket = at(10, 5)
        while bucket <= clock.now() - timedelta(seconds=11):
            if bucket <= at(18, 40) or bucket >= at(19, 10):
                t = bucket.strftime("%H:%M:%S")
                rows.append(["2026-11-25", t, "SBER", 0.1, (bucket + timedelta(seconds=11)).strftime("%Y-%m-%d %H:%M:%S")])
            bucket += timedelta(minutes=5)
        return supercandles_page(rows, int(query.get("start", 0)), COLUMNS)

    iss.route("/iss/datashop/algopack/eq/obstats.json", all_instruments)
    iss.route("/iss/datashop/algopack/eq/obstats/SBER.json", sber)


@pytest.fixture
def iss():
    fake = FakeIss()
    yield fake
    fake.close()


@pytest.mark.parametrize(("evening", "same_interval"), [(78, 80), (40, 80)])
def test_evening_count_is_compared_with_yesterdays_evening(tmp_path, iss, evening, same_interval):
    exporter = Exporter(tmp_path, iss, at(10, 5), MARKETS)
    obstats_iss(iss, exporter.clock, evening)
    try:
        exporter.poll(PAIR, at(10, 5, 20))
        assert exporter.value("algopack_obstats_secids", market="eq") == 200
        assert exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq") == 200
        exporter.poll(PAIR, at(12, 0, 20))
        assert exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq") == 200
        exporter.poll(PAIR, at(19, 15, 20))
        assert exporter.value("algopack_obstats_secids", market="eq") == evening
        assert exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq") == same_interval
        assert exporter.value("algopack_obstats_secids_prev_day_max", market="eq") == 200
        # an interval yesterday did not have: unknown, so no comparison (and no alert)
        exporter.poll(PAIR, at(19, 20, 20))
        assert math.isnan(exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq"))
        # the previous day is downloaded once
        prev = [q for path, q in iss.requests if path.endswith("obstats.json") and q["date"] == "2026-11-24"]
        assert {q["start"] for q in prev} == {"0"}
    finally:
        exporter.close()


def test_same_interval_series_is_present_before_any_poll(tmp_path, iss):
    exporter = Exporter(tmp_path, iss, at(9, 0), MARKETS)
    try:
        assert math.isnan(exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq"))
    finally:
        exporter.close()
