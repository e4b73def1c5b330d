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

# Poll duration histogram buckets (seconds): ISS answers in 0.05–2 s; retries and paging longer.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ERROR_REASONS = ("http", "timeout", "auth", "parse")

Pair = tuple[str, str]


@dataclass(frozen=True)
class Histogram:
    counts: tuple[int, ...] = (0,) * len(DURATION_BUCKETS)  # per bucket, not cumulative
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> Histogram:
        counts = list(self.counts)
        for index, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                counts[index] += 1
                break
        return Histogram(tuple(counts), self.total + 1, self.sum + value)

    def cumulative(self) -> list[tuple[str, int]]:
        running = 0
        out = []
        for bound, count in zip(DURATION_BUCKETS, self.counts, strict=True):
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
    rows_seen: int = 0
    last_row_bucket: float | None = None       # bucket of the row at index rows_seen-1 (overlap check)
    seen_buckets: frozenset[float] = frozenset()
    # Newest data ever seen (kept across failures and days: never faked fresh).
    last_tradetime_ts: float | None = None
    last_systime_ts: float | None = None
    publish_delay_seconds: float | None = None
    # obstats: distinct secids in the newest interval and the previous trading day's max.
    secids_interval: str | None = None
    secids: int | None = None
    secids_day: date | None = None
    prev_day: date | None = None
    prev_day_max: int | None = None
    # hi2: presence for `day`.
    hi2_present: bool = False
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

    def with_error(self, reason: str) -> PairState:
        errors = dict(self.errors)
        errors[reason] = errors.get(reason, 0) + 1
        return replace(self, errors=MappingProxyType(errors))


@dataclass(frozen=True)
class Snapshot:
    pairs: Mapping[Pair, PairState]
    probes: Mapping[str, tuple[date, str]] = field(default_factory=lambda: MappingProxyType({}))
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

    def set_probe(self, market: str, day: date, secid: str) -> None:
        with self._lock:
            probes = dict(self._snapshot.probes)
            probes[market] = (day, secid)
            self._snapshot = replace(self._snapshot, probes=MappingProxyType(probes))

    def probe(self, market: str, day: date) -> str | None:
        entry = self._snapshot.probes.get(market)
        return entry[1] if entry and entry[0] == day else None

    def last_probe(self, market: str) -> str | None:
        entry = self._snapshot.probes.get(market)
        return entry[1] if entry else None
