"""Bad rows in a SuperCandles answer: skipped and counted, the rest used, the pair stays up.

Fixture facts (iss-api.md §11): "SuperCandles paging" (per-instrument route, `data` +
`data.cursor` INDEX/TOTAL/PAGESIZE, rows ascending by tradetime, `start` = row offset that
counts every row), "column casing" (`SYSTIME` upper case, eq tradestats index 22), "nulls"
(one odd row must be skipped and counted, not fail the poll). The odd rows themselves
(empty/null time, other day, future SYSTIME, off grid) are the kinds issue 13 lists; none has
been seen live (§11 "nulls"), so each is one extra row at a fixed place, as the sandbox's
`bad_row` knob publishes it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from exporter.checks import REJECT_REASONS

from .poller_iss import Exporter, FakeIss, at, supercandles_page, tradestats_row

PAIR = ("eq", "tradestats")
ROUTE = "/iss/datashop/algopack/eq/tradestats/SBER.json"
MARKETS = {"eq": {"enabled": True, "probe": "SBER", "endpoints": ["tradestats"]},
           "fx": {"enabled": False}, "fo": {"enabled": False}}


def day_rows(clock, bad: dict[str, list]):
    """SBER's rows of 25 Nov published by now (T + 11 s); bad[after HH:MM] rows follow that bucket."""
    def handler(path, query):
        now = clock.now()
        assert query["from"] == query["till"] == "2026-11-25"
        rows = []
        bucket = at(10, 5)
        while bucket + timedelta(seconds=11) <= now and bucket <= at(18, 40):
            rows.append(tradestats_row("2026-11-25", bucket.strftime("%H:%M:%S"),
                                       (bucket + timedelta(seconds=11)).strftime("%Y-%m-%d %H:%M:%S")))
            rows.extend(bad.get(bucket.strftime("%H:%M"), []))
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


BAD = {
    "10:05": [tradestats_row("2026-11-25", "10:05:00", "")],                          # empty SYSTIME
    "10:10": [tradestats_row("2026-11-25", None, "2026-11-25 10:10:11")],             # null tradetime
    "10:15": [tradestats_row("2026-11-26", "10:15:00", "2026-11-25 10:15:11")],       # dated tomorrow
    "10:20": [tradestats_row("2026-11-25", "10:22:00", "2026-11-25 10:22:11")],       # off the grid
    "10:25": [tradestats_row("2026-11-25", "10:25:00", "2026-11-25 10:31:00")],       # SYSTIME in the future
    "10:30": [tradestats_row("2026-11-25", "10:30:00", "2026-11-22 10:30:11")],       # loaded before its bucket
}


def test_each_bad_row_is_skipped_counted_once_and_the_pair_stays_up(exporter, iss):
    iss.route(ROUTE, day_rows(exporter.clock, BAD))
    requests = []
    for minute in range(5, 40, 5):
        before = iss.count(ROUTE)
        state = exporter.poll(PAIR, at(10, minute, 20))
        requests.append(iss.count(ROUTE) - before)
        assert state.up, state.last_error
    # Incremental cursor: one request per poll, no re-read, though the overlap row was a bad row.
    assert requests == [1] * 7, requests
    # All 7 good buckets seen; the 6 bad rows counted once each by reason.
    assert len(state.seen_buckets) == 7 and max(state.seen_buckets) == at(10, 35).timestamp()
    assert state.rows_seen == 13  # ISS's offsets count every row
    counts = {reason: exporter.value("algopack_rows_rejected_total", market="eq", endpoint="tradestats",
                                     reason=reason) for reason in REJECT_REASONS}
    assert counts == {"bad_time": 2, "other_day": 1, "future_systime": 1, "off_grid": 1, "before_bucket": 1}
    assert exporter.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 0
    assert exporter.value("algopack_up", market="eq", endpoint="tradestats") == 1


def test_every_reject_reason_is_exposed_from_the_first_scrape(exporter):
    for reason in REJECT_REASONS:
        assert exporter.value("algopack_rows_rejected_total", market="eq", endpoint="tradestats",
                              reason=reason) == 0


def test_a_row_dated_tomorrow_does_not_move_the_next_poll(exporter, iss):
    iss.route(ROUTE, day_rows(exporter.clock, {"10:05": [tradestats_row("2026-11-26", "23:50:00",
                                                                        "2026-11-25 10:05:30")]}))
    state = exporter.poll(PAIR, at(10, 5, 40))
    assert state.up, state.last_error
    # the next bucket 10:10 is polled at 10:10:20, not hours later
    assert state.next_poll_ts == at(10, 10, 20).timestamp()
    assert exporter.value("algopack_last_tradetime_timestamp_seconds", market="eq",
                          endpoint="tradestats") == at(10, 5).timestamp()


def test_a_future_systime_never_holds_the_lag_at_zero(exporter, iss):
    # The feed stops after 10:10; a row with a SYSTIME far in the future is served at 10:10.
    stopped = {"10:10": [tradestats_row("2026-11-25", "10:10:00", "2026-11-25 23:59:59")]}
    handler = day_rows(exporter.clock, stopped)

    def stop_after_1010(path, query):
        body = handler(path, query)
        body["data"]["data"] = [r for r in body["data"]["data"] if (r[1] or "") <= "10:10:00"]
        body["data.cursor"]["data"][0][1] = len(body["data"]["data"])
        return body

    iss.route(ROUTE, stop_after_1010)
    for moment in (at(10, 5, 20), at(10, 10, 20), at(10, 15, 20), at(10, 20, 20)):
        state = exporter.poll(PAIR, moment)
        assert state.up
    exporter.clock.set(at(10, 25))
    lag = exporter.value("algopack_lag_seconds", market="eq", endpoint="tradestats")
    assert lag == pytest.approx((at(10, 25) - at(10, 10, 11)).total_seconds())
    assert exporter.value("algopack_rows_rejected_total", market="eq", endpoint="tradestats",
                          reason="future_systime") == 1


def test_every_poll_error_reason_of_the_client_is_exposed_from_the_first_scrape(exporter):
    from exporter import iss, state

    assert state.ERROR_REASONS is iss.ERROR_REASONS  # one list (exporter/iss.py)
    assert {"http", "timeout", "auth", "parse", "throttled", "iss_error", "too_large", "redirect"} <= \
        set(iss.ERROR_REASONS)
    for reason in iss.ERROR_REASONS:
        assert exporter.value("algopack_poll_errors_total", market="eq", endpoint="tradestats", reason=reason) == 0
