"""Per-pair poll state and the immutable snapshot the collector serves.

Pollers never mutate a published state: they build a new `PairState` with
`dataclasses.replace` and `StateStore.put` swaps a new `Snapshot` in under a lock, so a
scrape always sees one consistent picture.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType

from . import slo
from .checks import REJECT_REASONS
from .iss import ERROR_REASONS  # the one list of poll error reasons (the collector shows each)

__all__ = ["ERROR_REASONS", "REJECT_REASONS", "Histogram", "PairState", "ProbeChoice", "Snapshot", "StateStore"]

# Poll duration histogram buckets (seconds): ISS answers in 0.05–2 s; retries and paging longer.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


Pair = tuple[str, str]


@dataclass(frozen=True)
class Histogram:
    counts: tuple[int, ...] = (0,) * len(DURATION_BUCKETS)  # per bucket, not cumulative
    total: int = 0
    sum: float = 0.0
    bounds: tuple[float, ...] = DURATION_BUCKETS

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls((0,) * len(bounds), 0, 0.0, bounds)

    def observe(self, value: float) -> Histogram:
        counts = list(self.counts)
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                counts[index] += 1
                break
        return Histogram(tuple(counts), self.total + 1, self.sum + value, self.bounds)

    def cumulative(self) -> list[tuple[str, int]]:
        running = 0
        out = []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            out.append((f"{bound:g}", running))
        out.append(("+Inf", self.total))
        return out


@dataclass(frozen=True)
class PairState:
    market: str
    endpoint: str
    # Cursor over today's rows of the probe instrument (incremental polling).
    day: date | None = None
    probe: str | None = None
    rows_seen: int = 0                         # ALL rows ISS returned for the day, rejected ones too
    last_row_key: tuple | None = None          # raw (tradedate, tradetime) of row rows_seen-1 (overlap check)
    seen_buckets: frozenset[float] = frozenset()
    # Bad rows skipped (checks.REJECT_REASONS): counts since start; keys of today's, so a
    # row read again (overlap row, futoi's whole-day answer) is counted once.
    rejected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    rejected_keys: frozenset[tuple] = frozenset()
    # Newest data ever seen (kept across failures and days: never faked fresh).
    last_tradetime_ts: float | None = None
    last_systime_ts: float | None = None
    publish_delay_seconds: float | None = None
    # obstats: distinct secids in the newest interval, and the previous trading day's
    # count per interval (tradetime "HH:MM:SS" -> distinct secids) and its max.
    secids_interval: str | None = None
    secids: int | None = None
    secids_day: date | None = None
    prev_day: date | None = None
    prev_day_max: int | None = None
    prev_day_counts: Mapping[str, int] | None = None
    # What this exporter itself saw (exporter/daily.py): day ISO -> {tradetime: distinct
    # secids} from the `latest=1` read after each bucket; today's, and the last completely
    # observed days, which become `prev_day_counts` with no download.
    observed_counts: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    # A daily dataset (hi2, datasets.py `presence`): published for `day`.
    published: bool = False
    # Feed SLO (exporter/slo.py): earliest accepted SYSTIME per probe bucket of `day`, the
    # buckets of `day` judged already, and the verdicts since start.
    arrivals: Mapping[float, float] = field(default_factory=lambda: MappingProxyType({}))
    judged: frozenset[float] = frozenset()
    buckets_total: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(slo.OUTCOMES, 0)))
    bucket_delay: Histogram = Histogram.empty(slo.DELAY_BUCKETS)
    # Health.
    polled: bool = False          # a poll of this pair has completed since start
    up: bool = False
    polls_total: int = 0
    errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    duration: Histogram = Histogram()
    last_success_ts: float | None = None
    last_error: str | None = None
    next_poll_ts: float | None = None

    @property
    def pair(self) -> Pair:
        return (self.market, self.endpoint)

    @property
    def prev_day_same_interval(self) -> int | None:
        """Distinct secids of the previous trading day in the newest interval's tradetime;
        None when unknown or that day had no such interval."""
        if self.prev_day_counts is None or self.secids_interval is None:
            return None
        return self.prev_day_counts.get(self.secids_interval)

    def with_rejected(self, rejected: Iterable[tuple[str, tuple]]) -> PairState:
        """Count the rows of `rejected` (reason, row identity) not counted yet today."""
        new = [(reason, key) for reason, key in rejected if key not in self.rejected_keys]
        if not new:
            return self
        counts = dict(self.rejected)
        for reason, _ in new:
            counts[reason] = counts.get(reason, 0) + 1
        keys = self.rejected_keys | frozenset(key for _, key in new)
        return replace(self, rejected=MappingProxyType(counts), rejected_keys=keys)

    def with_verdicts(self, verdicts: Iterable[slo.Verdict]) -> PairState:
        """Count each verdict once (a bucket already judged today is skipped)."""
        new = [v for v in verdicts if v.bucket not in self.judged]
        if not new:
            return self
        counts = dict(self.buckets_total)
        delay = self.bucket_delay
        for verdict in new:
            counts[verdict.outcome] = counts.get(verdict.outcome, 0) + 1
            if verdict.delay is not None:
                delay = delay.observe(verdict.delay)
        return replace(self, buckets_total=MappingProxyType(counts), bucket_delay=delay,
                       judged=self.judged | frozenset(v.bucket for v in new))

    def with_error(self, reason: str) -> PairState:
        errors = dict(self.errors)
        errors[reason] = errors.get(reason, 0) + 1
        return replace(self, errors=MappingProxyType(errors))


@dataclass(frozen=True)
class ProbeChoice:
    """The `auto` probe of a market for `day`: chosen by the previous day's traded value
    (by="prev-day") or again from today's rows (by="today", after it had none)."""

    day: date
    secid: str
    by: str = "prev-day"
    checked_ts: float | None = None  # last time today's rows were consulted for a re-choice


@dataclass(frozen=True)
class Snapshot:
    pairs: Mapping[Pair, PairState]
    probes: Mapping[str, ProbeChoice] = field(default_factory=lambda: MappingProxyType({}))
    taken_ts: float = 0.0


class StateStore:
    """Holds the current snapshot; writers serialise on a lock, readers never block."""

    def __init__(self, pairs: Iterable[Pair]):
        states = {pair: PairState(market=pair[0], endpoint=pair[1]) for pair in pairs}
        self._lock = threading.Lock()
        self._snapshot = Snapshot(pairs=MappingProxyType(states))

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def get(self, pair: Pair) -> PairState:
        return self._snapshot.pairs[pair]

    def put(self, state: PairState, now_ts: float = 0.0) -> None:
        with self._lock:
            pairs = dict(self._snapshot.pairs)
            pairs[state.pair] = state
            self._snapshot = replace(self._snapshot, pairs=MappingProxyType(pairs), taken_ts=now_ts)

    def set_probe(self, market: str, day: date, secid: str, by: str = "prev-day",
                  checked_ts: float | None = None) -> None:
        with self._lock:
            probes = dict(self._snapshot.probes)
            probes[market] = ProbeChoice(day, secid, by, checked_ts)
            self._snapshot = replace(self._snapshot, probes=MappingProxyType(probes))

    def probe_choice(self, market: str, day: date) -> ProbeChoice | None:
        entry = self._snapshot.probes.get(market)
        return entry if entry and entry.day == day else None

    def probe(self, market: str, day: date) -> str | None:
        entry = self.probe_choice(market, day)
        return entry.secid if entry else None

    def last_probe(self, market: str) -> str | None:
        entry = self._snapshot.probes.get(market)
        return entry.secid if entry else None
