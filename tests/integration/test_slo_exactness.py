"""Exactness of the feed SLO counters: a simulated day on a manual clock, the real poller,
ISS client and collector against the sandbox with a jittered delay profile, feed stops and
never-published buckets; every pair's algopack_buckets_total equals, per outcome, what the
sandbox's own publish plan says (bench.scenario.probe_truth), and the delay histogram counts
on_time + late. Bad rows (rejected) are in the answers too and never count as an arrival.

One market (eq: tradestats, orderstats with a 38-minute feed stop, obstats; its day has a
break and an evening session), the whole day and the night after it, so the evening's
closing buckets are judged by the verdict poll after their hole window. fx and fo are left
out only for run time (all three markets: ~35-45 s on 2 busy cores; eq alone ~15-20 s); the
same comparison over every pair is in BENCHMARKS.md ("Feed SLO exactness").
"""

from __future__ import annotations

from datetime import datetime

import pytest

from bench import scenario
from bench.ours import OurRun
from exporter import slo
from exporter.clock import MSK

pytestmark = pytest.mark.integration

# base delays well inside the grace; a tenth of the buckets 60-600 s late (across the 120 s
# grace), 2 % never published.
JITTER = {"base": [3, 40], "late": [60, 600], "late_share": 0.1, "never_share": 0.02}
MARKETS = {"eq": {"enabled": True}, "fx": {"enabled": False}, "fo": {"enabled": False}}
NIGHT_AFTER = datetime(2026, 11, 26, 0, 40, tzinfo=MSK)


def bad_rows(iss) -> None:
    for kind in ("off_grid", "other_day", "future_systime"):
        iss.faults.set("bad_row", kind=kind)


def expected_outcomes(run: OurRun, market: str, endpoint: str) -> dict[str, int]:
    truth = scenario.probe_truth(run.iss, market, endpoint)
    grace, window = scenario.PUBLISH_GRACE, scenario.MISSING_WINDOW
    out = dict.fromkeys(slo.OUTCOMES, 0)
    for bucket in run.app.calendars.current.expected_buckets(market, scenario.DAY):
        moment = truth.get(bucket.timestamp())
        out[slo.outcome_of(None if moment is None else moment - bucket.timestamp(), grace, window)] += 1
    return out


def test_bucket_counters_equal_the_sandbox_publish_plan(tmp_path):
    run = OurRun(tmp_path, start=scenario.DAY_START, scale=0.05, markets=MARKETS)
    try:
        run.iss.faults.set("delay_profile", **JITTER)
        events = sorted([*scenario.events(), scenario.Event(scenario.at(11, 2), "bad rows", bad_rows)],
                        key=lambda e: e.moment)
        run.run(NIGHT_AFTER, events, evaluate=False)
        samples = run.samples()
        rejected = sum(samples["algopack_rows_rejected_total"].values())
        seen_outcomes = set()
        for market, endpoint in run.app.store.snapshot.pairs:
            if endpoint == "hi2":
                continue
            expected = expected_outcomes(run, market, endpoint)
            counted = {o: samples["algopack_buckets_total"][(("endpoint", endpoint), ("market", market),
                                                              ("outcome", o))] for o in slo.OUTCOMES}
            assert counted == expected, (market, endpoint)
            count = samples["algopack_bucket_publish_delay_seconds_count"][(("endpoint", endpoint),
                                                                              ("market", market))]
            assert count == expected["on_time"] + expected["late"]
            seen_outcomes |= {o for o, n in expected.items() if n}
    finally:
        run.close()
    assert seen_outcomes == set(slo.OUTCOMES)  # the day exercises every outcome
    assert rejected > 0  # bad rows were served and skipped


def test_after_a_restart_only_buckets_due_after_the_start_are_judged(tmp_path):
    start = scenario.at(12, 1, 30)
    run = OurRun(tmp_path, start=start, scale=0.05, markets=MARKETS)
    try:
        run.run(scenario.at(12, 45), evaluate=False)
        for (market, endpoint), state in run.app.store.snapshot.pairs.items():
            if endpoint == "hi2":
                continue
            assert state.judged and min(state.judged) > start.timestamp()
            # 12:05 .. 12:40 have come (no stop in this run): 8 buckets, each once.
            assert sum(state.buckets_total.values()) == len(state.judged) == 8, (market, endpoint)
    finally:
        run.close()


def test_closing_buckets_are_judged_the_same_evening(tmp_path):
    # fx trades until 19:00; its 18:55 probe bucket never comes. Nothing else would poll fx
    # before tomorrow: one verdict poll after 18:55 + grace + hole window (19:27) counts it.
    markets = {"eq": {"enabled": False}, "fx": {"enabled": True, "endpoints": ["tradestats"]},
               "fo": {"enabled": False}}
    run = OurRun(tmp_path, start=scenario.at(18, 30), scale=0.05, markets=markets, with_faults=False)
    try:
        run.iss.faults.set("drop_intervals", market="fx", dataset="tradestats", intervals=["18:55"], scope="probe")
        pair = ("fx", "tradestats")
        run.run(scenario.at(19, 26), evaluate=False)
        assert run.app.store.get(pair).buckets_total["missing"] == 0
        polls = run.app.store.get(pair).polls_total
        run.run(scenario.at(19, 40), evaluate=False)
        state = run.app.store.get(pair)
        assert state.buckets_total == {"on_time": 5, "late": 0, "missing": 1}  # 18:35 .. 19:00
        assert state.polls_total == polls + 1
        assert state.next_poll_ts > scenario.at(23, 59).timestamp()  # then quiet until tomorrow
    finally:
        run.close()
