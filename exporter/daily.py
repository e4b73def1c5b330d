"""Daily aggregates carried over from the exporter's own observations, streamed otherwise.

The secids check compares today's newest interval with the SAME interval of the previous
trading day (iss-api.md §11). Those per-interval counts come from what the exporter itself
saw during that day: after every bucket it reads `latest=1` (the newest interval of all
instruments) anyway, so each count is recorded in the pair's state (`observed_counts`,
day ISO → {tradetime: distinct secids}). At the day change a day that was observed
completely (a count for every bucket its probe had) is kept; when the comparison day comes,
its counts are used as they are: no download.

Only when they are missing (the first day, a gap, a restart without state) is the previous
day read, page by page as a stream (`IntervalCounter`: nothing but a bit per (secid,
interval) is kept, never the day's rows), in a background thread (`Background`), so the
first poll and `/-/ready` never wait for it. Until it lands the coverage series stay NaN
(the alert is quiet on ignorance). The `auto` probe choice streams the same way
(`ValueTotals`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from . import checks
from .clock import MSK
from .iss import IssError
from .state import PairState

log = logging.getLogger("exporter.daily")

SECID_COLUMNS = ("tradetime", "secid")
KEEP_DAYS = 4            # observed days kept (a Monday compares with Friday across a weekend session)
RETRY_SECONDS = 60.0     # a failed background download is tried again at most this often (exporter clock)
MAX_PAGES = 2000
PACE_MAX_SECONDS = 2.0   # a background page waits at most this long (real) for the polls in flight


# ---- streamed aggregation ---------------------------------------------------------------


class IntervalCounter:
    """Distinct secids per tradetime over a stream of pages, in O(secids + intervals) memory:
    one int bitmask per secid (a bit per interval), and the count of each interval."""

    __slots__ = ("_bits", "_masks", "counts", "rows")

    def __init__(self) -> None:
        self._bits: dict[str, int] = {}
        self._masks: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.rows = 0

    def add(self, values: Iterable[tuple[Any, Any]]) -> None:
        bits, masks, counts = self._bits, self._masks, self.counts
        for raw_time, raw_secid in values:
            self.rows += 1
            if raw_time is None or raw_secid is None:
                continue
            tradetime, secid = str(raw_time).strip(), str(raw_secid).strip()
            if not tradetime or not secid:
                continue
            bit = bits.get(tradetime)
            if bit is None:
                bit = bits[tradetime] = 1 << len(bits)
            mask = masks.get(secid, 0)
            if not mask & bit:
                masks[secid] = mask | bit
                counts[tradetime] = counts.get(tradetime, 0) + 1

    def result(self) -> dict[str, int]:
        """tradetime → distinct secids; a tradetime that is no time is left out (as checks does)."""
        return {t: n for t, n in self.counts.items() if checks._parse_time(t) is not None}


class ValueTotals:
    """Summed traded value per secid over a stream of pages (checks.most_liquid, streamed)."""

    __slots__ = ("totals",)

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def add(self, values: Iterable[tuple[Any, Any]]) -> None:
        checks.add_values(self.totals, values)

    def best(self) -> str | None:
        return checks.best_value(self.totals)


def _start_of(day: date) -> float:
    return datetime.combine(day, datetime.min.time(), tzinfo=MSK).timestamp()


def paced(pages: Iterable, pace: Callable[[], None] | None) -> Iterator:
    """The pages of `pages`, `pace()` called before each request (the next page is only asked
    for when the iteration moves on): a background read lets the polls in flight go first."""
    iterator = iter(pages)
    while True:
        if pace is not None:
            pace()
        try:
            page = next(iterator)
        except StopIteration:
            return
        yield page
        del page


def stream_interval_counts(client, path: str, calendar, market: str, day: date,
                           pace: Callable[[], None] | None = None) -> dict[str, int]:
    """Distinct secids per interval of `day` from its all-instruments route, page by page.
    A weekend session filed under its next trading day: that day's rows loaded on `day`.
    `pace` is called before every page request (Background.pace)."""
    counts: dict[str, int] = {}
    for filed in checks.polled_dates(calendar, market, day):
        counter = IntervalCounter()
        if filed == day:
            pages = client.iter_pages(path, {"date": filed.isoformat()}, required_columns=SECID_COLUMNS,
                                      columns=SECID_COLUMNS, all_pages=True, max_pages=MAX_PAGES)
            for page in paced(pages, pace):
                counter.add(page.values(*SECID_COLUMNS))
                del page  # one page at a time
        else:
            since, until = _start_of(day), _start_of(day + timedelta(days=1))
            pages = client.iter_pages(path, {"date": filed.isoformat()}, required_columns=SECID_COLUMNS,
                                      columns=(*SECID_COLUMNS, "systime"), all_pages=True, max_pages=MAX_PAGES)
            for page in paced(pages, pace):
                counter.add((r["tradetime"], r["secid"]) for r in checks.loaded_since(page, since, until))
                del page
        log.debug("streamed %s day=%s filed=%s pages=%d rows=%d", path, day, filed, pages.pages, counter.rows)
        counts = counter.result()
        if counts:
            break
    return counts


def stream_value_totals(client, path: str, params: Mapping[str, Any],
                        pace: Callable[[], None] | None = None) -> ValueTotals:
    """Summed `val` per secid of an all-instruments read, page by page."""
    totals = ValueTotals()
    pages = client.iter_pages(path, params, required_columns=("secid", "val"), columns=("secid", "val"),
                              all_pages=True, max_pages=MAX_PAGES)
    for page in paced(pages, pace):
        totals.add(page.values("secid", "val"))
        del page
    return totals


def stream_most_liquid(client, path: str, params: Mapping[str, Any],
                       pace: Callable[[], None] | None = None) -> str | None:
    """The secid with the largest summed `val` of an all-instruments read, page by page."""
    return stream_value_totals(client, path, params, pace).best()


# ---- carried over: the state's observed counts ------------------------------------------


def observe(state: PairState, day: date, interval: str, count: int) -> PairState:
    """Record today's count of one interval (the `latest=1` read after a bucket)."""
    key = day.isoformat()
    today = state.observed_counts.get(key, {})
    if today.get(interval) == count:
        return state
    observed = dict(state.observed_counts)
    observed[key] = MappingProxyType({**today, interval: max(count, today.get(interval, 0))})
    return replace(state, observed_counts=MappingProxyType(observed))


