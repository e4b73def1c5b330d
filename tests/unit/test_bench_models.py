"""The benchmark's models must be right before their numbers mean anything: the old strategy's
schedule and gap logic, the ground truth, the rules' `for:` and the Alertmanager dispatch model,
and the production settings the simulation mirrors."""

from __future__ import annotations

import re
from datetime import date, datetime

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import realstack, scenario
from bench.alerting import (
    AlertmanagerModel,
    Incident,
    Message,
    RuleHolds,
    count_episodes,
    first_detection,
    group_incidents,
    incident_buckets,
    is_false_alarm,
    percentile,
)
from bench.oldstrategy import futoi_lagging, job_times, newly_missing
from bench.ours import HOLES_EXCLUDED, missing_interval_alerts
from deploy.render_alertmanager import DEFAULTS as AM_DEFAULTS
from exporter.calendar import parse_calendar_text
from exporter.clock import MSK
from exporter.config import PollConfig

from ..calendars import BASE_CALENDAR

CALENDAR = parse_calendar_text(BASE_CALENDAR)
DAY = date(2026, 11, 25)


def ts(hh: int, mm: int, ss: int = 0) -> float:
    return datetime(2026, 11, 25, hh, mm, ss, tzinfo=MSK).timestamp()


# ---- old strategy ---------------------------------------------------------------------

def test_old_jobs_every_minute_at_30s_inside_sessions():
    jobs = job_times(CALENDAR, "eq", DAY, 60)
    assert jobs[0] == ts(10, 0, 30)
    assert all(datetime.fromtimestamp(t, MSK).second == 30 for t in jobs)
    assert ts(18, 40, 30) in jobs and ts(18, 41, 30) not in jobs       # last bucket 18:40 is checked
    assert ts(19, 0, 30) not in jobs and ts(19, 5, 30) in jobs          # nothing between sessions
    assert jobs[-1] == ts(23, 50, 30)
    assert jobs == sorted(set(jobs))


def test_old_five_minute_jobs_run_30s_after_each_bucket_end():
    jobs = job_times(CALENDAR, "fx", DAY, 300)
    assert jobs[:3] == [ts(7, 0, 30), ts(7, 5, 30), ts(7, 10, 30)]
    assert jobs[-1] == ts(19, 0, 30)


def test_old_gap_has_no_grace_and_is_reported_once():
    expected = [ts(10, 5), ts(10, 10), ts(10, 15)]
    # 10:10 ended 30 s ago and is not in the rows yet: missing at once (no grace).
    reported: set[float] = set()
    first = newly_missing(expected, {ts(10, 5)}, ts(10, 10, 30), reported)
    assert first == [ts(10, 10)]
    reported.update(first)
    # It arrives later: the old tool never re-checks, so no resolve and no second report.
    assert newly_missing(expected, {ts(10, 5), ts(10, 10)}, ts(10, 11, 30), reported) == []
    # A bucket whose end has not passed is never missing.
    assert newly_missing(expected, set(), ts(10, 15), reported) == [ts(10, 5)]


def test_old_futoi_lag_is_now_minus_newest_bucket_end():
    assert futoi_lagging(ts(12, 10, 1), ts(12, 0), 600)
    assert not futoi_lagging(ts(12, 10), ts(12, 0), 600)
    assert not futoi_lagging(ts(12, 10), None, 600)


# ---- ground truth ---------------------------------------------------------------------

def test_incident_buckets_and_grouping():
    truth = {ts(10, 5): ts(10, 5, 10), ts(10, 10): ts(10, 11, 30),   # on time, late but within grace
             ts(10, 15): ts(10, 30, 0), ts(10, 20): ts(10, 30, 0),   # a stop resumed at 10:30
             ts(10, 25): ts(10, 30, 0), ts(10, 30): ts(10, 30, 10),
             ts(10, 35): None}                                         # never
    bad = incident_buckets(truth, 120)
    assert bad == {ts(10, 15), ts(10, 20), ts(10, 25), ts(10, 35)}
    incidents = group_incidents(("eq", "tradestats"), truth, bad)
    assert [i.kind for i in incidents] == ["stop", "hole"]
    assert incidents[0].due == ts(10, 15)


