"""Snapshot → Prometheus metric families. The scrape never calls ISS.

Sample of the exposition (one market, one endpoint shown):

    algopack_session_open{market="eq"} 1.0
    algopack_session_start_timestamp_seconds{market="eq"} 1.7640540e+09
    algopack_session_elapsed_seconds{market="eq"} 9000.0
    algopack_last_tradetime_timestamp_seconds{endpoint="tradestats",market="eq"} 1.7640630e+09
    algopack_last_systime_timestamp_seconds{endpoint="tradestats",market="eq"} 1.764063011e+09
    algopack_lag_seconds{endpoint="tradestats",market="eq"} 49.0
    algopack_publish_delay_seconds{endpoint="tradestats",market="eq"} 11.0
    algopack_missing_intervals{endpoint="tradestats",market="eq"} 0.0
    algopack_up{endpoint="tradestats",market="eq"} 1.0
    algopack_polls_total{endpoint="tradestats",market="eq"} 31.0
    algopack_poll_errors_total{endpoint="tradestats",market="eq",reason="http"} 0.0

Values that depend on "now" (session state, lag, missing intervals, hi2 expected) are
computed here from the snapshot and the shared clock, so they are exact at scrape time.
Unknown values are NaN (comparisons with NaN are false, so no alert fires on ignorance).
The `algopack_calendar_sync_*` series have their own collector (exporter/calendar/syncjob.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import __version__, checks, datasets, derived, slo
from .calendar import Calendar, CalendarStore
from .clock import Clock
from .config import PollConfig, SloConfig
from .iss import IssStats
from .state import ERROR_REASONS, REJECT_REASONS, PairState, StateStore

NAN = math.nan


def _value(value: float | None) -> float:
    return NAN if value is None else float(value)


class AlgopackCollector(Collector):
    def __init__(self, store: StateStore, calendars: CalendarStore, clock: Clock, stats: IssStats,
                 delay_threshold_seconds: float, poll: PollConfig, markets: Iterable[str],
                 slo_config: SloConfig | None = None):
        self.store = store
        self.calendars = calendars
        self.clock = clock
        self.stats = stats
        self.delay_threshold_seconds = float(delay_threshold_seconds)
        self.publish_grace_seconds = float(poll.publish_grace_seconds)
        self.missing_window_seconds = float(poll.missing_window_seconds)
        self.holes = derived.HolesCache(self.publish_grace_seconds, self.missing_window_seconds)
        self.markets = tuple(markets)
        self.slo_config = slo_config or SloConfig()

    def describe(self):
        return []  # families are dynamic; skip the registration-time collect()

    def collect(self):
        snapshot = self.store.snapshot
        calendar = self.calendars.current
        now = self.clock.now()
        now_ts = now.timestamp()
        yield from self._market_families(calendar, now, snapshot.pairs)
        yield self._dataset_info(snapshot.pairs)
        yield from self._pair_families(calendar, now, now_ts, snapshot.pairs.values())
        yield from self._health_families(snapshot.pairs.values())
        yield from self._slo_families(snapshot.pairs.values())

    # ---- per market ------------------------------------------------------------------

    def _market_families(self, calendar: Calendar, now: datetime, pairs):
        session_open = GaugeMetricFamily("algopack_session_open", "1 while the calendar says the market trades now",
                                         labels=["market"])
        session_start = GaugeMetricFamily("algopack_session_start_timestamp_seconds",
                                          "Start of the current (or last) session", labels=["market"])
        checking = GaugeMetricFamily("algopack_session_checking",
                                     "1 from a session's start until its last bucket's grace and the hole window "
                                     "have passed (holes of the closing buckets are still judged)",
                                     labels=["market"])
        elapsed = GaugeMetricFamily("algopack_session_elapsed_seconds",
                                    "Seconds since the current session started (exporter clock), 0 outside",
                                    labels=["market"])
        today = now.date()
        for market in self.markets:
            current = calendar.current_session(market, now)
            start = current.start if current else calendar.session_start(market, now)
            session_open.add_metric([market], 1.0 if current else 0.0)
            checking.add_metric([market], 1.0 if current or self._checking_after_close(calendar, market, now) else 0.0)
            session_start.add_metric([market], start.timestamp() if start else NAN)
            elapsed.add_metric([market], (now - current.start).total_seconds() if current else 0.0)
        yield from (session_open, checking, session_start, elapsed)
        endpoints = {endpoint for _, endpoint in pairs}
        for spec in datasets.with_check("presence", [n for n in datasets.names() if n in endpoints]):
            yield from self._presence_families(spec, calendar, now, today, pairs)
        for spec in datasets.with_check("secids", [n for n in datasets.names() if n in endpoints]):
            yield from self._secid_families(spec, pairs)
        threshold = GaugeMetricFamily("algopack_delay_threshold_seconds", "The configured delay threshold (DELAY)")
        threshold.add_metric([], self.delay_threshold_seconds)
        yield threshold

    def _presence_families(self, spec: datasets.Dataset, calendar: Calendar, now: datetime, today, pairs):
        """A daily dataset: published today (present) and due by now (expected), per market."""
        name = spec.name
        present = GaugeMetricFamily(f"algopack_{name}_present", f"1 when {name} rows for today exist",
                                    labels=["market"])
        expected = GaugeMetricFamily(f"algopack_{name}_expected",
                                     f"1 on a working day once {name}_deadline has passed", labels=["market"])
        for market in self.markets:
            state = pairs.get((market, name))
            if state is None:
                continue
            deadline = spec.deadline(calendar, market, today)
            expected.add_metric([market], 1.0 if deadline is not None and now >= deadline else 0.0)
            present.add_metric([market], 1.0 if state.published and state.day == today else 0.0)
        yield from (present, expected)

    def _secid_families(self, spec: datasets.Dataset, pairs):
        """Distinct instruments of the newest interval vs the previous trading day, per market."""
        name = spec.name
        secids = GaugeMetricFamily(f"algopack_{name}_secids", f"Distinct secids in the newest complete {name} interval",
                                   labels=["market"])
        secids_prev = GaugeMetricFamily(f"algopack_{name}_secids_prev_day_max",
                                        f"Max distinct secids per {name} interval over the previous trading day",
                                        labels=["market"])
        secids_same = GaugeMetricFamily(f"algopack_{name}_secids_prev_day_same_interval",
                                        f"Distinct {name} secids of the previous trading day in the same interval "
                                        f"(tradetime) as algopack_{name}_secids; NaN when that day had no such "
                                        "interval", labels=["market"])
        for market in self.markets:
            state = pairs.get((market, name))
            if state is not None:
                secids.add_metric([market], _value(state.secids))
                secids_prev.add_metric([market], _value(state.prev_day_max))
                secids_same.add_metric([market], _value(state.prev_day_same_interval))
        yield from (secids, secids_prev, secids_same)

    @staticmethod
    def _dataset_info(pairs) -> GaugeMetricFamily:
        """algopack_dataset_info{endpoint,kind} 1 per polled dataset: the rules join on the kind."""
        info = GaugeMetricFamily("algopack_dataset_info", "Always 1: the kind of each polled dataset "
                                 "(intraday: holes and lag; lag_only; daily: presence by a deadline)",
                                 labels=["endpoint", "kind"])
        endpoints = {endpoint for _, endpoint in pairs}
        for name in datasets.names():
            if name in endpoints:
                info.add_metric([name, datasets.get(name).kind], 1.0)
        return info

    def _checking_after_close(self, calendar: Calendar, market: str, now: datetime) -> bool:
        after = self.publish_grace_seconds + self.missing_window_seconds
        return any(session.end <= now and (now - session.end).total_seconds() <= after
                   for session in calendar.sessions(market, now.date()))

    # ---- per pair --------------------------------------------------------------------

    def _pair_families(self, calendar: Calendar, now: datetime, now_ts: float, states: Iterable[PairState]):
        labels = ["market", "endpoint"]
        last_tradetime = GaugeMetricFamily("algopack_last_tradetime_timestamp_seconds",
                                           "Newest row's tradedate+tradetime (Moscow) as Unix time", labels=labels)
        last_systime = GaugeMetricFamily("algopack_last_systime_timestamp_seconds",
                                         "Newest row's SYSTIME as Unix time", labels=labels)
        lag = GaugeMetricFamily("algopack_lag_seconds",
                                "now - max(newest SYSTIME, session start) while in session, 0 outside", labels=labels)
        publish_delay = GaugeMetricFamily("algopack_publish_delay_seconds", "Newest row's SYSTIME - its tradetime",
                                          labels=labels)
        missing = GaugeMetricFamily("algopack_missing_intervals",
                                    "5-minute intervals of today's elapsed session time with no row for the probe",
                                    labels=labels)
        missing_recent = GaugeMetricFamily("algopack_missing_intervals_recent",
                                           "Missing intervals whose grace ran out within poll.missing_window_seconds",
                                           labels=labels)
        missing_run = GaugeMetricFamily("algopack_missing_run_intervals",
                                        "Recent runs of consecutive missing buckets (label since: the run's first "
                                        "bucket); value: buckets in the run",
                                        labels=[*labels, "since"])
        missing_each = GaugeMetricFamily("algopack_missing_interval_timestamp_seconds",
                                         "One series per missing bucket; value is the bucket end",
                                         labels=[*labels, "interval"])
        probe = GaugeMetricFamily("algopack_probe_info", "The instrument whose rows judge holes and lag",
                                  labels=[*labels, "secid"])
        next_poll = GaugeMetricFamily("algopack_next_poll_timestamp_seconds", "When this pair is polled next",
                                      labels=labels)
        for state in states:
            key = [state.market, state.endpoint]
            if state.probe:
                probe.add_metric([*key, state.probe], 1.0)
            next_poll.add_metric(key, _value(state.next_poll_ts))
            spec = datasets.get(state.endpoint)
            if not spec.intraday:
                continue
            last_tradetime.add_metric(key, _value(state.last_tradetime_ts))
            last_systime.add_metric(key, _value(state.last_systime_ts))
            publish_delay.add_metric(key, _value(state.publish_delay_seconds))
            session = calendar.current_session(state.market, now) if spec.judges("lag") else None
            if state.polled and session is not None:
                lag.add_metric(key, checks.lag_seconds(now_ts, state.last_systime_ts, session.start.timestamp(), True))
            else:
                lag.add_metric(key, 0.0)  # outside a session, or nothing known yet since start
            # Holes change only with the state, the calendar or a known moment (exporter/derived.py).
            holes = self.holes.view(calendar, state, now) if spec.judges("holes") else derived.EMPTY
            missing.add_metric(key, float(holes.missing))
            missing_recent.add_metric(key, float(holes.recent))
            for since, count in holes.runs:
                missing_run.add_metric([*key, since], float(count))
            for label, bucket_ts in holes.each:
                missing_each.add_metric([*key, label], bucket_ts)
        yield from (last_tradetime, last_systime, lag, publish_delay, missing, missing_recent, missing_run,
                    missing_each, probe, next_poll)

    # ---- health ----------------------------------------------------------------------

    def _health_families(self, states: Iterable[PairState]):
        labels = ["market", "endpoint"]
        up = GaugeMetricFamily("algopack_up", "1 if the last poll of this pair succeeded", labels=labels)
        polls = CounterMetricFamily("algopack_polls", "Polls attempted", labels=labels)
        errors = CounterMetricFamily("algopack_poll_errors", "Failed polls by reason", labels=[*labels, "reason"])
        rejected = CounterMetricFamily("algopack_rows_rejected",
                                       "ISS rows skipped by reason (bad_time, other_day, future_systime, off_grid, "
                                       "before_bucket); the rest of the answer is used", labels=[*labels, "reason"])
        duration = HistogramMetricFamily("algopack_poll_duration_seconds", "Time per poll", labels=labels)
        last_success = GaugeMetricFamily("algopack_last_poll_success_timestamp_seconds", "Last successful poll",
                                         labels=labels)
        for state in states:
            key = [state.market, state.endpoint]
            # Never polled since start (hi2 before its window, a market before its session): unknown.
            up.add_metric(key, (1.0 if state.up else 0.0) if state.polled else NAN)
            polls.add_metric(key, float(state.polls_total))
            for reason in ERROR_REASONS:
                errors.add_metric([*key, reason], float(state.errors.get(reason, 0)))
            if datasets.get(state.endpoint).intraday:
                for reason in REJECT_REASONS:
                    rejected.add_metric([*key, reason], float(state.rejected.get(reason, 0)))
            duration.add_metric(key, state.duration.cumulative(), state.duration.sum)
            last_success.add_metric(key, _value(state.last_success_ts))
        yield from (up, polls, errors, rejected, duration, last_success)

        requests_total = CounterMetricFamily("algopack_iss_requests", "HTTP requests sent to ISS by status",
                                             labels=["status"])
        stats = self.stats.snapshot()
        for status, count in sorted(stats["requests"].items()):
            requests_total.add_metric([str(status)], float(count))
        response_bytes = CounterMetricFamily("algopack_iss_response_bytes", "Response bytes received from ISS")
        response_bytes.add_metric([], float(stats["bytes"]))
        reload_ok = GaugeMetricFamily("algopack_calendar_last_reload_successful",
                                      "0 when the last calendar change was rejected")
        reload_ok.add_metric([], 1.0 if self.calendars.last_reload_successful else 0.0)
        build = GaugeMetricFamily("algopack_build_info", "Always 1", labels=["version"])
        build.add_metric([__version__], 1.0)
        yield from (requests_total, response_bytes, reload_ok, build)

    # ---- feed SLO (exporter/slo.py) ---------------------------------------------------

    def _slo_families(self, states: Iterable[PairState]):
        labels = ["market", "endpoint"]
        buckets = CounterMetricFamily("algopack_buckets",
                                      "Expected probe buckets judged once each since start, by outcome (on_time: "
                                      "SYSTIME - bucket end <= publish grace; late: within the hole window after "
                                      "it; missing: no row by then)", labels=[*labels, "outcome"])
        delay = HistogramMetricFamily("algopack_bucket_publish_delay_seconds",
                                      "SYSTIME - bucket end of every judged bucket that came (on_time + late)",
                                      labels=labels)
        target = GaugeMetricFamily("algopack_slo_target_ratio",
                                   "Share of expected buckets that must come on time over 30 days (slo config)",
                                   labels=labels)
        for state in states:
            if not datasets.get(state.endpoint).judges("holes"):
                continue
            key = [state.market, state.endpoint]
            for outcome in slo.OUTCOMES:
                buckets.add_metric([*key, outcome], float(state.buckets_total.get(outcome, 0)))
            delay.add_metric(key, state.bucket_delay.cumulative(), state.bucket_delay.sum)
            target.add_metric(key, self.slo_config.target(state.market, state.endpoint))
        yield from (buckets, delay, target)
