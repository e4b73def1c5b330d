"""ISS faults against the real exporter pieces (ISS client over HTTP, poller, collector)
and the sandbox ISS, on a manual clock (tests/integration/exporter_sim.py).

Already covered elsewhere (RELIABILITY.md names them): a long 503 burst, malformed JSON,
a missing required column, an HTML login page and 403 (test_exporter_sandbox.py
::test_iss_faults_give_up_zero_and_keep_real_timestamps), a hang (::test_hanging_iss_is_a_timeout),
client-level retry/timeout/refused/passport cases (tests/unit/test_iss_client.py).
"""

from __future__ import annotations

import math

import pytest

from exporter.calendar import CalendarStore
from sandbox.iss import SandboxIss
from tests.integration.exporter_sim import CALENDAR, Simulation, at

from .helpers import exposition_series, promtool_alerts, route_stats, step_until

pytestmark = pytest.mark.reliability

EQ_TS = {"market": "eq", "endpoint": "tradestats"}
PASSPORT_LOGIN, PASSPORT_PASSWORD = "reliability-robot", "Reliability-Passw0rd-4e1d"


def _errors(sim: Simulation, **pair: str) -> dict[str, float]:
    return {reason: sim.value("algopack_poll_errors_total", reason=reason, **pair)
            for reason in ("http", "timeout", "auth", "parse")}


def test_5xx_burst_and_short_hang_are_absorbed_by_retries(tmp_path):
    """A burst of 5xx shorter than the retry budget, or one hanging request, costs retries
    inside one poll: the pair stays up, no error is counted, no data alert can follow."""
    sim = Simulation(tmp_path, at(10, 20), iss={"retries": 2, "backoff_seconds": 0.05, "timeout_seconds": 0.5})
    try:
        sim.run_until(at(10, 30))
        sim.iss.faults.set("http_error", market="eq", dataset="tradestats", status=503, count=2)
        sim.run_until(at(10, 36))
        assert sim.value("algopack_up", **EQ_TS) == 1
        assert _errors(sim, **EQ_TS) == {"http": 0, "timeout": 0, "auth": 0, "parse": 0}
        assert sim.value("algopack_iss_requests_total", status="503") == 2  # the load is visible
        sim.iss.faults.set("hang", market="eq", dataset="orderstats", seconds=1.5, count=1)
        sim.run_until(at(10, 41))
        pair = {"market": "eq", "endpoint": "orderstats"}
        assert sim.value("algopack_up", **pair) == 1
        assert _errors(sim, **pair)["timeout"] == 0
        assert sim.value("algopack_missing_intervals", **pair) == 0
    finally:
        sim.close()


def test_connection_refused_is_timeout_and_recovers_without_holes(tmp_path):
    sim = Simulation(tmp_path, at(10, 20))
    try:
        sim.run_until(at(10, 40))
        last = sim.value("algopack_last_systime_timestamp_seconds", **EQ_TS)
        port = sim.iss.port
        sim.iss.stop()  # nothing listens on the port any more: connection refused
        # A real ISS going away also closes its keep-alive connections; the in-process
        # sandbox's handler threads would keep serving them, so drop the pooled ones.
        sim.app.client.session.close()
        sim.run_until(at(10, 50))
        assert sim.value("algopack_up", **EQ_TS) == 0
        assert _errors(sim, **EQ_TS)["timeout"] >= 2
        assert sim.value("algopack_last_systime_timestamp_seconds", **EQ_TS) == last  # no fake freshness
        assert sim.value("algopack_iss_requests_total", status="error") >= 2
        # ISS comes back on the same address.
        revived = SandboxIss(str(CALENDAR), sim.clock, auth="none", seed=1, port=port)
        revived.data = sim.iss.data
        sim.iss = revived.start()
        sim.run_until(at(10, 52))
        assert sim.value("algopack_up", **EQ_TS) == 1
        assert sim.value("algopack_missing_intervals", **EQ_TS) == 0  # the buckets of the outage are read back
        assert sim.value("algopack_lag_seconds", **EQ_TS) < 330
    finally:
        sim.close()