def test_false_alarm_is_a_message_only_about_buckets_that_arrived_in_time():
    bad = {("eq", "tradestats"): {ts(10, 15)}}
    assert is_false_alarm(Message(ts(10, 10, 30), False, "x", {("eq", "tradestats"): frozenset({ts(10, 10)})}), bad)
    assert not is_false_alarm(Message(ts(10, 15, 30), False, "x", {("eq", "tradestats"): frozenset({ts(10, 15)})}), bad)
    assert not is_false_alarm(Message(ts(10, 40), True, "x", {("eq", "tradestats"): frozenset({ts(10, 10)})}), bad)


def test_first_detection_needs_the_pair_and_one_of_the_buckets():
    incident = Incident(("eq", "tradestats"), (ts(10, 15), ts(10, 20)))
    messages = [Message(ts(10, 16), False, "x", {("eq", "orderstats"): frozenset({ts(10, 15)})}),
                Message(ts(10, 17), False, "x", {("eq", "tradestats"): frozenset({ts(10, 5)})}),
                Message(ts(10, 18), False, "x", {("eq", "tradestats"): frozenset({ts(10, 20)})})]
    assert first_detection(incident, messages) == ts(10, 18)
    assert first_detection(Incident(("fx", "obstats"), (ts(10, 15),)), messages) is None


# ---- Alertmanager model ---------------------------------------------------------------

def test_group_wait_then_group_interval_then_resolve():
    am = AlertmanagerModel(group_wait=30, group_interval=60)
    key = ("AlgopackMissingIntervals", ("eq", "tradestats"), "12:05")
    t = ts(12, 7, 15)
    am.evaluate(t, {key: frozenset({ts(12, 5)})})
    am.evaluate(t + 15, {key: frozenset({ts(12, 5)})})
    assert am.messages == []                                   # still within group_wait
    am.evaluate(t + 30, {key: frozenset({ts(12, 5)})})
    assert [(m.ts, m.resolved) for m in am.messages] == [(t + 30, False)]
    # A second pair of the same market joins the group: sent at the next group_interval tick
    # (flushes at t+30, t+90, t+150, ...), not after a group_wait of its own.
    other = ("AlgopackMissingIntervals", ("eq", "obstats"), "12:05")
    am.evaluate(t + 60, {key: frozenset({ts(12, 5)}), other: frozenset({ts(12, 5)})})
    am.tick(t + 89)
    assert len(am.messages) == 1
    am.tick(t + 90)
    assert len(am.messages) == 2 and set(am.messages[1].evidence) == {("eq", "tradestats"), ("eq", "obstats")}
    # An unchanged group is not re-sent at the following ticks.
    am.evaluate(t + 120, {key: frozenset({ts(12, 5)}), other: frozenset({ts(12, 5)})})
    am.tick(t + 150)
    assert len(am.messages) == 2
    # Both resolve: one resolved message at the next tick, then the group is gone.
    am.evaluate(t + 165, {})
    am.tick(t + 209)
    assert len(am.messages) == 2
    am.tick(t + 210)
    assert am.messages[-1].resolved and set(am.messages[-1].evidence) == {("eq", "tradestats"), ("eq", "obstats")}
    assert am.groups == {}
    assert count_episodes(am.messages) == (2, 0)


def test_alert_that_clears_before_group_wait_sends_nothing():
    am = AlertmanagerModel(group_wait=30, group_interval=60)
    key = ("AlgopackDataDelayed", ("fx", "tradestats"), "")
    am.evaluate(ts(12, 0), {key: frozenset()})
    am.evaluate(ts(12, 0, 15), {})
    am.tick(ts(13, 0))
    assert am.messages == []


