"""Detection on the real pipeline: sandbox ISS + exporter on a fast virtual clock, the real
Prometheus 2.42 evaluating the production rules and the real Alertmanager 0.25 delivering to
the fake Telegram, all time-scaled (deploy/stack.py `time_scaled`: every production time
constant of Prometheus, the rules and Alertmanager divided by the clock speed).

A whole trading day at a speed the 2 cores keep up with does not fit the benchmark's budget,
so representative windows of the scenario's day run, each on a fresh stack: the exporter
starts at the window's start, catches up with the day so far, then the window's faults
happen at their virtual moments. Incidents are scored when they are due from `WARMUP` after
the window's start until the end leaves time for the message (grace + 60 s + margin).

Messages are read back from the fake Bot API's log and parsed (alertmanager/templates/
telegram.tmpl): title, market, and per alert its endpoint, the listed holes or the last
interval, `since`; resolves per (alert, market, endpoint).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from deploy.stack import ALERT_BOT_ID, GROUP_CHAT_ID, LocalStack
from exporter.clock import MSK

from . import scenario
from .scoring import Incident, Message, Pair

SPEED = 40.0
WARMUP = timedelta(minutes=12)
# (name, start, end) of the scenario's day; together they hold the three feed stops' starts,
# a never-published probe bucket, the FO and the EQ evening close.
WINDOWS = [
    ("opening: FO 09:00, fx/tradestats stop 09:31-09:47", scenario.at(8, 50), scenario.at(9, 58)),
    ("mid-day: eq/tradestats 11:15 never, eq/orderstats stop 12:02-12:40", scenario.at(11, 2), scenario.at(12, 50)),
    ("close: EQ and FO 23:50", scenario.at(23, 22), scenario.at(23, 58)),
]
TITLES = {"Пропущены интервалы": "AlgopackMissingIntervals", "Задержка данных": "AlgopackDataDelayed"}
MARKETS = {"EQ | Акции": "eq", "FX | Валюта": "fx", "FO | Фьючерсы": "fo"}


@dataclass
class Entry:
    """One alert listed in a message."""

    alertname: str
    market: str
    endpoint: str
    resolved: bool
    since: str = ""
    holes: list[str] = field(default_factory=list)      # HH:MM bucket ends (hole alerts)
    last_interval: str | None = None                    # HH:MM (lag alerts); None = no data yet


def _alertname(title: str) -> str:
    return TITLES.get(title, title)


def _body(alertname: str, market: str, endpoint: str, body: str) -> Entry:
    entry = Entry(alertname, market, endpoint, False)
    since = re.search(r"^С (\d\d:\d\d) МСК$", body, re.M)
    entry.since = since.group(1) if since else ""
    holes = re.search(r"Нет данных за ([0-9:, …]+?) \(", body)
    if holes:
        entry.holes = re.findall(r"\d\d:\d\d", holes.group(1))
    last = re.search(r"последний интервал (\d\d:\d\d)", body)
    entry.last_interval = last.group(1) if last else None
    return entry


def parse_message(text: str) -> list[Entry]:
    """The alerts one Telegram message lists (firing and resolved), from the template's layout."""
    out: list[Entry] = []
    firing, _, resolved = text.partition("✅ <b>Решено</b> · ")
    head = re.match(r"🔴 <b>(.+?)</b>(?: · ([^·\n—]+?))?(?: · ([^\n]+)| — (\d+))?\n", firing)
    if head:
        alertname, market = _alertname(head.group(1)), MARKETS.get((head.group(2) or "").strip(), "")
        if head.group(4) is None:                    # one alert: its endpoint is in the head line
            out.append(_body(alertname, market, (head.group(3) or "").strip(), firing[head.end():]))
        else:
            for part in firing[head.end():].split("\n• ")[1:]:
                m = re.match(r"<b>([^<]+)</b>: ", part)
                if m:
                    out.append(_body(alertname, market, m.group(1), part[m.end():]))
    if resolved:
        first, *rest = resolved.split("\n")
        m = re.match(r"(.+?) · ([^·—]+?)(?: · ([^ ]+))? — (?:(\d+)$)?", first)
        if m:
            alertname, market = _alertname(m.group(1)), MARKETS.get(m.group(2).strip(), "")
            if m.group(4) is None:
                out.append(Entry(alertname, market, m.group(3) or "", True))
            else:
                for line in rest:
                    e = re.match(r"• <b>([^<]+)</b>", line)
                    if e:
                        out.append(Entry(alertname, market, e.group(1), True))
    return out


def _hhmm_ts(hhmm: str) -> float:
    hours, minutes = map(int, hhmm.split(":"))
    return scenario.at(hours, minutes).timestamp()


