"""Issue 16, `/-/ready` after a cold start: with no earlier FO probe choice (no state, no
yesterday), the first polls take the `auto` probe provisionally from today's newest interval
(one `latest=1` request) and never wait for the previous day's tradestats, which refines the
choice in the background; background day reads let the polls go first (daily.Background)."""

from __future__ import annotations

import threading

import pytest

from exporter import daily
from tests.conformance.poller_iss import (
    EQ_TRADESTATS,
    Exporter,
    FakeIss,
    at,
    supercandles_page,
    tradestats_row,
)

pytestmark = pytest.mark.integration

MARKETS = {"eq": {"enabled": False}, "fx": {"enabled": False},
           "fo": {"enabled": True, "probe": "auto", "endpoints": ["tradestats", "obstats"]}}
TRADESTATS_ALL = "/iss/datashop/algopack/fo/tradestats.json"
OBSTATS_ALL = "/iss/datashop/algopack/fo/obstats.json"
OB_COLUMNS = ["tradedate", "tradetime", "secid", "spread_bbo", "SYSTIME"]
PREV, TODAY = "2026-11-24", "2026-11-25"


def _fo_iss(iss: FakeIss, gate: threading.Event) -> None:
    def tradestats_all(path, query):
        if query["date"] == PREV:   # yesterday, 3 pages: RIZ6 led by value
            assert gate.wait(20), "test gate never opened"
            rows = [tradestats_row(PREV, "10:00:00", "2026-11-24 10:00:05", "RIZ6" if i % 3 else "SiZ6")
                    for i in range(2500)]
        else:                       # today's newest interval: SiZ6 leads, RIZ6 trades too
            rows = [tradestats_row(TODAY, "12:00:00", "2026-11-25 12:00:05", s) for s in ("SiZ6", "SiZ6", "RIZ6")]
        return supercandles_page(rows, int(query.get("start", 0)))

    def obstats_all(path, query):
        if query["date"] == PREV:
            assert gate.wait(20), "test gate never opened"
            rows = [[PREV, "12:00:00", f"C{i:03d}", 0.1, "2026-11-24 12:00:09"] for i in range(40)]
        else:
            rows = [[TODAY, "12:00:00", f"C{i:03d}", 0.1, "2026-11-25 12:00:09"] for i in range(38)]
        return supercandles_page(rows, int(query.get("start", 0)), OB_COLUMNS)

    def contract(secid, columns):
        def handler(path, query):
            if columns is OB_COLUMNS:
                rows = [[TODAY, "12:00:00", secid, 0.1, "2026-11-25 12:00:09"]]
            else:
                rows = [tradestats_row(TODAY, "12:00:00", "2026-11-25 12:00:05", secid)]
            return supercandles_page(rows, int(query.get("start", 0)), columns)
        return handler

    iss.route(TRADESTATS_ALL, tradestats_all)
    iss.route(OBSTATS_ALL, obstats_all)
    for secid in ("SiZ6", "RIZ6"):
        iss.route(f"/iss/datashop/algopack/fo/tradestats/{secid}.json", contract(secid, EQ_TRADESTATS))
        iss.route(f"/iss/datashop/algopack/fo/obstats/{secid}.json", contract(secid, OB_COLUMNS))


def test_cold_start_is_ready_after_the_first_polls_and_the_probe_is_refined_later(tmp_path):
    iss = FakeIss()
    gate = threading.Event()   # holds the previous day's reads until the first polls are done
    exporter = Exporter(tmp_path, iss, at(12, 3, 50), MARKETS)
    _fo_iss(iss, gate)
    poller, store = exporter.app.poller, exporter.app.store
    try:
        # The start-up round, as the scheduler runs it: every pair due now is polled once.
        plan = poller.plan_startup(exporter.clock.now())
        due = [pair for pair, moment in plan.items() if moment <= exporter.clock.now()]
        assert sorted(due) == [("fo", "obstats"), ("fo", "tradestats")]
        for pair in due:
            poller.poll(pair)
        # Ready: every pair polled at start has been polled, while yesterday is still being read.
        for pair in due:
            state = store.get(pair)
            assert state.polled and state.up and state.probe == "SiZ6", state
        choice = store.probe_choice("fo", at(12, 0).date())
        assert choice is not None and (choice.secid, choice.by) == ("SiZ6", "latest")
        done = [(path, q) for path, q in iss.requests if not (path.endswith("stats.json") and q.get("date") == PREV)]
        # One provisional latest=1 read, each pair's own rows, the obstats latest=1 count: no day read.
        today_all = [q for path, q in done if path == TRADESTATS_ALL]
        assert len(today_all) == 1 and today_all[0].get("latest") == "1"
        assert len(done) <= 4, done

        gate.set()
        poller.wait_background()   # the refinement: yesterday's value decides (RIZ6)
        choice = store.probe_choice("fo", at(12, 0).date())
        assert (choice.secid, choice.by) == ("RIZ6", "prev-day")
        prev_pages = [q for path, q in iss.requests if path == TRADESTATS_ALL and q.get("date") == PREV]
        assert len(prev_pages) == 3   # the same stream as before, just off the readiness path
        state = poller.poll(("fo", "tradestats"), force=True)
        assert state.up and state.probe == "RIZ6" and state.rows_seen == 1   # the new contract from its start
    finally:
        gate.set()
        exporter.close()
        iss.close()


def test_background_pages_wait_for_the_polls_in_flight():
    from exporter.clock import ManualClock

    background = daily.Background(ManualClock(at(12, 0)))
    asked = threading.Event()

    def work():
        background.pace(max_wait=60)
        asked.set()

    with background.foreground():
        background.start(("test",), work)
        assert not asked.wait(0.3), "a background page went while a poll was in flight"
    assert asked.wait(10), "the background page never went after the poll"
    background.drain(10)
