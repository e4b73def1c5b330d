"""FUTOI through the real client and poller against ISS-shaped answers.

Fixture facts (iss-api.md §11 "FUTOI paging", "FUTOI order", "column casing"):
`/iss/analyticalproducts/futoi/securities/{ticker}.json` answers blocks `futoi` and
`futoi.dates`, NO cursor block, ignores `start`, at most 1000 rows, newest first; one row per
(bucket, clgroup FIZ/YUR); `systime` lower case.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from .poller_iss import FUTOI, Exporter, FakeIss, at

PAIR = ("fo", "futoi")
ROUTE = "/iss/analyticalproducts/futoi/securities/RI.json"


def futoi_answer(clock):
    """Rows published up to now (bucket T at T + 7 s), newest first, `start` ignored (§11)."""
    def handler(path, query):
        now = clock.now()
        rows = []
        bucket = at(9, 5)
        seq = 0
        while bucket + timedelta(seconds=7) <= now and bucket.date() == now.date():
            systime = (bucket + timedelta(seconds=7)).strftime("%Y-%m-%d %H:%M:%S")
            for group in ("FIZ", "YUR"):
                seq += 1
                rows.append([1, seq, bucket.strftime("%Y-%m-%d"), bucket.strftime("%H:%M:%S"), "RI", group,
                             100, 200, -100, 10, 5, systime, bucket.strftime("%Y-%m-%d")])
            bucket += timedelta(minutes=5)
        rows.reverse()  # newest first
        return {"futoi": {"columns": FUTOI, "data": rows[:1000]},
                "futoi.dates": {"columns": ["from", "till"], "data": [["2020-01-03", now.strftime("%Y-%m-%d")]]}}
    return handler


@pytest.fixture
def iss():
    fake = FakeIss()
    yield fake
    fake.close()


def test_futoi_is_read_with_one_request_per_poll_whatever_the_order(tmp_path, iss):
    exporter = Exporter(tmp_path, iss, at(9, 0), {"eq": {"enabled": False}, "fx": {"enabled": False},
                                                   "fo": {"enabled": True, "endpoints": ["futoi"]}})
    iss.route(ROUTE, futoi_answer(exporter.clock))
    try:
        polls = 0
        for minute in range(10, 60, 5):  # ten buckets, one poll each, steady state
            before = iss.count(ROUTE)
            state = exporter.poll(PAIR, at(9, minute, 20))
            polls += 1
            assert iss.count(ROUTE) - before == 1, f"poll at 09:{minute:02d} sent {iss.count(ROUTE) - before}"
            assert state.up, state.last_error
        # every bucket so far is seen (union), the newest is the max (the first row of the answer)
        assert len(state.seen_buckets) == 11  # 09:05 .. 09:55
        assert exporter.value("algopack_last_tradetime_timestamp_seconds", market="fo",
                              endpoint="futoi") == at(9, 55).timestamp()
        assert exporter.value("algopack_publish_delay_seconds", market="fo", endpoint="futoi") == 7
        assert exporter.value("algopack_up", market="fo", endpoint="futoi") == 1
        # one request per poll, never a re-read, and no `start` paging of a cursor-less answer
        assert iss.count(ROUTE) == polls
        assert {q.get("start", "0") for _, q in iss.requests} == {"0"}
        assert {(q["from"], q["till"]) for _, q in iss.requests} == {("2026-11-25", "2026-11-25")}
    finally:
        exporter.close()


def test_futoi_bad_row_is_counted_once_although_every_poll_reads_it_again(tmp_path, iss):
    exporter = Exporter(tmp_path, iss, at(9, 0), {"eq": {"enabled": False}, "fx": {"enabled": False},
                                                   "fo": {"enabled": True, "endpoints": ["futoi"]}})
    good = futoi_answer(exporter.clock)

    def with_bad_row(path, query):
        body = good(path, query)
        body["futoi"]["data"].append([1, 0, "2026-11-25", "09:05:00", "RI", "FIZ", 1, 1, -1, 1, 1, "", "2026-11-25"])
        return body

    iss.route(ROUTE, with_bad_row)
    try:
        for minute in (10, 15, 20):
            state = exporter.poll(PAIR, at(9, minute, 20))
            assert state.up, state.last_error
        assert exporter.value("algopack_rows_rejected_total", market="fo", endpoint="futoi", reason="bad_time") == 1
        assert len(state.seen_buckets) == 4
    finally:
        exporter.close()
