"""The exporter against the sandbox ISS over HTTP: the metric contract and the done-means
of the exporter core (stops, holes, dropped secids, late hi2, ISS faults)."""

from __future__ import annotations

import math

import pytest

from .exporter_sim import Simulation, at

pytestmark = pytest.mark.integration

CONTRACT_PER_MARKET = (
    "algopack_session_open", "algopack_session_start_timestamp_seconds", "algopack_session_elapsed_seconds",
    "algopack_hi2_present", "algopack_hi2_expected", "algopack_obstats_secids",
    "algopack_obstats_secids_prev_day_max",
)
CONTRACT_PER_PAIR = (
    "algopack_up", "algopack_polls_total", "algopack_last_poll_success_timestamp_seconds",
    "algopack_poll_duration_seconds_count", "algopack_next_poll_timestamp_seconds",
)
CONTRACT_INTRADAY = (
    "algopack_last_tradetime_timestamp_seconds", "algopack_last_systime_timestamp_seconds",
    "algopack_lag_seconds", "algopack_publish_delay_seconds", "algopack_missing_intervals",
)
INTRADAY = {"tradestats", "orderstats", "obstats", "futoi"}


@pytest.fixture
def sim(tmp_path):
    simulation = Simulation(tmp_path, at(9, 58))
    yield simulation
    simulation.close()


def test_every_metric_of_the_contract_with_plausible_values(sim):
    pairs = sim.config.enabled_pairs()
    before = sim.metrics()
    # Every enabled pair is present from the first scrape on, before any poll.
    for name in CONTRACT_PER_PAIR:
        for market, endpoint in pairs:
            assert (name, (("endpoint", endpoint), ("market", market))) in before, (name, market, endpoint)
    sim.run_until(at(11, 0))
    metrics = sim.metrics()
    for market in ("eq", "fx", "fo"):
        for name in CONTRACT_PER_MARKET:
            assert (name, (("market", market),)) in metrics, (name, market)
        assert sim.value("algopack_session_open", market=market) == 1
        assert sim.value("algopack_hi2_expected", market=market) == 0
        secids = sim.value("algopack_obstats_secids", market=market)
        prev_max = sim.value("algopack_obstats_secids_prev_day_max", market=market)
        assert 5 <= secids <= prev_max, (market, secids, prev_max)
    assert sim.value("algopack_delay_threshold_seconds") == 600
    assert sim.value("algopack_calendar_last_reload_successful") == 1
    assert sim.value("algopack_build_info", version=__import__("exporter").__version__) == 1
    assert sim.value("algopack_iss_response_bytes_total") > 0
    assert sim.value("algopack_iss_requests_total", status="200") > 0
    for (market, endpoint) in pairs:
        labels = {"market": market, "endpoint": endpoint}
        if endpoint not in INTRADAY:
            # hi2 is first looked for shortly before its deadline: not polled yet is unknown, not down.
            assert math.isnan(sim.value("algopack_up", **labels)), labels
            assert sim.value("algopack_polls_total", **labels) == 0
            continue
        assert sim.value("algopack_up", **labels) == 1, labels
        assert sim.value("algopack_polls_total", **labels) >= 1
        lag = sim.value("algopack_lag_seconds", **labels)
        delay = sim.value("algopack_publish_delay_seconds", **labels)
        assert 0 <= lag < 300 + 30, (labels, lag)
        assert 5 <= delay <= 15, (labels, delay)
        assert sim.value("algopack_missing_intervals", **labels) == 0, labels
        last = sim.value("algopack_last_tradetime_timestamp_seconds", **labels)
        assert at(10, 50).timestamp() <= last <= at(11, 0).timestamp(), labels
    probes = {(dict(k[1])["market"], dict(k[1])["endpoint"]): dict(k[1])["secid"]
              for k in sim.metrics() if k[0] == "algopack_probe_info"}
    assert probes[("eq", "tradestats")] == "SBER" and probes[("fx", "obstats")] == "CNYRUB_TOM"
    assert probes[("fo", "tradestats")] == "SiZ6" and probes[("fo", "futoi")] == "RI"


def test_incremental_polling_never_downloads_a_row_twice(sim):
    sim.run_until(at(10, 30))
    sim.iss.reset_stats()
    sim.run_until(at(12, 30))
    routes = {(r["kind"], r["market"], r["dataset"]): r for r in sim.iss.stats()["routes"]}
    probe_route = routes[("secid", "eq", "tradestats")]
    # 24 buckets in two hours: one request per bucket, a few retries at most.
    assert 24 <= probe_route["requests"] <= 30, probe_route
    # Each answer carries ~1-2 rows (the overlap row + the new bucket), not the day so far.
    assert probe_route["bytes"] / probe_route["requests"] < 2500, probe_route


def test_stopped_dataset_moves_only_that_pairs_lag_past_the_threshold(sim):
    sim.run_until(at(12, 0))
    last_before = sim.value("algopack_last_tradetime_timestamp_seconds", market="eq", endpoint="tradestats")
    sim.iss.faults.set("stop", market="eq", dataset="tradestats")
    sim.run_until(at(12, 20))
    threshold = sim.value("algopack_delay_threshold_seconds")
    lags = sim.pair_values("algopack_lag_seconds")
    over = {pair for pair, lag in lags.items() if lag > threshold}
    assert over == {("eq", "tradestats")}, lags
    assert sim.value("algopack_missing_intervals", market="eq", endpoint="tradestats") >= 3
    # No fake freshness: the last timestamps stay where the data stopped.
    assert sim.value("algopack_last_tradetime_timestamp_seconds", market="eq", endpoint="tradestats") == last_before
    assert sim.value("algopack_up", market="eq", endpoint="tradestats") == 1  # ISS answers; the data is late
    sim.iss.faults.clear("stop")
    sim.run_until(at(12, 22))
    assert sim.value("algopack_lag_seconds", market="eq", endpoint="tradestats") < 120
    assert sim.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 0


