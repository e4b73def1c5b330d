"""Feed SLO judgement on plain data (exporter/slo.py) and its state bookkeeping."""

from __future__ import annotations

from exporter import slo
from exporter.state import PairState

G, W = 120.0, 1800.0
T0 = 1_000_000.0
BUCKETS = [T0 + 300 * i for i in range(1, 7)]


def test_outcome_by_delay_against_grace_and_window():
    assert slo.outcome_of(0, G, W) == "on_time"
    assert slo.outcome_of(G, G, W) == "on_time"
    assert slo.outcome_of(G + 1, G, W) == "late"
    assert slo.outcome_of(G + W, G, W) == "late"
    assert slo.outcome_of(G + W + 1, G, W) == "missing"
    assert slo.outcome_of(None, G, W) == "missing"


def test_judged_by_systime_not_by_poll_time():
    # A backlog read in one poll long after: each bucket judged by its own SYSTIME.
    arrivals = {BUCKETS[0]: BUCKETS[0] + 10, BUCKETS[1]: BUCKETS[1] + 200, BUCKETS[2]: BUCKETS[2] + G + W + 5}
    verdicts = slo.judge(BUCKETS, arrivals, frozenset(), BUCKETS[-1] + 5000, G, W, since_ts=0)
    assert [(v.outcome, v.delay) for v in verdicts] == [
        ("on_time", 10), ("late", 200), ("missing", None), ("missing", None), ("missing", None), ("missing", None)]


def test_missing_only_once_the_hole_window_has_passed():
    now = BUCKETS[0] + G + W  # not past yet
    assert slo.judge(BUCKETS[:1], {}, frozenset(), now, G, W, 0) == []
    assert [v.outcome for v in slo.judge(BUCKETS[:1], {}, frozenset(), now + 1, G, W, 0)] == ["missing"]
    # A closed day judges what has not come at once.
    assert [v.outcome for v in slo.judge(BUCKETS[:1], {}, frozenset(), now - 999, G, W, 0, final=True)] == ["missing"]


def test_only_buckets_after_the_start_and_each_once():
    arrivals = {b: b + 5 for b in BUCKETS}
    verdicts = slo.judge(BUCKETS, arrivals, frozenset({BUCKETS[3]}), BUCKETS[-1], G, W, since_ts=BUCKETS[1])
    assert [v.bucket for v in verdicts] == [BUCKETS[2], BUCKETS[4], BUCKETS[5]]
    state = PairState("eq", "tradestats").with_verdicts(verdicts)
    again = state.with_verdicts(verdicts)
    assert again.buckets_total == state.buckets_total == {"on_time": 3, "late": 0, "missing": 0}
    assert again.bucket_delay.total == 3 and again.bucket_delay.sum == 15.0


def test_arrivals_keep_the_earliest_systime():
    merged = slo.merge_arrivals({}, [BUCKETS[0], BUCKETS[0]], [BUCKETS[0] + 30, BUCKETS[0] + 9])
    merged = slo.merge_arrivals(merged, [BUCKETS[0]], [BUCKETS[0] + 600])  # a reload: later SYSTIME
    assert merged == {BUCKETS[0]: BUCKETS[0] + 9}


def test_histogram_has_the_slo_buckets_and_counts_on_time_plus_late():
    verdicts = [slo.Verdict(BUCKETS[0], "on_time", 7.0), slo.Verdict(BUCKETS[1], "late", 150.0),
                slo.Verdict(BUCKETS[2], "missing", None)]
    state = PairState("fx", "obstats").with_verdicts(verdicts)
    cumulative = dict(state.bucket_delay.cumulative())
    assert list(cumulative) == [f"{b:g}" for b in slo.DELAY_BUCKETS] + ["+Inf"]
    assert cumulative["5"] == 0 and cumulative["10"] == 1 and cumulative["120"] == 1 and cumulative["180"] == 2
    assert cumulative["+Inf"] == 2 == state.buckets_total["on_time"] + state.buckets_total["late"]


def test_next_verdict_moment_of_the_earliest_unjudged_hole():
    arrivals = {BUCKETS[0]: BUCKETS[0] + 5}
    assert slo.next_verdict_ts(BUCKETS, arrivals, frozenset(), G, W, 0) == BUCKETS[1] + G + W + 1
    assert slo.next_verdict_ts(BUCKETS, arrivals, frozenset(BUCKETS), G, W, 0) is None


def test_slo_config_targets(tmp_path):
    import pytest

    from exporter.config import ConfigError, load_config

    path = tmp_path / "config.yml"
    path.write_text("slo:\n  target_ratio: 0.99\n  targets: {eq: {tradestats: 0.999}}\n", encoding="utf-8")
    config = load_config(path, environ={})
    assert config.slo.target("eq", "tradestats") == 0.999 and config.slo.target("fx", "obstats") == 0.99
    assert load_config(None, environ={}).slo.target("fo", "futoi") == 0.995
    path.write_text("slo:\n  target_ratio: 99.5\n  targets: {eq: {hi2: 0.9}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as failed:
        load_config(path, environ={})
    assert "slo.target_ratio" in str(failed.value) and "slo.targets.eq.hi2" in str(failed.value)


def test_every_outcome_and_the_target_exposed_before_the_first_poll(tmp_path):
    from datetime import datetime

    from prometheus_client import generate_latest

    from exporter.app import ExporterApp
    from exporter.clock import MSK, ManualClock
    from exporter.config import load_config
    from tests.integration.exporter_sim import CALENDAR

    path = tmp_path / "config.yml"
    path.write_text(f"iss: {{base_url: 'http://127.0.0.1:9', auth: none}}\ncalendar: {{file: '{CALENDAR}'}}\n",
                    encoding="utf-8")
    app = ExporterApp(load_config(path, environ={}), ManualClock(datetime(2026, 11, 25, 9, 0, tzinfo=MSK)))
    try:
        text = generate_latest(app.registry).decode()
    finally:
        app.client.close()
    intraday = [p for p in app.store.snapshot.pairs if p[1] != "hi2"]
    for market, endpoint in intraday:
        for outcome in slo.OUTCOMES:
            assert (f'algopack_buckets_total{{endpoint="{endpoint}",market="{market}",outcome="{outcome}"}} 0.0'
                    in text)
        assert f'algopack_bucket_publish_delay_seconds_count{{endpoint="{endpoint}",market="{market}"}} 0.0' in text
        assert f'algopack_slo_target_ratio{{endpoint="{endpoint}",market="{market}"}} 0.995' in text
    assert 'endpoint="hi2",market="eq",outcome' not in text