def close_day(state: PairState) -> PairState:
    """At the day change (before today's cursor is reset): keep the counts of `state.day`
    only when every bucket its probe had has a count (observed from the session's start,
    no bucket skipped); drop days older than KEEP_DAYS."""
    if state.day is None or not state.observed_counts:
        return state
    key = state.day.isoformat()
    observed = dict(state.observed_counts)
    counts = observed.get(key)
    if counts is not None:
        wanted = {datetime.fromtimestamp(ts, MSK).strftime("%H:%M:%S") for ts in state.seen_buckets}
        missing = wanted - set(counts)
        if missing or not counts:
            log.info("observed counts not kept market=%s endpoint=%s day=%s intervals=%d missing=%d",
                     state.market, state.endpoint, key, len(counts), len(missing))
            del observed[key]
    for old in sorted(observed)[:-KEEP_DAYS]:
        del observed[old]
    return replace(state, observed_counts=MappingProxyType(observed))


def carried(state: PairState, prev: date, today: date) -> Mapping[str, int] | None:
    """The observed counts of `prev` when they are there (never today's own)."""
    if prev >= today or state.day == prev:
        return None  # `prev` is still being observed (no day change yet): not complete
    counts = state.observed_counts.get(prev.isoformat())
    return counts if counts else None


def with_prev_day(state: PairState, prev: date, counts: Mapping[str, int]) -> PairState:
    return replace(state, prev_day=prev, prev_day_max=checks.max_secids_per_interval(dict(counts)),
                   prev_day_counts=MappingProxyType(dict(counts)))


# ---- background downloads -------------------------------------------------------------------


class Background:
    """Downloads off the poll path, one at a time in one worker thread (started when work
    comes, gone when the queue is empty): a key is queued once; after a failure it is tried
    again no sooner than RETRY_SECONDS (exporter clock) later. `drain()` waits for all
    (tests, shutdown).

    Polls go first: a poll runs inside `foreground()`, and a background read calls `pace()`
    before each page request, which waits (at most PACE_MAX_SECONDS) until no poll is in
    flight. So the first polls after a start (and `/-/ready`) never queue behind a day's
    pages on the ISS connection or its server; the same pages are read, just after them."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._running: dict[tuple, Callable[[], None]] = {}   # queued or running, in order
        self._worker: threading.Thread | None = None
        self._failed_at: dict[tuple, float] = {}
        self._polls = 0
        self._no_polls = threading.Condition(threading.Lock())

    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Mark a poll in flight (background pages wait for it)."""
        with self._no_polls:
            self._polls += 1
        try:
            yield
        finally:
            with self._no_polls:
                self._polls -= 1
                if not self._polls:
                    self._no_polls.notify_all()

    def pace(self, max_wait: float = PACE_MAX_SECONDS) -> None:
        """Before a background page request: wait until no poll is in flight (bounded, so a
        background read always progresses even when polls never pause)."""
        with self._no_polls:
            self._no_polls.wait_for(lambda: not self._polls, timeout=max_wait)

    def running(self, key: tuple) -> bool:
        with self._lock:
            return key in self._running

    def start(self, key: tuple, work: Callable[[], None]) -> bool:
        """Queue `work` for the worker unless `key` is queued or running or failed just now."""
        with self._lock:
            if key in self._running:
                return False
            failed = self._failed_at.get(key)
            if failed is not None and self.clock.timestamp() - failed < RETRY_SECONDS:
                return False
            self._running[key] = work
            if self._worker is not None:
                return True
            self._worker = threading.Thread(target=self._work, name="daily-background", daemon=True)
            worker = self._worker
        worker.start()
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._running:
                    self._worker = None
                    return
                key, work = next(iter(self._running.items()))  # the oldest; _run removes it
            self._run(key, work)

    def _run(self, key: tuple, work: Callable[[], None]) -> None:
        ok = False
        try:
            work()
            ok = True
        except IssError as exc:
            log.warning("background download failed key=%s reason=%s error=%s", key, exc.reason, exc)
        except Exception:  # never let a bug kill the exporter silently
            log.exception("background download crashed key=%s", key)
        finally:
            with self._lock:
                self._running.pop(key, None)
                if ok:
                    self._failed_at.pop(key, None)
                else:
                    self._failed_at[key] = self.clock.timestamp()

    def drain(self, timeout: float | None = 30.0) -> None:
        while True:
            with self._lock:
                worker = self._worker
            if worker is None:
                return
            worker.join(timeout)
            if worker.is_alive():
                return