def test_growing_run_is_not_a_new_message():
    """A stopped feed: one run, one alert (same since) whose value grows; only repeat_interval re-sends it."""
    am = AlertmanagerModel(group_wait=30, group_interval=60, repeat_interval=4 * 3600)
    key = ("AlgopackMissingIntervals", ("fo", "obstats"), "11:55")
    am.evaluate(ts(12, 0), {key: frozenset({ts(11, 55)})})
    am.tick(ts(12, 1))
    am.evaluate(ts(12, 5), {key: frozenset({ts(11, 55), ts(12, 0)})})
    am.tick(ts(15, 59))
    assert len(am.messages) == 1
    am.tick(ts(16, 1))
    assert len(am.messages) == 2 and am.messages[1].evidence[key[1]] == frozenset({ts(11, 55), ts(12, 0)})
    assert am.messages[1].news() == {}                          # a repeat names nothing new
    assert count_episodes(am.messages) == (1, 1)


def test_new_run_of_a_firing_pair_is_a_new_alert_sent_within_a_group_interval():
    """The masking the per-run rule removes: an unfilled 11:55 hole is still firing when 12:25 goes missing."""
    am = AlertmanagerModel(group_wait=30, group_interval=60, repeat_interval=4 * 3600)
    pair = ("fo", "obstats")
    old, new = ("AlgopackMissingIntervals", pair, "11:55"), ("AlgopackMissingIntervals", pair, "12:25")
    am.evaluate(ts(11, 57, 15), {old: frozenset({ts(11, 55)})})
    am.tick(ts(12, 27))
    assert len(am.messages) == 1                                # flushes at 11:57:45, 11:58:45, ...
    am.evaluate(ts(12, 27, 15), {old: frozenset({ts(11, 55)}), new: frozenset({ts(12, 25)})})
    am.tick(ts(12, 27, 44))
    assert len(am.messages) == 1
    am.tick(ts(12, 27, 45))
    message = am.messages[-1]
    assert message.ts - ts(12, 27, 15) <= 60
    assert message.alerts == {old: frozenset({ts(11, 55)}), new: frozenset({ts(12, 25)})}
    assert message.news() == {pair: frozenset({ts(12, 25)})}    # the old run is listed, not news
    incident = Incident(pair, (ts(12, 25),))
    assert first_detection(incident, am.messages) == ts(12, 27, 45)
    # The 11:55 run leaves the window and resolves; the 12:25 one stays: one resolve message for it.
    am.evaluate(ts(12, 29), {new: frozenset({ts(12, 25)})})
    am.tick(ts(12, 30))
    assert am.messages[-1].resolved and am.messages[-1].alerts == {old: frozenset({ts(11, 55)})}
    assert count_episodes(am.messages) == (2, 1)


def test_first_detection_counts_only_an_alerts_first_send():
    pair = ("eq", "tradestats")
    key = ("AlgopackMissingIntervals", pair, "10:15")
    first = Message(ts(10, 18), False, "AlgopackMissingIntervals", {pair: frozenset({ts(10, 15)})},
                    {key: frozenset({ts(10, 15)})}, {pair: frozenset({ts(10, 15)})})
    # Re-sent later with the run grown: listed, but not news.
    resend = Message(ts(10, 30), False, "AlgopackMissingIntervals", {pair: frozenset({ts(10, 15), ts(10, 20)})},
                     {key: frozenset({ts(10, 15), ts(10, 20)})}, {})
    assert first_detection(Incident(pair, (ts(10, 15), ts(10, 20))), [first, resend]) == ts(10, 18)
    assert first_detection(Incident(pair, (ts(10, 25),)), [first, resend]) is None
    assert not is_false_alarm(resend, {pair: {ts(10, 20)}})     # what it lists is an incident


# ---- the hole rule on the real collector's exposition --------------------------------------