def test_missing_optional_column_is_fine_missing_time_column_is_parse(tmp_path):
    """Columns are mapped by name: losing a column the exporter does not read changes nothing."""
    sim = Simulation(tmp_path, at(10, 20))
    try:
        sim.iss.faults.set("missing_columns", market="eq", dataset="tradestats", columns=["pr_open", "val_b"])
        sim.run_until(at(10, 40))
        assert sim.value("algopack_up", **EQ_TS) == 1
        assert sim.value("algopack_missing_intervals", **EQ_TS) == 0
        sim.iss.faults.set("missing_columns", market="eq", dataset="tradestats", columns=["tradetime"])
        sim.run_until(at(10, 45))
        assert sim.value("algopack_up", **EQ_TS) == 0
        assert _errors(sim, **EQ_TS)["parse"] >= 1
    finally:
        sim.close()


def test_empty_day_is_reported_as_missing_data_not_as_poll_failure(tmp_path):
    """ISS answers valid JSON with zero rows all day: ISS works (up 1), the data does not
    (every due bucket missing, lag from the session start) → data alerts, correctly."""
    sim = Simulation(tmp_path, at(9, 58))
    try:
        sim.iss.faults.set("empty", market="fx", dataset="tradestats")
        sim.run_until(at(10, 30))
        pair = {"market": "fx", "endpoint": "tradestats"}
        assert sim.value("algopack_up", **pair) == 1
        assert sum(_errors(sim, **pair).values()) == 0
        due = len(sim.app.calendars.current.due_buckets("fx", sim.clock.now(), sim.config.poll.publish_grace_seconds))
        assert due > 30 and sim.value("algopack_missing_intervals", **pair) == due
        session_start = sim.value("algopack_session_start_timestamp_seconds", market="fx")
        assert sim.value("algopack_lag_seconds", **pair) == pytest.approx(sim.clock.timestamp() - session_start)
        assert math.isnan(sim.value("algopack_last_systime_timestamp_seconds", **pair))
        sim.iss.faults.clear("empty")
        sim.run_until(at(10, 32))
        assert sim.value("algopack_missing_intervals", **pair) == 0
    finally:
        sim.close()


def test_transient_empty_answers_do_not_forget_seen_buckets(tmp_path):
    sim = Simulation(tmp_path, at(10, 20))
    try:
        sim.run_until(at(10, 40))
        assert sim.value("algopack_missing_intervals", **EQ_TS) == 0
        # Two empty answers in a row: the incremental read and the re-read from 0.
        sim.iss.faults.set("empty", market="eq", dataset="tradestats", count=2)
        seen: list[float] = []
        step_until(sim, at(10, 50), lambda s: seen.append(s.value("algopack_missing_intervals", **EQ_TS)))
        assert max(seen) == 0, seen
    finally:
        sim.close()


def test_paging_broken_mid_way_never_yields_a_partial_result(tmp_path):
    """break_paging: pages after the first fail with 500. The multi-page previous-day
    download must fail as a whole (never a max over half a day), and the incremental
    probe reads (start > 0) fail as polls, not as holes."""
    sim = Simulation(tmp_path, at(10, 20))
    try:
        sim.iss.faults.set("break_paging", market="fo", dataset="obstats", count=1)
        sim.run_until(at(10, 30))
        fo = {"market": "fo", "endpoint": "obstats"}
        assert _errors(sim, **fo)["http"] == 1
        truth = sim.iss.data.frame("fo", "obstats", sim.app.store.get(("fo", "obstats")).prev_day)
        assert sim.value("algopack_obstats_secids_prev_day_max", market="fo") == max(
            len(set(bucket.secids)) for bucket in truth.buckets)
        assert sim.value("algopack_up", **fo) == 1
        # Incremental reads of a pair break: up 0 with http errors, no holes invented.
        sim.iss.faults.set("break_paging", market="eq", dataset="tradestats")
        sim.run_until(at(10, 45))
        assert sim.value("algopack_up", **EQ_TS) == 0
        assert _errors(sim, **EQ_TS)["http"] >= 3
        sim.iss.faults.clear()
        sim.run_until(at(10, 47))
        assert sim.value("algopack_up", **EQ_TS) == 1
        assert sim.value("algopack_missing_intervals", **EQ_TS) == 0
        state = sim.app.store.get(("eq", "tradestats"))
        assert state.rows_seen == len(state.seen_buckets)  # nothing counted twice
    finally:
        sim.close()


