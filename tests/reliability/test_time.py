"""Time faults: host time zone, midnight rollover, restart in the middle of a session."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from exporter.app import ExporterApp
from tests.integration.exporter_sim import Simulation, at

from .helpers import REPO, route_stats, step_until

pytestmark = pytest.mark.reliability

# Runs in a child process with a given TZ: every session decision of the calendar, the
# poll rhythm and the collector at a grid of instants, with no ISS involved.
DECISIONS = r"""
import json, sys, time
from datetime import datetime, timedelta, UTC
from prometheus_client import generate_latest
sys.path.insert(0, sys.argv[1])
from exporter.app import ExporterApp
from exporter.clock import ManualClock
from exporter.config import load_config
config = load_config(sys.argv[2])
start = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)   # 00:00 MSK on the 25th
clock = ManualClock(start)
app = ExporterApp(config, clock)
cal = app.calendars.current
out = {"tz": time.tzname, "moments": []}
for step in range(0, 60 * 60 * 30, 20 * 60):       # 30 h in 20-minute steps (over a weekday night)
    now = start + timedelta(seconds=step)
    clock.set(now)
    row = {"utc": now.isoformat()}
    for market in ("eq", "fx", "fo"):
        session = cal.current_session(market, now)
        row[market] = [cal.in_session(market, now), session.start.isoformat() if session else None,
                       str(cal.next_session_start(market, now)), str(cal.previous_working_day(now.date(), market)),
                       [b.isoformat() for b in cal.due_buckets(market, now, 120)][-2:],
                       str(cal.hi2_deadline(market, now.date()))]
    row["plan"] = {f"{m}/{e}": moment.isoformat() for (m, e), moment in app.poller.plan_startup(now).items()}
    row["metrics"] = [line for line in generate_latest(app.registry).decode().splitlines()
                      if line.startswith(("algopack_session", "algopack_hi2_expected", "algopack_lag",
                                          "algopack_missing_intervals{", "algopack_next_poll"))]
    out["moments"].append(row)