def _samples(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


GOLDEN = scenario.REPO / "tests" / "golden" / "exposition_eq_stopped_and_holes.txt"


def test_missing_interval_alerts_one_per_run_from_the_collector_exposition():
    samples = _samples(GOLDEN.read_text())
    alerts = missing_interval_alerts(samples)
    runs = {(dict(k)["market"], dict(k)["endpoint"], dict(k)["since"]): v
            for k, v in samples["algopack_missing_run_intervals"].items()}
    assert runs                                                  # the golden file has runs
    assert set(alerts) == {("AlgopackMissingIntervals", (m, e), since) for m, e, since in runs}
    for (_, pair, since), buckets in alerts.items():
        hole_ts = {dict(k)["interval"]: v for k, v in samples["algopack_missing_interval_timestamp_seconds"].items()
                   if (dict(k)["market"], dict(k)["endpoint"]) == pair}
        assert min(buckets) == hole_ts[since] and len(buckets) == runs[(*pair, since)]


def test_missing_interval_alerts_gates():
    m, t = "eq", "tradestats"

    def exposition(checking: float, up: float, runs: dict[str, tuple[float, list[str]]], endpoint: str = t):
        s = {"algopack_session_checking": {(("market", m),): checking},
             "algopack_up": {(("endpoint", endpoint), ("market", m)): up},
             "algopack_missing_run_intervals": {}, "algopack_missing_interval_timestamp_seconds": {}}
        for since, (n, holes) in runs.items():
            s["algopack_missing_run_intervals"][(("endpoint", endpoint), ("market", m), ("since", since))] = n
            for hole in holes:
                hh, mm = map(int, hole.split(":"))
                s["algopack_missing_interval_timestamp_seconds"][
                    (("endpoint", endpoint), ("interval", hole), ("market", m))] = ts(hh, mm)
        return s

    two_runs = {"10:15": (2.0, ["10:15", "10:20"]), "11:00": (1.0, ["11:00"])}
    assert missing_interval_alerts(exposition(1, 1, two_runs)) == {
        ("AlgopackMissingIntervals", (m, t), "10:15"): frozenset({ts(10, 15), ts(10, 20)}),
        ("AlgopackMissingIntervals", (m, t), "11:00"): frozenset({ts(11, 0)})}
    assert missing_interval_alerts(exposition(0, 1, two_runs)) == {}          # not checking
    assert missing_interval_alerts(exposition(1, 0, two_runs)) == {}          # polls failing
    assert len(missing_interval_alerts(exposition(1, float("nan"), two_runs))) == 2   # NaN is not 0
    assert missing_interval_alerts(exposition(1, 1, two_runs, endpoint="futoi")) == {}
    # A run older than the window is not exposed (the collector's job): only its holes remain.
    only_holes = exposition(1, 1, {"11:00": (1.0, ["11:00"])})
    only_holes["algopack_missing_interval_timestamp_seconds"][
        (("endpoint", t), ("interval", "10:15"), ("market", m))] = ts(10, 15)
    assert set(missing_interval_alerts(only_holes)) == {("AlgopackMissingIntervals", (m, t), "11:00")}
    # The text lists at most LISTED_HOLES of a long run.
    long_run = [f"{10 + k // 12}:{k % 12 * 5:02d}" for k in range(1, 21)]
    alerts = missing_interval_alerts(exposition(1, 1, {"10:05": (20.0, long_run)}))
    assert len(next(iter(alerts.values()))) == scenario.LISTED_HOLES


# ---- Prometheus `for:` ------------------------------------------------------------------

DELAYED = ("AlgopackDataDelayed", ("eq", "tradestats"), "")
MISSING = ("AlgopackMissingIntervals", ("eq", "tradestats"), "12:05")


def test_for_one_minute_fires_after_five_true_evaluations_at_15s():
    holds = RuleHolds({"AlgopackDataDelayed": 60})
    t = ts(12, 10)
    for k in range(4):                                          # pending at t .. t+45
        assert holds.step(t + 15 * k, {DELAYED: frozenset()}) == {}
    assert holds.step(t + 60, {DELAYED: frozenset({ts(12, 5)})}) == {DELAYED: frozenset({ts(12, 5)})}
    assert DELAYED in holds.step(t + 75, {DELAYED: frozenset()})


def test_for_pending_is_dropped_by_one_false_evaluation():
    holds = RuleHolds({"AlgopackDataDelayed": 60})
    t = ts(12, 10)
    for k in range(4):
        holds.step(t + 15 * k, {DELAYED: frozenset()})
    assert holds.step(t + 60, {}) == {}                         # a lag spike of under a minute
    for k in range(5, 9):                                       # starts again from t+75
        assert holds.step(t + 15 * k, {DELAYED: frozenset()}) == {}
    assert DELAYED in holds.step(t + 135, {DELAYED: frozenset()})


def test_rule_without_for_fires_at_its_first_true_evaluation():
    holds = RuleHolds({"AlgopackDataDelayed": 60})
    assert holds.step(ts(12, 7, 15), {MISSING: frozenset({ts(12, 5)})}) == {MISSING: frozenset({ts(12, 5)})}


# ---- the simulation mirrors the production settings -------------------------------------

def _rules() -> dict[str, dict]:
    data = yaml.safe_load((scenario.REPO / "prometheus" / "rules" / "algopack.yml").read_text())
    return {r["alert"]: r for g in data["groups"] for r in g["rules"] if "alert" in r}


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration)))


