"""FO `auto` probe after an expiry, through the real client and poller.

Fixture facts: §10 (FO reference = highest-volume contract of `fo/tradestats.json`), §2/§3
(all-instruments route with `date=`, `latest=1` = the newest interval), §11 "SuperCandles
paging" (`data` + `data.cursor`), "column casing" (`SYSTIME`). The contract that led
yesterday (SiZ6) expired: it has no row today; RIZ6 trades.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from .poller_iss import EQ_TRADESTATS, Exporter, FakeIss, at, supercandles_page, tradestats_row

MARKETS = {"eq": {"enabled": False}, "fx": {"enabled": False},
           "fo": {"enabled": True, "probe": "auto", "endpoints": ["tradestats"]}}
PAIR = ("fo", "tradestats")
ALL = "/iss/datashop/algopack/fo/tradestats.json"


def fo_iss(iss: FakeIss, clock) -> None:
    def all_instruments(path, query):
        if query["date"] == "2026-11-24":   # yesterday: SiZ6 led
            rows = [tradestats_row("2026-11-24", "10:00:00", "2026-11-24 10:00:05", secid)
                    for secid in ("SiZ6", "SiZ6", "RIZ6")]
        else:                                # today (latest=1): only RIZ6 and BRF7 trade
            rows = [tradestats_row("2026-11-25", "09:05:00", "2026-11-25 09:05:05", secid)
                    for secid in ("RIZ6", "RIZ6", "BRF7")] if clock.now() >= at(9, 5, 5) else []
        return supercandles_page(rows, int(query.get("start", 0)))

    def contract(secid):
        def handler(path, query):
            rows = []
            bucket = at(9, 5)
            while secid != "SiZ6" and bucket + timedelta(seconds=5) <= clock.now():
                rows.append(tradestats_row("2026-11-25", bucket.strftime("%H:%M:%S"),
                                           (bucket + timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S"), secid))
                bucket += timedelta(minutes=5)
            return supercandles_page(rows, int(query.get("start", 0)), EQ_TRADESTATS)
        return handler

    iss.route(ALL, all_instruments)
    for secid in ("SiZ6", "RIZ6", "BRF7"):
        iss.route(f"/iss/datashop/algopack/fo/tradestats/{secid}.json", contract(secid))


@pytest.fixture
def iss():
    fake = FakeIss()
    yield fake
    fake.close()


def test_probe_without_rows_today_is_rechosen_before_its_first_bucket_counts_missing(tmp_path, iss, caplog):
    exporter = Exporter(tmp_path, iss, at(8, 58), MARKETS)
    fo_iss(iss, exporter.clock)
    caplog.set_level(logging.INFO, logger="exporter.poller")
    try:
        worst = 0.0
        moment = at(9, 5)
        while moment < at(9, 40):
            moment += timedelta(seconds=15)
            exporter.run_until(moment)
            worst = max(worst, exporter.value("algopack_missing_intervals", market="fo", endpoint="tradestats"))
        assert worst == 0, "a bucket of the expired contract counted as missing"
        state = exporter.app.store.get(PAIR)
        assert state.probe == "RIZ6" and state.up
        assert len(state.seen_buckets) == 7  # 09:05 .. 09:35
        assert exporter.value("algopack_probe_info", market="fo", endpoint="tradestats", secid="RIZ6") == 1
        assert "probe re-chosen market=fo old=SiZ6 new=RIZ6 reason=no-rows-today" in caplog.text
        # chosen again once: later polls never ask the all-instruments route again
        assert sum(1 for path, q in iss.requests if path == ALL and q["date"] == "2026-11-25") == 1
    finally:
        exporter.close()