def test_expired_cookie_means_one_reauth_and_a_retry(tmp_path):
    env = {"MOEX_PASSPORT_LOGIN": PASSPORT_LOGIN, "MOEX_PASSPORT_PASSWORD": PASSPORT_PASSWORD}
    sim = Simulation(tmp_path, at(10, 20), auth="passport", environ=env)
    sim.iss.passport_login, sim.iss.passport_password = PASSPORT_LOGIN, PASSPORT_PASSWORD
    try:
        sim.run_until(at(10, 30))
        logins = route_stats(sim)[("authenticate", None, "authenticate")]["requests"]
        assert logins == 1
        sim.iss.faults.set("expire_auth")
        sim.run_until(at(10, 40))
        assert route_stats(sim)[("authenticate", None, "authenticate")]["requests"] == 2  # exactly one re-auth
        assert sim.value("algopack_iss_requests_total", status="401") == 1          # the one refused request
        for pair, up in sim.pair_values("algopack_up").items():
            assert math.isnan(up) or up == 1, pair
            assert sum(_errors(sim, market=pair[0], endpoint=pair[1]).values()) == 0, pair
    finally:
        sim.close()


@pytest.fixture(scope="module")
def wrong_credentials(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wrong-credentials")
    env = {"MOEX_PASSPORT_LOGIN": PASSPORT_LOGIN, "MOEX_PASSPORT_PASSWORD": "not-the-password-1234"}
    sim = Simulation(tmp, at(12, 0), auth="passport", environ=env)
    sim.iss.passport_login, sim.iss.passport_password = PASSPORT_LOGIN, PASSPORT_PASSWORD
    try:
        sim.run_until(at(12, 5))
        yield sim, tmp
    finally:
        sim.close()


def test_wrong_credentials_count_auth_errors_and_raise_poll_failing(wrong_credentials):
    sim, tmp = wrong_credentials
    failing = set()
    for (market, endpoint), up in sim.pair_values("algopack_up").items():
        if math.isnan(up):
            assert endpoint == "hi2"  # not due before its window
            continue
        assert up == 0
        assert _errors(sim, market=market, endpoint=endpoint)["auth"] >= 2
        assert sim.value("algopack_missing_intervals", market=market, endpoint=endpoint) == 0
        failing.add((market, endpoint))
    assert len(failing) == 9
    # Login attempts are bounded by polls (no retry storm against the passport).
    polls = sum(sim.value("algopack_polls_total", market=m, endpoint=e) for m, e in failing)
    assert route_stats(sim)[("authenticate", None, "authenticate")]["requests"] <= polls
    # Through the shipped rules: AlgopackPollFailing for every pair after its for: 3m.
    series = exposition_series(sim, ("algopack_up", "algopack_session_open"))
    expected = [{"exp_labels": {"severity": "critical", "market": m, "endpoint": e}} for m, e in sorted(failing)]
    (tmp / "poll-failing").mkdir()
    result = promtool_alerts(tmp / "poll-failing", series, [
        {"eval_time": "2m", "alertname": "AlgopackPollFailing", "exp_alerts": []},
        {"eval_time": "4m", "alertname": "AlgopackPollFailing", "exp_alerts": expected},
    ])
    assert result.returncode == 0, result.stdout + result.stderr


def test_wrong_credentials_raise_no_data_alert(wrong_credentials):
    sim, tmp = wrong_credentials
    names = ("algopack_up", "algopack_session_open", "algopack_session_elapsed_seconds", "algopack_lag_seconds",
             "algopack_delay_threshold_seconds", "algopack_missing_intervals", "algopack_obstats_secids",
             "algopack_obstats_secids_prev_day_max", "algopack_hi2_expected", "algopack_hi2_present")
    series = exposition_series(sim, names)
    (tmp / "data-alerts").mkdir()
    checks = [{"eval_time": moment, "alertname": name, "exp_alerts": []}
              for moment in ("0m", "1m", "2m")
              for name in ("AlgopackDataDelayed", "AlgopackMissingIntervals", "AlgopackObstatsSecidsDropped",
                           "AlgopackHi2Missing")]
    result = promtool_alerts(tmp / "data-alerts", series, checks)
    assert result.returncode == 0, result.stdout + result.stderr


def test_calendar_store_of_sim_is_the_repo_calendar():
    """Guard for the tests above: they assume the shipped calendar trades on 2026-11-25."""
    calendar = CalendarStore(str(CALENDAR)).current
    assert calendar.in_session("eq", at(12, 0)) and calendar.in_session("fx", at(10, 20))