def to_messages(records: list[tuple[float, str]], grids: dict[Pair, list[float]]) -> tuple[list[Message], dict]:
    """Scoring messages (hole and lag alerts) from (virtual ts, text) records, and the other
    alerts' firing counts by title.

    Evidence per pair: a hole alert's listed holes; a lag alert's due buckets after the last
    interval it names. An alert is news in the first message that lists it since it was last
    resolved (identity: alertname, pair, since for hole alerts; a resolve closes the pair's
    oldest open alert of that name, the message does not say which `since`)."""
    messages: list[Message] = []
    others: dict[str, int] = {}
    open_: dict[tuple, list[tuple]] = {}
    for ts, text in sorted(records):
        entries = parse_message(text)
        firing = [e for e in entries if not e.resolved and e.alertname in TITLES.values()]
        resolved = [e for e in entries if e.resolved and e.alertname in TITLES.values()]
        for e in entries:
            if not e.resolved and e.alertname not in TITLES.values():
                others[e.alertname] = others.get(e.alertname, 0) + 1
                break
        by_name: dict[str, list[Entry]] = {}
        for e in firing:
            by_name.setdefault(e.alertname, []).append(e)
        for name, group in by_name.items():
            alerts, named = {}, {}
            for e in group:
                pair = (e.market, e.endpoint)
                if name == "AlgopackMissingIntervals":
                    evidence = frozenset(_hhmm_ts(h) for h in e.holes)
                else:
                    after = -1.0 if e.last_interval is None else _hhmm_ts(e.last_interval)
                    evidence = frozenset(b for b in grids.get(pair, []) if after < b <= ts)
                key = (name, pair, e.since if name == "AlgopackMissingIntervals" else "")
                alerts[key] = evidence
                slot = open_.setdefault((name, pair), [])
                if key not in slot:
                    slot.append(key)
                    named[pair] = named.get(pair, frozenset()) | evidence
            evidence_by_pair: dict[Pair, frozenset[float]] = {}
            for (_, pair, _), buckets in alerts.items():
                evidence_by_pair[pair] = evidence_by_pair.get(pair, frozenset()) | buckets
            messages.append(Message(ts, False, name, evidence_by_pair, alerts, named))
        closed = {}
        for e in resolved:
            slot = open_.get((e.alertname, (e.market, e.endpoint)), [])
            if slot:
                key = slot.pop(0)
                closed[key] = frozenset()
        if closed:
            messages.append(Message(ts, True, next(iter(closed))[0], {k[1]: frozenset() for k in closed}, closed, {}))
    return messages, others


def run_window(workdir: Path, name: str, start: datetime, end: datetime, speed: float = SPEED) -> dict:
    """One window on a fresh time-scaled stack; returns its Telegram records in virtual time."""
    calendar = yaml.safe_load(scenario.CALENDAR.read_text(encoding="utf-8"))
    stack = LocalStack(workdir, clock_speed=speed, virtual_start=start, calendar=calendar, time_scaled=True,
                       components=("telegram", "iss", "exporter", "alertmanager", "prometheus"),
                       startup_timeout=120)
    events = [e for e in scenario.events() if start < e.moment < end]
    t0 = time.monotonic()
    with stack:
        stack.iss_fault(delay_profile=scenario.DELAY_PROFILE, drop_intervals=[
            {"market": m, "dataset": d, "intervals": i, "scope": "probe"} for m, d, i in scenario.DROPPED])
        ready_v = stack.virtual_now()
        scenario.run_stack_until(stack, end, events, slack=120.0, what=f"window {name!r}")
        records = [(stack.clock.to_virtual(datetime.fromtimestamp(float(m["ts"]), MSK)).timestamp(), m["text"] or "")
                   for m in stack.telegram_messages(chat_id=GROUP_CHAT_ID) if m["bot_id"] == ALERT_BOT_ID]
        health = _pipeline_health(stack)
        timings = {"scrape/evaluation": stack.scrape_interval, **{
            k.removeprefix("ALERTMANAGER_").lower(): v for k, v in stack.env.items() if k.startswith("ALERTMANAGER_")}}
    return {"name": name, "start": start, "end": end, "ready": ready_v, "records": records, "health": health,
            "real_seconds": time.monotonic() - t0, "timings": timings,
            "score_from": start + WARMUP,
            "score_to": end - timedelta(seconds=scenario.PUBLISH_GRACE + 90)}


def _pipeline_health(stack: LocalStack) -> dict:
    """Failed scrapes and missed rule evaluations: a fast clock must not have starved them."""
    out = {}
    for key, expr in (("scrapes", 'count_over_time(up{job="algopack"}[1h])'),
                      ("failed_scrapes", 'count_over_time(up{job="algopack"}[1h]) - sum_over_time(up{job="algopack"}[1h])'),
                      ("scrape_p99_ms", 'quantile_over_time(0.99, scrape_duration_seconds{job="algopack"}[1h]) * 1000')):
        try:
            result = stack.prom_query(expr)
            out[key] = float(result[0]["value"][1]) if result else 0.0
        except Exception:  # a figure of the report, not a reason to lose the window
            out[key] = float("nan")
    try:
        text = stack._http.get(stack.urls["prometheus"] + "/metrics", timeout=10).text
        out["missed_evaluations"] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                        if line.startswith("prometheus_rule_group_iterations_missed_total"))
    except Exception:
        out["missed_evaluations"] = float("nan")
    return out


def in_scope(incident: Incident, window: dict) -> bool:
    return window["score_from"].timestamp() <= incident.due <= window["score_to"].timestamp()
