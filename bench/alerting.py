"""Pure models used by the detection benchmark: ground truth, incidents, Alertmanager grouping.

No I/O and no clock: everything takes Unix times (virtual seconds), so the unit tests feed
plain numbers. The Prometheus/Alertmanager part here models only the production timings
(scrape/eval every 15 s, `for:` pending -> firing, group_wait 30 s, group_interval 1 m,
repeat 4 h); the real binaries are measured once by `bench.realstack`.
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
class _Alert:
    key: AlertKey
    active_since: float
    evidence: frozenset[float]
    resolved_at: float | None = None
    notified_firing: bool = False


@dataclass
class _Group:
    created: float
    alerts: dict[AlertKey, _Alert] = field(default_factory=dict)
    next_flush: float = 0.0
    last_flush: float | None = None
    last_sent: frozenset = frozenset()


class RuleHolds:
    """Prometheus' `for:` state machine, one evaluation at a time.

    An alert whose expression holds becomes pending with ActiveAt = that evaluation's time;
    it fires at the first evaluation with `now - ActiveAt >= for` (Prometheus 2.42:
    `ts.Sub(a.ActiveAt) >= r.holdDuration`), so `for: 1m` at a 15 s interval needs five
    consecutive true evaluations. One false evaluation drops a pending alert. Alerts
    without a `for:` (not in `holds`) fire at the first true evaluation. Each label set
    (AlertKey) is its own alert.
    """

    def __init__(self, holds: Mapping[str, float]):
        self.holds = dict(holds)
        self.active_since: dict[AlertKey, float] = {}

    def step(self, now: float, true_now: Mapping[AlertKey, frozenset[float]]
             ) -> dict[AlertKey, frozenset[float]]:
        """`true_now`: alert -> evidence where the expression holds; returns the firing ones."""
        for key in list(self.active_since):
            if key not in true_now:
                del self.active_since[key]
        firing = {}
        for key, evidence in true_now.items():
            since = self.active_since.setdefault(key, now)
            if now - since >= self.holds.get(key[0], 0.0):
                firing[key] = evidence
        return firing


class AlertmanagerModel:
    """Alertmanager 0.25 dispatch timing for `group_by: [alertname, market]`.

    - A new group flushes `group_wait` after its first alert arrives.
    - Afterwards it is checked every `group_interval`; it sends when the set of firing
      alerts changed or an alert resolved (or `repeat_interval` passed), one message per group.
      An alert is one label set (AlertKey): a new `since` of the same pair is a new alert,
      so a change of the set, sent at the next tick.
    - A resolved alert is sent once (send_resolved: true) and then forgotten.
    """

    def __init__(self, group_wait: float = 30.0, group_interval: float = 60.0, repeat_interval: float = 4 * 3600.0):
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.groups: dict[tuple[str, str], _Group] = {}
        self.messages: list[Message] = []

    def evaluate(self, now: float, firing: Mapping[AlertKey, frozenset[float]]) -> None:
        """One rule evaluation: `firing` maps alert -> evidence of the alerts firing now."""
        self.tick(now)
        for key, evidence in firing.items():
            alertname, pair, _ = key
            gkey = (alertname, pair[0])
            group = self.groups.get(gkey)
            if group is None:
                group = self.groups[gkey] = _Group(created=now, next_flush=now + self.group_wait)
            alert = group.alerts.get(key)
            if alert is None or alert.resolved_at is not None:
                group.alerts[key] = _Alert(key, now, evidence)
            else:
                alert.evidence = evidence
        for group in self.groups.values():
            for key, alert in group.alerts.items():
                if alert.resolved_at is None and key not in firing:
                    alert.resolved_at = now

    def tick(self, now: float) -> None:
        """Run every flush that is due at or before `now`."""
        for gkey in list(self.groups):
            group = self.groups[gkey]
            while group.next_flush <= now:
                self._flush(gkey, group, group.next_flush)
                if gkey not in self.groups:
                    break

    def _flush(self, gkey: tuple[str, str], group: _Group, at: float) -> None:
        firing = {k: a for k, a in group.alerts.items() if a.resolved_at is None}
        resolved = {k: a for k, a in group.alerts.items() if a.resolved_at is not None}
        current = frozenset(firing)
        changed = current != group.last_sent or bool(resolved)
        repeat = group.last_flush is not None and at - group.last_flush >= self.repeat_interval
        if (changed or repeat) and (firing or any(a.notified_firing for a in resolved.values())):
            if firing:
                listed = {k: a.evidence for k, a in firing.items()}
                new = {k: a.evidence for k, a in firing.items() if not a.notified_firing}
                self.messages.append(Message(at, False, gkey[0], by_pair(listed), listed, by_pair(new)))
                for alert in firing.values():
                    alert.notified_firing = True
            notified_resolves = {k: a.evidence for k, a in resolved.items() if a.notified_firing}
            if notified_resolves:
                # Alertmanager puts resolved alerts into the same group message as the firing
                # ones; counted here as a separate resolve message.
                self.messages.append(Message(at, True, gkey[0], by_pair(notified_resolves), notified_resolves, {}))
            group.last_flush = at
        for key in resolved:
            del group.alerts[key]
        group.last_sent = current
        if not group.alerts:
            del self.groups[gkey]
            return
        group.next_flush = at + self.group_interval


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