print(json.dumps(out))
"""


def test_host_timezone_gives_the_same_session_decisions(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(f"iss: {{base_url: 'http://127.0.0.1:9', auth: none}}\ncalendar: {{file: '{REPO / 'calendar.yml'}'}}\n")
    results = {}
    for tz in ("UTC", "Asia/Vladivostok"):
        env = {**os.environ, "TZ": tz}
        done = subprocess.run([sys.executable, "-c", DECISIONS, str(REPO), str(config)], env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0, done.stderr
        results[tz] = json.loads(done.stdout)
    utc, vvo = results["UTC"], results["Asia/Vladivostok"]
    assert utc["tz"] != vvo["tz"], "TZ did not reach the child process"
    assert len(utc["moments"]) == 90
    assert utc["moments"] == vvo["moments"]
    # The decisions are the Moscow ones: 10:20 MSK (07:20 UTC) is inside the EQ session.
    eq_open = [m["utc"] for m in utc["moments"] if m["eq"][0]]
    assert "2026-11-25T07:20:00+00:00" in eq_open and "2026-11-25T06:40:00+00:00" not in eq_open


def test_midnight_rollover_resets_today_and_recomputes_previous_day_max(tmp_path):
    sim = Simulation(tmp_path, at(23, 30))
    try:
        sim.run_until(at(23, 59))
        before = {m: sim.app.store.get((m, "obstats")) for m in ("eq", "fx", "fo")}
        assert before["eq"].prev_day.isoformat() == "2026-11-24"
        assert sim.value("algopack_hi2_present", market="eq") == 1
        assert sim.value("algopack_hi2_expected", market="eq") == 1
        sim.run_until(at(0, 10, day=26))
        # Today's counters belong to the new day at once, before any poll of it.
        assert sim.value("algopack_hi2_present", market="eq") == 0
        assert sim.value("algopack_hi2_expected", market="eq") == 0
        assert set(sim.pair_values("algopack_missing_intervals").values()) == {0.0}
        assert set(sim.pair_values("algopack_lag_seconds").values()) == {0.0}
        sim.iss.reset_stats()
        sim.run_until(at(10, 40, day=26))
        for market in ("eq", "fx", "fo"):
            state = sim.app.store.get((market, "obstats"))
            assert state.day.isoformat() == "2026-11-26"
            assert state.prev_day.isoformat() == "2026-11-25"
            truth = sim.iss.data.frame(market, "obstats", state.prev_day)
            assert state.prev_day_max == max(len(set(b.secids)) for b in truth.buckets), market
        for pair, missing in sim.pair_values("algopack_missing_intervals").items():
            assert missing == 0, pair
        state = sim.app.store.get(("eq", "tradestats"))
        assert state.rows_seen == len(state.seen_buckets) == 7  # 10:05 … 10:35 of the new day only
        # The previous day is downloaded once per market (its pages), not per poll: the
        # rest of the day-route requests are one `latest=1` secid count per poll at most.
        routes = route_stats(sim)
        for market in ("eq", "fx", "fo"):
            state = sim.app.store.get((market, "obstats"))
            pages = -(-sim.iss.data.frame(market, "obstats", state.prev_day).rows_total // 1000)
            day_route = routes[("day", market, "obstats")]
            assert day_route["requests"] <= pages + state.polls_total, (day_route, pages, state.polls_total)
    finally:
        sim.close()


def test_restart_mid_session_resumes_without_false_alerts_or_full_redownload(tmp_path):
    """The exporter runs 10:00–11:30, is down 11:30–11:50, and a new process starts at 11:50
    on the same ISS. Nothing it reports may be worse than the truth, and the restart costs
    one read of each probe's day so far plus the once-a-day downloads (previous-day
    obstats max per market, FO probe choice), never the big datasets of today."""
    sim = Simulation(tmp_path, at(9, 58))
    try:
        sim.run_until(at(11, 30))
        steady = sim.iss.stats()["total"]
        sim.app.client.close()
        sim.clock.set(at(11, 50))
        sim.iss.reset_stats()
        sim.app = ExporterApp(sim.config, sim.clock)    # a new process: empty state
        sim.app.poller.plan_startup(sim.clock.now())
        threshold = sim.value("algopack_delay_threshold_seconds")
        worst = {"missing": 0.0, "lag": 0.0}

        def check(s: Simulation) -> None:
            for pair, missing in s.pair_values("algopack_missing_intervals").items():
                worst["missing"] = max(worst["missing"], missing)
                assert missing == 0, (s.clock.now(), pair)
            for pair, lag in s.pair_values("algopack_lag_seconds").items():
                worst["lag"] = max(worst["lag"], lag)
                assert lag < 330 < threshold, (s.clock.now(), pair, lag)

        step_until(sim, at(11, 51), check)                 # the restart itself
        restart = sim.iss.stats()
        step_until(sim, at(12, 30), check)                 # and the session after it
        routes = {(r["kind"], r["market"], r["dataset"]): r for r in restart["routes"]}
        # Probe reads: the day so far (≈ 23 rows) once per pair, a few kB each.
        for key, route in routes.items():
            if key[0] == "secid":
                assert route["requests"] <= 2 and route["bytes"] < 20_000, route
        # Big routes: only the once-a-day ones; today's full-market data is never fetched.
        big = {key for key in routes if key[0] == "day"}
        assert big <= {("day", "eq", "obstats"), ("day", "fx", "obstats"), ("day", "fo", "obstats"),
                       ("day", "fo", "tradestats")}, big
        total = restart["total"]["bytes"]
        once_a_day = sum(r["bytes"] for k, r in routes.items() if k[0] == "day")
        print(f"restart cost: {restart['total']['requests']} requests, {total / 1e6:.2f} MB "
              f"({once_a_day / 1e6:.2f} MB once-a-day downloads); steady 10:00-11:30: "
              f"{steady['requests']} requests, {steady['bytes'] / 1e6:.2f} MB; worst after restart {worst}")
        assert total - once_a_day < 100_000
    finally:
        sim.close()

