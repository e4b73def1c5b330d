"""Our exporter in virtual time: the real poller, ISS client (HTTP) and collector against the
sandbox on a ManualClock, with the alert rules' expressions evaluated every 15 s on the
collector's output, their `for:` and the Alertmanager dispatch model on top (bench.alerting).
The scheduler's only job, "call poll when planned_next says", is done by the loop here (as in
tests/integration/exporter_sim.py).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import yaml

from exporter.app import ExporterApp
from exporter.clock import MSK, ManualClock
from exporter.config import load_config

from . import scenario
from .alerting import AlertKey, AlertmanagerModel, Pair, RuleHolds

HOLES_EXCLUDED = ("hi2", "futoi")
MISSING = "AlgopackMissingIntervals"
DELAYED = "AlgopackDataDelayed"

Samples = dict[str, dict[tuple, float]]


def missing_interval_alerts(s: Samples, listed: int = scenario.LISTED_HOLES) -> dict[AlertKey, frozenset[float]]:
    """Where AlgopackMissingIntervals holds in one exposition, term by term:

        algopack_missing_run_intervals{endpoint!~"hi2|futoi"} > 0
          and on(market) algopack_session_checking == 1
          unless on(market, endpoint) algopack_up == 0

    One alert per series, i.e. per (market, endpoint, since). Its buckets are the run's holes
    that the description lists: the holes from the one labelled `since` onward (sorted, at
    most `listed`), of which the run is the first `value` (the run's holes are consecutive
    among the pair's holes). A missing `since` series makes the template's scalar() NaN and
    the list empty, as in Prometheus.
    """
    checking = {dict(k)["market"]: v for k, v in s.get("algopack_session_checking", {}).items()}
    up = {(dict(k)["market"], dict(k)["endpoint"]): v for k, v in s.get("algopack_up", {}).items()}
    holes: dict[Pair, dict[str, float]] = {}
    for labels, value in s.get("algopack_missing_interval_timestamp_seconds", {}).items():
        d = dict(labels)
        holes.setdefault((d["market"], d["endpoint"]), {})[d["interval"]] = value
    out: dict[AlertKey, frozenset[float]] = {}
    for labels, value in s.get("algopack_missing_run_intervals", {}).items():
        d = dict(labels)
        pair = (d["market"], d["endpoint"])
        # `unless ... algopack_up == 0`: only a sample equal to 0 removes it (NaN is not 0).
        if pair[1] in HOLES_EXCLUDED or not value > 0 or checking.get(pair[0]) != 1 or up.get(pair) == 0:
            continue
        pair_holes = holes.get(pair, {})
        start = pair_holes.get(d["since"])
        text = [] if start is None else sorted(h for h in pair_holes.values() if h >= start)[:listed]
        out[(MISSING, pair, d["since"])] = frozenset(text[:int(value)])
    return out


def write_config(workdir: Path, iss_url: str, markets: dict | None = None) -> Path:
    data = {
        "iss": {"base_url": iss_url, "auth": "none", "timeout_seconds": 30, "retries": 0},
        "calendar": {"file": str(scenario.CALENDAR)},
        "poll": {"interval_seconds": scenario.POLL_INTERVAL, "publish_offset_seconds": scenario.PUBLISH_OFFSET,
                 "publish_grace_seconds": scenario.PUBLISH_GRACE,
                 "missing_window_seconds": scenario.MISSING_WINDOW},
        "delay_threshold_seconds": scenario.DELAY_THRESHOLD,
    }
    if markets is not None:
        data["markets"] = markets
    path = workdir / "bench-config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


class OurRun:
    def __init__(self, workdir: Path, start: datetime = scenario.DAY_START, scale: float = 1.0,
                 with_faults: bool = True, markets: dict | None = None):
        self.clock = ManualClock(start)
        self.iss = scenario.make_sandbox(self.clock, scale=scale, with_faults=with_faults)
        self.config = load_config(str(write_config(workdir, self.iss.url, markets)), environ={})
        self.app = ExporterApp(self.config, self.clock)
        self.app.poller.plan_startup(self.clock.now())
        self.holds = RuleHolds(scenario.RULE_HOLDS)
        self.am = AlertmanagerModel(scenario.GROUP_WAIT, scenario.GROUP_INTERVAL, scenario.REPEAT_INTERVAL)
        self.evaluations = 0
        self.poll_seconds = 0.0
        self.polls = 0

    def close(self) -> None:
        self.iss.stop()
        self.app.client.close()

    # ---- polling ----------------------------------------------------------------------

    def poll_due(self) -> None:
        now = self.clock.now()
        for pair in self.app.store.snapshot.pairs:
            if self.app.poller.is_due(pair, now):
                started = time.perf_counter()
                self.app.poller.poll(pair)
                self.poll_seconds += time.perf_counter() - started
                self.polls += 1

    def next_poll_ts(self) -> float:
        upcoming = [s.next_poll_ts for s in self.app.store.snapshot.pairs.values() if s.next_poll_ts]
        return min(upcoming) if upcoming else float("inf")

    # ---- rules ------------------------------------------------------------------------

    def samples(self) -> Samples:
        out: Samples = {}
        for family in self.app.collector.collect():
            for sample in family.samples:
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return out

    def expressions(self) -> dict[AlertKey, frozenset[float]]:
        """Where the expressions of AlgopackMissingIntervals and AlgopackDataDelayed hold now.

        Mirrors prometheus/rules/algopack.yml term by term on the real collector's output; the
        evidence is what the message names: the run's holes (missing_interval_alerts), or for
        the lag alert every due bucket after the newest row.
        """
        s = self.samples()
        now = self.clock.now()
        calendar = self.app.calendars.current

        def by_pair(name: str) -> dict[Pair, float]:
            return {(dict(k)["market"], dict(k)["endpoint"]): v for k, v in s.get(name, {}).items()}

        open_ = {dict(k)["market"]: v for k, v in s["algopack_session_open"].items()}
        elapsed = {dict(k)["market"]: v for k, v in s["algopack_session_elapsed_seconds"].items()}
        threshold = next(iter(s["algopack_delay_threshold_seconds"].values()))
        up = by_pair("algopack_up")          # `unless on(market, endpoint) algopack_up == 0` (NaN is not 0)
        last_tradetime = by_pair("algopack_last_tradetime_timestamp_seconds")
        out = missing_interval_alerts(s)
        for pair, value in by_pair("algopack_lag_seconds").items():
            if (pair[1] != "hi2" and value > threshold and open_.get(pair[0]) == 1
                    and elapsed.get(pair[0], 0) > 600 and up.get(pair) != 0):
                newest = last_tradetime.get(pair)
                due = [b.timestamp() for b in calendar.expected_buckets(pair[0], now.date())
                       if b < now and (newest is None or newest != newest or b.timestamp() > newest)]
                out[(DELAYED, pair, "")] = frozenset(due)
        self.evaluations += 1
        return out

    def firing(self) -> dict[AlertKey, frozenset[float]]:
        """One rule evaluation: the expressions, then their `for:` (pending -> firing)."""
        return self.holds.step(self.clock.timestamp(), self.expressions())

    # ---- the day ----------------------------------------------------------------------

    def run(self, end: datetime, events: list | None = None, evaluate: bool = True) -> None:
        pending = list(events or [])
        next_eval = self.clock.timestamp()
        end_ts = end.timestamp()
        self.poll_due()
        while True:
            candidates = [self.next_poll_ts()]
            if evaluate:
                candidates.append(next_eval)
            if pending:
                candidates.append(pending[0].moment.timestamp())
            nxt = max(min(candidates), self.clock.timestamp())
            if nxt > end_ts:
                self.clock.set(end)
                break
            self.clock.set(datetime.fromtimestamp(nxt, MSK))
            while pending and pending[0].moment.timestamp() <= nxt:
                pending.pop(0).apply(self.iss)
            self.poll_due()
            if evaluate and nxt >= next_eval:
                self.am.evaluate(nxt, self.firing())
                next_eval += scenario.SCRAPE_INTERVAL
        if evaluate:
            self.am.evaluate(end_ts, self.firing())
            self.am.tick(end_ts + 2 * scenario.GROUP_INTERVAL)