def test_modelled_rules_match_prometheus_rules():
    rules = _rules()
    missing, delayed = rules["AlgopackMissingIntervals"], rules["AlgopackDataDelayed"]
    # bench/ours.py evaluates these metric names and guards; a rule change must reach the model.
    # The hole rule: one series (alert) per run, label since; hi2 and futoi left out.
    first_line = missing["expr"].strip().splitlines()[0]
    assert first_line == 'algopack_missing_run_intervals{endpoint!~"hi2|futoi"} > 0'
    assert set(HOLES_EXCLUDED) == {"hi2", "futoi"}
    # The text lists the holes from the run's first bucket (label since) onward.
    description = missing["annotations"]["description"]
    assert "algopack_missing_interval_timestamp_seconds{market=%q,endpoint=%q} >= scalar(" in description
    assert "interval=%q}))\" $labels.market $labels.endpoint $labels.market $labels.endpoint $labels.since)" in description
    assert "algopack_lag_seconds" in delayed["expr"] and "algopack_delay_threshold_seconds" in delayed["expr"]
    assert "and on(market) algopack_session_checking == 1" in missing["expr"]
    assert "and on(market) algopack_session_open == 1" in delayed["expr"]
    assert "and on(market) algopack_session_elapsed_seconds > 600" in delayed["expr"]
    for rule in (missing, delayed):
        assert "unless on(market, endpoint) algopack_up == 0" in rule["expr"]
    assert re.search(r"if lt \$i (\d+) ", missing["annotations"]["description"]).group(1) == str(scenario.LISTED_HOLES)
    holds = {name: _seconds(rules[name]["for"]) for name in (missing["alert"], delayed["alert"]) if "for" in rules[name]}
    assert holds == scenario.RULE_HOLDS == {"AlgopackDataDelayed": 60.0}


def test_modelled_timings_match_production_defaults():
    assert scenario.PUBLISH_GRACE == PollConfig.publish_grace_seconds == 120
    assert scenario.MISSING_WINDOW == PollConfig.missing_window_seconds == 1800
    assert scenario.GROUP_WAIT == _seconds(AM_DEFAULTS["ALERTMANAGER_GROUP_WAIT"]) == 30
    assert scenario.GROUP_INTERVAL == _seconds(AM_DEFAULTS["ALERTMANAGER_GROUP_INTERVAL"]) == 60
    assert scenario.REPEAT_INTERVAL == _seconds(AM_DEFAULTS["ALERTMANAGER_REPEAT_INTERVAL"])
    # The real-stack measurement runs the same values (LocalStack's defaults are short test ones).
    assert {k: realstack.PIPELINE_TIMINGS[k] for k in ("group_wait", "group_interval", "repeat_interval")} == {
        "group_wait": AM_DEFAULTS["ALERTMANAGER_GROUP_WAIT"], "group_interval": AM_DEFAULTS["ALERTMANAGER_GROUP_INTERVAL"],
        "repeat_interval": AM_DEFAULTS["ALERTMANAGER_REPEAT_INTERVAL"]}
    assert _seconds(realstack.PIPELINE_TIMINGS["eval_interval"]) == scenario.SCRAPE_INTERVAL


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