def test_dropped_intervals_are_counted_and_named(sim):
    sim.iss.faults.set("drop_intervals", market="eq", dataset="orderstats", intervals=["10:15", "10:20"])
    sim.run_until(at(10, 40))
    assert sim.value("algopack_missing_intervals", market="eq", endpoint="orderstats") == 2
    named = {dict(k[1])["interval"] for k in sim.metrics()
             if k[0] == "algopack_missing_interval_timestamp_seconds" and dict(k[1])["endpoint"] == "orderstats"}
    assert named == {"10:15", "10:20"}
    assert sim.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 0
    # The feed goes on: lag stays normal, only the holes are reported.
    assert sim.value("algopack_lag_seconds", market="eq", endpoint="orderstats") < 330


def test_dropped_secids_fall_below_the_previous_day_max(sim):
    sim.run_until(at(10, 30))
    normal = sim.value("algopack_obstats_secids", market="fo")
    sim.iss.faults.set("drop_secids", market="fo", dataset="obstats", count=60)
    sim.run_until(at(10, 45))
    dropped = sim.value("algopack_obstats_secids", market="fo")
    prev_max = sim.value("algopack_obstats_secids_prev_day_max", market="fo")
    assert dropped <= normal - 50
    assert dropped < 0.9 * prev_max


def test_late_hi2_stays_absent_while_expected(tmp_path):
    sim = Simulation(tmp_path, at(18, 30))
    try:
        sim.iss.faults.set("hi2_late", market="eq")
        sim.run_until(at(19, 40))
        assert sim.value("algopack_hi2_expected", market="eq") == 1
        assert sim.value("algopack_hi2_present", market="eq") == 0
        assert sim.value("algopack_hi2_expected", market="fx") == 1
        assert sim.value("algopack_hi2_present", market="fx") == 1
        sim.iss.faults.clear("hi2_late")
        sim.run_until(at(19, 50))
        assert sim.value("algopack_hi2_present", market="eq") == 1
    finally:
        sim.close()


@pytest.mark.parametrize(("knob", "params", "reason"), [
    ("http_error", {"status": 503}, "http"),
    ("malformed", {}, "parse"),
    ("missing_columns", {"columns": ["systime"]}, "parse"),
    ("html", {}, "auth"),
    ("http_error", {"status": 403}, "auth"),
])
def test_iss_faults_give_up_zero_and_keep_real_timestamps(sim, knob, params, reason):
    sim.run_until(at(10, 30))
    pair = {"market": "fx", "endpoint": "tradestats"}
    last = sim.value("algopack_last_systime_timestamp_seconds", **pair)
    sim.iss.faults.set(knob, market="fx", dataset="tradestats", **params)
    sim.run_until(at(10, 45))
    assert sim.value("algopack_up", **pair) == 0
    assert sim.value("algopack_poll_errors_total", reason=reason, **pair) >= 3
    assert sim.value("algopack_last_systime_timestamp_seconds", **pair) == last
    assert sim.value("algopack_up", market="fx", endpoint="orderstats") == 1
    sim.iss.faults.clear()
    sim.run_until(at(10, 47))
    assert sim.value("algopack_up", **pair) == 1
    assert sim.value("algopack_last_systime_timestamp_seconds", **pair) > last


def test_hanging_iss_is_a_timeout(tmp_path):
    sim = Simulation(tmp_path, at(10, 20), iss={"timeout_seconds": 0.5})
    try:
        sim.iss.faults.set("hang", market="eq", dataset="tradestats", seconds=2, count=2)
        sim.app.poller.poll(("eq", "tradestats"), force=True)
        assert sim.value("algopack_up", market="eq", endpoint="tradestats") == 0
        assert sim.value("algopack_poll_errors_total", market="eq", endpoint="tradestats", reason="timeout") == 1
        assert math.isnan(sim.value("algopack_last_systime_timestamp_seconds", market="eq", endpoint="tradestats"))
    finally:
        sim.close()


def test_reordered_day_is_reread_not_double_counted(sim):
    # A bucket published late lands before rows already seen: the overlap check must notice.
    sim.iss.faults.set("drop_intervals", market="eq", dataset="tradestats", intervals=["10:15"])
    sim.run_until(at(10, 40))
    assert sim.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 1
    sim.iss.faults.clear("drop_intervals")  # 10:15 is published now, inside the day
    sim.run_until(at(10, 46))
    assert sim.value("algopack_missing_intervals", market="eq", endpoint="tradestats") == 0
    state = sim.app.store.get(("eq", "tradestats"))
    assert state.rows_seen == len(state.seen_buckets)


def test_night_sends_no_requests(tmp_path):
    sim = Simulation(tmp_path, at(0, 30, day=26))
    try:
        sim.run_until(at(6, 30, day=26))  # night: no market trades
        assert sim.iss.stats()["total"]["requests"] == 0
        for market in ("eq", "fx", "fo"):
            assert sim.value("algopack_session_open", market=market) == 0
        assert set(sim.pair_values("algopack_lag_seconds").values()) == {0.0}
        assert set(sim.pair_values("algopack_missing_intervals").values()) == {0.0}
    finally:
        sim.close()
