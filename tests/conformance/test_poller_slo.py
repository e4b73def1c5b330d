"""Feed SLO accounting through the real poller: a bucket whose only rows are rejected is
missing, never on time; a backlog read in one poll is judged by each row's own SYSTIME.

Fixture facts (iss-api.md §11): "SuperCandles paging", "column casing" (eq tradestats
`SYSTIME` upper case), "nulls" (odd rows skipped and counted in algopack_rows_rejected_total).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from exporter import slo

from .poller_iss import Exporter, FakeIss, at, supercandles_page, tradestats_row

PAIR = ("eq", "tradestats")
ROUTE = "/iss/datashop/algopack/eq/tradestats/SBER.json"
MARKETS = {"eq": {"enabled": True, "probe": "SBER", "endpoints": ["tradestats"]},
           "fx": {"enabled": False}, "fo": {"enabled": False}}
FMT = "%Y-%m-%d %H:%M:%S"


def rows_handler(clock, delays: dict[str, float], absent: set[str], bad: dict[str, list]):
    """Rows of SBER published by now: bucket T at T + delays.get(T, 11 s); `absent` buckets
    have no row, `bad[T]` rows follow bucket T's place."""
    def handler(path, query):
        now = clock.now()
        rows = []
        bucket = at(10, 5)
        while bucket <= now and bucket <= at(18, 40):
            key = bucket.strftime("%H:%M")
            published = bucket + timedelta(seconds=delays.get(key, 11))
            if key not in absent and published <= now:
                rows.append(tradestats_row("2026-11-25", bucket.strftime("%H:%M:%S"), published.strftime(FMT)))
            rows.extend(bad.get(key, []))
            bucket += timedelta(minutes=5)
        return supercandles_page(rows, int(query.get("start", 0)))
    return handler


@pytest.fixture
def iss():
    fake = FakeIss()
    yield fake
    fake.close()


@pytest.fixture
def exporter(tmp_path, iss):
    exp = Exporter(tmp_path, iss, at(9, 58), MARKETS)
    yield exp
    exp.close()


def counted(exporter) -> dict[str, float]:
    return {o: exporter.value("algopack_buckets_total", market="eq", endpoint="tradestats", outcome=o)
            for o in slo.OUTCOMES}


def test_a_bucket_with_only_rejected_rows_is_missing(iss, exporter):
    bad = {"10:20": [tradestats_row("2026-11-25", "10:20:00", "2026-11-25 23:59:00"),    # future SYSTIME
                     tradestats_row("2026-11-24", "10:20:00", "2026-11-25 10:20:09"),    # other day
                     tradestats_row("2026-11-25", "10:22:30", "2026-11-25 10:22:40")]}   # off grid
    iss.route(ROUTE, rows_handler(exporter.clock, {}, {"10:20"}, bad))
    exporter.run_until(at(11, 0, 30))
    assert sum(exporter.app.store.get(PAIR).rejected.values()) == 3
    # 10:05 .. 11:00 came at +11 s; 10:20 only as rejected rows: missing once 10:52 passed
    assert counted(exporter) == {"on_time": 11, "late": 0, "missing": 1}
    assert exporter.value("algopack_bucket_publish_delay_seconds_count", market="eq", endpoint="tradestats") == 11


def test_a_backlog_is_judged_by_each_rows_systime(iss, exporter):
    # 10:10 .. 10:25 held back and published together at 10:33:00 (a resumed feed):
    # delays 23, 18, 13 and 8 minutes after their ends -> all late, none missing
    delays = {key: (at(10, 33) - at(10, int(key[3:]))).total_seconds() for key in ("10:10", "10:15", "10:20", "10:25")}
    delays["10:30"] = 130  # just over the 120 s grace: late
    iss.route(ROUTE, rows_handler(exporter.clock, delays, set(), {}))
    exporter.run_until(at(10, 41))
    assert counted(exporter) == {"on_time": 3, "late": 5, "missing": 0}  # 10:05, 10:35, 10:40 on time
    cumulative = {le: exporter.value("algopack_bucket_publish_delay_seconds_bucket", market="eq",
                                     endpoint="tradestats", le=le) for le in ("15", "180", "600", "1800")}
    # 11 s x3, 130 s, 480 s (10:25), 780 / 1080 / 1380 s (10:20 / 10:15 / 10:10)
    assert cumulative == {"15": 3, "180": 4, "600": 5, "1800": 8}
