"""A slow upstream: every eq answer drips at 1 byte/s (issue 14, item 1).

One LocalStack (sandbox ISS, exporter process, real Prometheus 2.42 with the shipped
rules) on a x30 clock. The sandbox's `drip` knob writes each eq answer (all eq datasets)
at 1 byte/s; `iss.timeout_seconds: 3` is the whole-request deadline. Then:

- every eq pair polled in session fails with reason="timeout" each time, never hangs;
- every fx and fo pair keeps its schedule: polled every bucket, up 1, lag as usual, no
  hole — none of them waits for a worker (one per pair), no run is skipped (/jobs
  `skipped`, and no APScheduler "maximum number of running instances" line in the log);
- Prometheus fires AlgopackPollFailing for the dripping eq pairs only, and no data alert
  for anyone. The rule's `for: 3m` is shortened to 20 s in the test's copy of the rules
  (expressions unchanged), so it fires within the test;
- once the drip ends, eq is re-planned and recovers: up 1, the outage's buckets read back.
"""

from __future__ import annotations

import time

import pytest
import requests

from deploy.stack import LocalStack
from tests.support import need_binary

from .helpers import data_alerts, pair_samples, parse_exposition, rules_with_short_for, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SPEED = 30.0
TIMEOUT = 3.0
POLL_FAILING_FOR = "20s"
EQ_POLLED = {("eq", "tradestats"), ("eq", "orderstats"), ("eq", "obstats")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need_binary("prometheus")
    workdir = tmp_path_factory.mktemp("slow-upstream")
    local = LocalStack(workdir, clock_speed=SPEED, components=("iss", "exporter", "prometheus"),
                       rules_dir=rules_with_short_for(workdir, {"AlgopackPollFailing": POLL_FAILING_FOR}),
                       config_overrides={"iss": {"timeout_seconds": TIMEOUT, "retries": 0}},
                       delay_threshold_seconds=600)
    with local:
        yield local


def _metrics(stack: LocalStack) -> dict:
    return parse_exposition(stack.exporter_metrics())


def _alerts_over(stack: LocalStack, seconds: float) -> set[tuple[str, str, str, str]]:
    """(alertname, alertstate, market, endpoint) of every ALERTS series of the last `seconds`."""
    found = set()
    for item in stack.prom_query(f"max_over_time(ALERTS[{max(int(seconds), 1)}s])"):
        labels = item["metric"]
        found.add((labels["alertname"], labels["alertstate"], labels.get("market", ""), labels.get("endpoint", "")))
    return found


def test_dripping_eq_fails_by_timeout_and_blinds_no_other_pair(stack):
    # Steady state first: every pair polled in session is up and Prometheus has it.
    wait_for(lambda: stack.prom_query('algopack_up{endpoint!="hi2"} == 1'), 30, "Prometheus to scrape")
    before = _metrics(stack)
    polled = {pair for pair, up in pair_samples(before, "algopack_up").items() if pair[1] != "hi2"}
    assert EQ_POLLED <= polled
    others = {pair for pair in polled if pair[0] != "eq"}
    assert {m for m, _ in others} == {"fx", "fo"}
    polls0 = pair_samples(before, "algopack_polls_total")
    tradetime0 = pair_samples(before, "algopack_last_tradetime_timestamp_seconds")
    timeouts0 = pair_samples(before, "algopack_poll_errors_total", reason="timeout")

    started = time.monotonic()
    stack.iss_fault("drip", market="eq", bytes_per_second=1)
    try:
        # AlgopackPollFailing firing for each eq pair, and 4 buckets (20 virtual min) of
        # fx/fo data read meanwhile.
        def done():
            firing = {(a["labels"]["market"], a["labels"]["endpoint"]) for a in stack.prom_alerts()
                      if a["labels"]["alertname"] == "AlgopackPollFailing" and a["state"] == "firing"}
            tt = pair_samples(_metrics(stack), "algopack_last_tradetime_timestamp_seconds")
            fresh = all(tt.get(pair, 0) >= tradetime0[pair] + 4 * 300 for pair in others)
            return firing >= EQ_POLLED and fresh
        wait_for(done, 90, "AlgopackPollFailing for eq and 4 buckets of fx/fo", step=1.0)
        window = time.monotonic() - started
        metrics = _metrics(stack)
        jobs = requests.get(stack.urls["exporter"] + "/jobs?format=json", timeout=5).json()
        log = stack.log_tail("exporter", 5000)
        lag_max = {(i["metric"]["market"], i["metric"]["endpoint"]): float(i["value"][1]) for i in stack.prom_query(
            f'max_over_time(algopack_lag_seconds{{market=~"fx|fo",endpoint!="hi2"}}[{int(window) + 1}s])')}
        alerts = _alerts_over(stack, window + 2)
    finally:
        stack.iss_clear_faults("drip")

    # eq: each poll ended at the deadline with reason="timeout", none hung.
    up = pair_samples(metrics, "algopack_up")
    timeouts = pair_samples(metrics, "algopack_poll_errors_total", reason="timeout")
    durations = pair_samples(metrics, "algopack_poll_duration_seconds_sum")
    counts = pair_samples(metrics, "algopack_poll_duration_seconds_count")
    for pair in EQ_POLLED:
        assert up[pair] == 0, pair
        assert timeouts[pair] >= 1, pair
    # fx/fo: polled every bucket, up, no hole, lag as on a normal day.
    for pair in others:
        assert up[pair] == 1, pair
        assert timeouts.get(pair, 0) == timeouts0.get(pair, 0), (pair, [
            line for line in log.splitlines() if pair[1] in line and "fail" in line])
        assert pair_samples(metrics, "algopack_missing_intervals")[pair] == 0, pair
        assert pair_samples(metrics, "algopack_polls_total")[pair] >= polls0[pair] + 4, pair
        assert lag_max[pair] < 600, (pair, lag_max[pair])
    print(f"drip window {window:.0f}s real; worst fx/fo lag {max(lag_max.values()):.0f}s virtual; "
          f"eq polls failed by timeout: {sum(timeouts[p] for p in EQ_POLLED):.0f}; eq mean poll "
          + ", ".join(f"{p[1]} {durations[p] / counts[p]:.1f}s" for p in sorted(EQ_POLLED) if counts.get(p)))
    # No run skipped, and no skip noise in the log.
    assert {job["id"]: job.get("skipped", 0) for job in jobs if job.get("skipped")} == {}
    assert "maximum number of running instances" not in log
    assert "event=poll_skipped" not in log
    assert "Connection pool is full" not in log      # the ISS client's pool fits a worker per pair
    # Prometheus: PollFailing for the dripping eq pairs only, no data alert at all.
    poll_failing = {(m, e) for name, state, m, e in alerts if name == "AlgopackPollFailing"}
    assert poll_failing == EQ_POLLED, alerts
    assert not data_alerts(alerts), alerts

    # The drip ends: eq is re-planned from its failed poll and recovers without holes.
    def recovered():
        now = _metrics(stack)
        return (all(pair_samples(now, "algopack_up")[p] == 1 for p in EQ_POLLED)
                and all(pair_samples(now, "algopack_missing_intervals")[p] == 0 for p in EQ_POLLED))
    wait_for(recovered, 30, "eq up again, with the outage's buckets read back")
