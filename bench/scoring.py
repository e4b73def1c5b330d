"""Scoring of the detection benchmark: ground truth, incidents, messages, latency, false alarms.

No I/O and no clock: everything takes Unix times (virtual seconds). Nothing here models
Prometheus or Alertmanager: our messages are the real Alertmanager's (bench.detection reads
them from the fake Telegram), the old tool's come from its own simulation (bench.oldstrategy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Pair = tuple[str, str]
# One alert identity: (alertname, (market, endpoint), since). `since` is the hole alert's
# label (the run's first bucket, HH:MM); "" for alerts without it (AlgopackDataDelayed).
AlertKey = tuple[str, Pair, str]


@dataclass(frozen=True)
class Incident:
    """A stop (a run of consecutive incident buckets) or a single hole of one pair."""

    pair: Pair
    buckets: tuple[float, ...]  # bucket ends, consecutive on the calendar grid

    @property
    def due(self) -> float:
        return self.buckets[0]

    @property
    def kind(self) -> str:
        return "stop" if len(self.buckets) > 1 else "hole"


def incident_buckets(truth: Mapping[float, float | None], grace: float) -> set[float]:
    """Buckets that are an incident: never published, or published more than `grace` after their end.

    `truth` maps bucket end -> publish moment of the probe's row (None = never).
    """
    return {end for end, published in truth.items() if published is None or published - end > grace}


def group_incidents(pair: Pair, grid: Iterable[float], bad: set[float]) -> list[Incident]:
    """Consecutive incident buckets on the pair's bucket grid form one incident."""
    out: list[Incident] = []
    run: list[float] = []
    for end in sorted(grid):
        if end in bad:
            run.append(end)
        elif run:
            out.append(Incident(pair, tuple(run)))
            run = []
    if run:
        out.append(Incident(pair, tuple(run)))
    return out


@dataclass
class Message:
    """One Telegram message: when, whether it is a resolve, and what it says per pair.

    `evidence[pair]` = the bucket ends the message reports for that pair over all the alerts
    it lists (missing buckets of each run, or for a lag alert every due bucket after the newest
    row seen). `alerts` = the alerts the message lists, each with its buckets; `named[pair]` =
    the buckets of the alerts sent for the first time in this message: what is news in it.
    Without `alerts` (the old tool: one message, one alert) everything in it is news.
    """

    ts: float
    resolved: bool
    alertname: str
    evidence: dict[Pair, frozenset[float]] = field(default_factory=dict)
    alerts: dict[AlertKey, frozenset[float]] = field(default_factory=dict)
    named: dict[Pair, frozenset[float]] | None = None

    def news(self) -> dict[Pair, frozenset[float]]:
        return self.evidence if self.named is None else self.named


def by_pair(alerts: Mapping[AlertKey, frozenset[float]]) -> dict[Pair, frozenset[float]]:
    """Union of the alerts' buckets per pair."""
    out: dict[Pair, frozenset[float]] = {}
    for (_, pair, _), buckets in alerts.items():
        out[pair] = out.get(pair, frozenset()) | buckets
    return out


@dataclass
class DetectionSummary:
    incidents: int
    detected: int
    latencies: list[float]                 # seconds from due to the first message, detected incidents
    undetected: list[Incident]
    firing_messages: int
    false_alarm_messages: int
    alerts_fired: int                      # alert episodes (one per label set) that were notified
    missing_resolves: int                  # notified alert episodes without a resolve message


def first_detection(incident: Incident, messages: Iterable[Message]) -> float | None:
    """Moment of the first firing message that names one of the incident's buckets for its pair:
    an alert whose buckets include it is sent for the first time in that message."""
    wanted = set(incident.buckets)
    for message in sorted(messages, key=lambda m: m.ts):
        if message.resolved or message.ts < incident.due:
            continue
        if wanted & set(message.news().get(incident.pair, ())):
            return message.ts
    return None


def is_false_alarm(message: Message, bad: Mapping[Pair, set[float]]) -> bool:
    """A firing message none of whose reported buckets is an incident bucket."""
    if message.resolved:
        return False
    for pair, buckets in message.evidence.items():
        if set(buckets) & bad.get(pair, set()):
            return False
    return True


def summarize(incidents: list[Incident], messages: list[Message], bad: Mapping[Pair, set[float]],
              episodes: tuple[int, int]) -> DetectionSummary:
    latencies, undetected = [], []
    for incident in incidents:
        moment = first_detection(incident, messages)
        if moment is None:
            undetected.append(incident)
        else:
            latencies.append(moment - incident.due)
    firing = [m for m in messages if not m.resolved]
    false_alarms = sum(1 for m in firing if is_false_alarm(m, bad))
    return DetectionSummary(len(incidents), len(latencies), latencies, undetected, len(firing), false_alarms,
                            episodes[0], episodes[1])


def count_episodes(messages: list[Message]) -> tuple[int, int]:
    """(alert episodes notified as firing, of those never notified as resolved), per alert label set."""
    open_: dict[AlertKey, bool] = {}
    fired = 0
    for message in sorted(messages, key=lambda m: (m.ts, m.resolved)):
        keys = message.alerts or {(message.alertname, pair, "") for pair in message.evidence}
        for key in keys:
            if not message.resolved and not open_.get(key):
                open_[key] = True
                fired += 1
            elif message.resolved and open_.get(key):
                open_[key] = False
    return fired, sum(1 for v in open_.values() if v)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
