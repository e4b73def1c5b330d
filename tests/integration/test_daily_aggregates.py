"""Issue 16.1: the previous day's secid counts carried over from the exporter's own
observations, and read in the background (never on the poll / readiness path) only when
they are missing."""

from __future__ import annotations

import math
import threading
from datetime import date

import pytest

from exporter import daily
from tests.conformance.poller_iss import Exporter, FakeIss, at, supercandles_page

from .exporter_sim import Simulation
from .exporter_sim import at as sim_at

pytestmark = pytest.mark.integration

PAIR = ("eq", "obstats")
COLUMNS = ["tradedate", "tradetime", "secid", "spread_bbo", "SYSTIME"]


def test_coverage_stays_quiet_until_the_background_read_lands(tmp_path):
    iss = FakeIss()
    gate = threading.Event()
    markets = {"eq": {"enabled": True, "probe": "SBER", "endpoints": ["obstats"]},
               "fx": {"enabled": False}, "fo": {"enabled": False}}
    exporter = Exporter(tmp_path, iss, at(10, 5, 20), markets)

    def all_instruments(path, query):
        if query["date"] == "2026-11-24" and "latest" not in query:
            assert gate.wait(20), "test gate never opened"
            rows = [["2026-11-24", "10:05:00", f"S{i:03d}", 0.1, "2026-11-24 10:05:09"] for i in range(200)]
        else:
            rows = [["2026-11-25", "10:05:00", f"S{i:03d}", 0.1, "2026-11-25 10:05:09"] for i in range(190)]
        return supercandles_page(rows, int(query.get("start", 0)), COLUMNS)

    def sber(path, query):
        rows = [["2026-11-25", "10:05:00", "SBER", 0.1, "2026-11-25 10:05:09"]]
        return supercandles_page(rows, int(query.get("start", 0)), COLUMNS)

    iss.route("/iss/datashop/algopack/eq/obstats.json", all_instruments)
    iss.route("/iss/datashop/algopack/eq/obstats/SBER.json", sber)
    try:
        state = exporter.app.poller.poll(PAIR, force=True)   # returns while the previous day is still read
        assert state.polled and state.up and state.secids == 190
        assert state.prev_day is None and state.prev_day_counts is None
        assert math.isnan(exporter.value("algopack_obstats_secids_prev_day_max", market="eq"))
        assert math.isnan(exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq"))
        exporter.app.poller.poll(PAIR, force=True)  # a second poll does not start a second read
        gate.set()
        exporter.app.poller.wait_background()
        assert exporter.value("algopack_obstats_secids_prev_day_max", market="eq") == 200
        assert exporter.value("algopack_obstats_secids_prev_day_same_interval", market="eq") == 200
        full = [q for path, q in iss.requests if path.endswith("obstats.json") and "latest" not in q]
        assert len(full) == 1
    finally:
        gate.set()
        exporter.close()
        iss.close()


def test_carried_over_counts_equal_a_full_previous_day_download(tmp_path):
    markets = {"eq": {"enabled": True, "endpoints": ["obstats"]}, "fx": {"enabled": False},
               "fo": {"enabled": False}}
    sim = Simulation(tmp_path, sim_at(9, 50), markets=markets)
    reads: list[tuple[str, dict]] = []
    real = sim.app.client.iter_pages

    def recording(path, params=None, *args, **kwargs):
        reads.append((path, dict(params or {})))
        return real(path, params, *args, **kwargs)

    sim.app.client.iter_pages = recording
    try:
        sim.run_until(sim_at(23, 59))   # the whole of Wed 25 observed (its previous day read once)
        observed = sim.app.store.get(PAIR).observed_counts.get("2026-11-25")
        assert observed, "nothing observed on the 25th"
        reads.clear()
        sim.run_until(sim_at(10, 20, day=26))
        state = sim.app.store.get(PAIR)
        assert state.prev_day == date(2026, 11, 25)
        # no download of the 25th: the counts are the exporter's own
        assert not [p for p in reads if p[1].get("date") == "2026-11-25" and "latest" not in p[1]], reads
        full = daily.stream_interval_counts(sim.app.client, "/iss/datashop/algopack/eq/obstats.json",
                                            sim.app.calendars.current, "eq", date(2026, 11, 25))
        truth = {b.tradetime: len(set(b.secids)) for b in sim.iss.data.frame("eq", "obstats", state.prev_day).buckets
                 if b.secids}
        assert dict(state.prev_day_counts) == full == truth
        assert state.prev_day_max == max(full.values())
        assert sim.value("algopack_obstats_secids_prev_day_max", market="eq") == max(full.values())
    finally:
        sim.close()


def test_the_day_s_auto_probe_is_chosen_in_the_background_when_an_earlier_choice_exists(tmp_path):
    from tests.conformance.poller_iss import EQ_TRADESTATS, tradestats_row

    iss = FakeIss()
    gate = threading.Event()
    markets = {"eq": {"enabled": False}, "fx": {"enabled": False},
               "fo": {"enabled": True, "probe": "auto", "endpoints": ["tradestats"]}}
    exporter = Exporter(tmp_path, iss, at(10, 5, 20), markets)

    def all_instruments(path, query):
        assert gate.wait(20), "test gate never opened"
        rows = [tradestats_row("2026-11-24", "10:00:00", "2026-11-24 10:00:05", s) for s in ("RIZ6", "RIZ6", "SiZ6")]
        return supercandles_page(rows, int(query.get("start", 0)))

    def contract(path, query):
        secid = path.rsplit("/", 1)[-1].removesuffix(".json")
        rows = [tradestats_row("2026-11-25", "10:05:00", "2026-11-25 10:05:05", secid)]
        return supercandles_page(rows, int(query.get("start", 0)), EQ_TRADESTATS)

    iss.route("/iss/datashop/algopack/fo/tradestats.json", all_instruments)
    iss.route("/iss/datashop/algopack/fo/tradestats/", contract)
    exporter.app.store.set_probe("fo", date(2026, 11, 24), "SiZ6")  # yesterday's (e.g. persisted) choice
    pair = ("fo", "tradestats")
    try:
        state = exporter.app.poller.poll(pair, force=True)   # does not wait for the day's choice
        assert state.polled and state.up and state.probe == "SiZ6" and len(state.seen_buckets) == 1
        gate.set()
        exporter.app.poller.wait_background()
        assert exporter.app.store.probe("fo", date(2026, 11, 25)) == "RIZ6"
        state = exporter.poll(pair, at(10, 6))
        assert state.up and state.probe == "RIZ6" and len(state.seen_buckets) == 1
    finally:
        gate.set()
        exporter.close()
        iss.close()
