"""The benchmark's scoring and its time-scaled configuration must be right before its numbers
mean anything: the old tool's schedule and gap logic, the ground truth, the message parser,
and the rendering of the production rules/timings divided by the clock speed. No binaries
(the bench runs the rendered rules in the real Prometheus)."""

from __future__ import annotations

from datetime import date, datetime

import yaml

from bench.detection import parse_message, to_messages
from bench.oldstrategy import futoi_lagging, job_times, newly_missing
from bench.scoring import (
    Incident,
    Message,
    first_detection,
    group_incidents,
    incident_buckets,
    is_false_alarm,
    percentile,
)
from deploy.render_alertmanager import scaled_timings
from deploy.render_prometheus import (
    RULES_DIR,
    duration_ms,
    format_ms,
    scale_promql,
    scaled_duration,
    scaled_rules,
)
from exporter.calendar import parse_calendar_text
from exporter.clock import MSK

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

def test_percentile():
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9


# ---- time-scaled configuration ----------------------------------------------------------

def test_durations_divide_exactly_in_milliseconds():
    assert duration_ms("1m30s") == 90_000 and duration_ms("500ms") == 500
    assert format_ms(90_000) == "1m30s" and format_ms(750) == "750ms" and format_ms(0) == "0s"
    assert scaled_duration("15s", 40) == "375ms"
    assert scaled_duration("1m", 40) == "1s500ms"
    assert scaled_duration("30d", 40) == "18h"
    assert scaled_duration("0s", 40) == "0s"


def test_promql_windows_subqueries_and_offsets_scale_but_regex_classes_do_not():
    text = 'rate(x[5m]) + max_over_time(y[1h:30s]) + z offset 10m | reReplaceAll `([\\d.]+)s$` "$1"'
    assert scale_promql(text, 30) == (
        'rate(x[10s]) + max_over_time(y[2m:1s]) + z offset 20s | reReplaceAll `([\\d.]+)s$` "$1"')
    assert scale_promql("a[30m:]", 30) == "a[1m:]"


def test_scaled_rules_keep_every_rule_and_scale_every_time_constant():
    production = {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in RULES_DIR.glob("*.yml")}
    scaled = scaled_rules(20)
    assert scaled.keys() == production.keys()
    for name, doc in production.items():
        for group, sgroup in zip(doc["groups"], scaled[name]["groups"], strict=True):
            for rule, srule in zip(group["rules"], sgroup["rules"], strict=True):
                assert rule.get("alert") == srule.get("alert") and rule.get("record") == srule.get("record")
                assert rule.get("labels") == srule.get("labels")
                if "for" in rule:
                    assert duration_ms(srule["for"]) * 20 == duration_ms(rule["for"])
                assert srule["expr"] == scale_promql(rule["expr"], 20)
    slo = {r.get("record"): r["expr"] for r in scaled["slo.yml"]["groups"][0]["rules"]}
    assert "[15s]" in slo["algopack:bucket_on_time:ratio_rate5m"]       # 5m / 20
    assert "[1d12h]" in slo["algopack:bucket_on_time:ratio_rate30d"]      # 30d / 20


def test_alertmanager_timings_are_the_production_defaults_divided():
    assert scaled_timings(30) == {"ALERTMANAGER_GROUP_WAIT": "1s", "ALERTMANAGER_GROUP_INTERVAL": "2s",
                                  "ALERTMANAGER_REPEAT_INTERVAL": "8m"}


# ---- messages of the real Alertmanager ----------------------------------------------------

ONE = ("🔴 <b>Пропущены интервалы</b> · EQ | Акции · tradestats\n"
       "Нет данных за 11:15, 11:20 (подряд пропущено интервалов: 2, за день: 2) по SBER.\n"
       "С 11:15 МСК\n<a href=\"x\">Grafana</a> · <a href=\"y\">ISS</a>")
GROUPED = ("🔴 <b>Задержка данных</b> · FX | Валюта — 2\n\n"
           "• <b>tradestats</b>: Данные не обновлялись 11 мин (порог 10 мин), последний интервал 09:30 по CNYRUB_TOM.\n"
           "С 09:31 МСК\n<a href=\"x\">Grafana</a>\n\n"
           "• <b>obstats</b>: Данные не обновлялись 12 мин (порог 10 мин), за сессию данных ещё не было.\n"
           "С 09:00 МСК\n\n"
           "✅ <b>Решено</b> · Задержка данных · FX | Валюта · orderstats — данные снова приходят (длилось 3 мин)")


def test_parse_one_alert_grouped_alerts_and_a_resolve():
    [one] = parse_message(ONE)
    assert (one.alertname, one.market, one.endpoint, one.since, one.holes) == (
        "AlgopackMissingIntervals", "eq", "tradestats", "11:15", ["11:15", "11:20"])
    first, second, resolved = parse_message(GROUPED)
    assert (first.alertname, first.market, first.endpoint, first.last_interval) == (
        "AlgopackDataDelayed", "fx", "tradestats", "09:30")
    assert (second.endpoint, second.last_interval) == ("obstats", None)
    assert (resolved.resolved, resolved.endpoint, resolved.market) == (True, "orderstats", "fx")


def test_an_alert_is_news_once_and_a_lag_alert_names_the_due_buckets_after_its_last_interval():
    grids = {("fx", "tradestats"): [ts(9, 25), ts(9, 30), ts(9, 35), ts(9, 40)], ("fx", "obstats"): [ts(9, 5)]}
    messages, _ = to_messages([(ts(9, 17), ONE), (ts(9, 18), ONE), (ts(9, 41), GROUPED)], grids)
    assert [m.named for m in messages[:2]] == [{("eq", "tradestats"): frozenset({ts(11, 15), ts(11, 20)})}, {}]
    lag = messages[2]
    assert lag.evidence[("fx", "tradestats")] == frozenset({ts(9, 35), ts(9, 40)})
    assert lag.evidence[("fx", "obstats")] == frozenset({ts(9, 5)})
