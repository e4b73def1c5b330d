"""One poll of one (market, endpoint) pair: what to fetch, and how the state moves.

Incremental: the probe instrument's rows of today are fetched from `start = rows already
seen − 1`; the first returned row must be the last one seen (an overlap check), otherwise
the day is re-read from 0 (ISS reordered or reloaded rows). So a poll normally costs one
small request, and nothing already seen is downloaded again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import date, datetime

import pandas as pd

from . import checks
from .calendar import CalendarStore
from .clock import Clock
from .iss import IssClient, IssError
from .rhythm import RhythmParams, next_hi2_poll, next_intraday_poll
from .state import PairState, StateStore

log = logging.getLogger("exporter.poller")

ALGOPACK = "/iss/datashop/algopack/{market}/{dataset}"
FUTOI_TICKER = "/iss/analyticalproducts/futoi/securities/{ticker}.json"
SECID_COLUMNS = ("tradetime", "secid")


def _day(day: date) -> str:
    return day.isoformat()


class Poller:
    """Polls pairs on behalf of the scheduler; all results land in the `StateStore`."""

    def __init__(self, config, client: IssClient, calendars: CalendarStore, clock: Clock, store: StateStore):
        self.config = config
        self.client = client
        self.calendars = calendars
        self.clock = clock
        self.store = store
        poll = config.poll
        self.params = RhythmParams.from_seconds(poll.publish_offset_seconds, poll.publish_grace_seconds,
                                                poll.interval_seconds, config.delay_threshold_seconds)
        self._pair_locks = {pair: threading.Lock() for pair in store.snapshot.pairs}
        self._probe_lock = threading.Lock()

    # ---- planning -------------------------------------------------------------------

    def planned_next(self, pair: tuple[str, str], now: datetime | None = None) -> datetime:
        """Next poll moment of `pair` given its current state (virtual time)."""
        now = now or self.clock.now()
        state = self.store.get(pair)
        calendar = self.calendars.current
        market, endpoint = pair
        if endpoint == "hi2":
            present = state.hi2_present and state.day == now.date()
            return next_hi2_poll(calendar, market, now, present, self.params)
        last_seen = max(state.seen_buckets) if state.seen_buckets and state.day == now.date() else None
        return next_intraday_poll(calendar, market, now, last_seen, state.last_systime_ts, self.params)

    def plan_startup(self, now: datetime) -> dict[tuple[str, str], datetime]:
        """First poll of every pair after a (re)start: right away when the market has traded
        today (resume without waiting for a bucket), otherwise on the rhythm."""
        plan = {}
        calendar = self.calendars.current
        for pair, state in self.store.snapshot.pairs.items():
            sessions = calendar.sessions(pair[0], now.date())
            traded_today = bool(sessions) and sessions[0].start <= now
            moment = now if traded_today and pair[1] != "hi2" else self.planned_next(pair, now)
            self.store.put(replace(state, next_poll_ts=moment.timestamp()), now.timestamp())
            plan[pair] = moment
        return plan

    def is_due(self, pair: tuple[str, str], now: datetime) -> bool:
        state = self.store.get(pair)
        return state.next_poll_ts is None or now.timestamp() >= state.next_poll_ts - 1.0

    # ---- polling --------------------------------------------------------------------

    def poll(self, pair: tuple[str, str], force: bool = False) -> PairState:
        """Poll `pair` if it is due (or `force`), record the outcome, plan the next poll."""
        with self._pair_locks[pair]:
            now = self.clock.now()
            if not force and not self.is_due(pair, now):
                return self.store.get(pair)
            state = self.store.get(pair)
            started = time.monotonic()
            try:
                state = self._poll_once(state, now)
                state = replace(state, up=True, last_success_ts=self.clock.timestamp(), last_error=None)
            except IssError as exc:
                state = replace(state.with_error(exc.reason), up=False, last_error=str(exc))
                log.warning("poll failed market=%s endpoint=%s reason=%s error=%s",
                            pair[0], pair[1], exc.reason, exc)
            duration = time.monotonic() - started
            state = replace(state, polled=True, polls_total=state.polls_total + 1,
                            duration=state.duration.observe(duration))
            self.store.put(state, self.clock.timestamp())
            after = self.clock.now()
            state = replace(state, next_poll_ts=self.planned_next(pair, after).timestamp())
            self.store.put(state, after.timestamp())
            log.debug("polled market=%s endpoint=%s up=%s rows_seen=%d seconds=%.3f",
                      pair[0], pair[1], state.up, state.rows_seen, duration)
            return state

    def _poll_once(self, state: PairState, now: datetime) -> PairState:
        today = now.date()
        if state.day != today:
            state = replace(state, day=today, rows_seen=0, last_row_bucket=None,
                            seen_buckets=frozenset(), hi2_present=False)
        probe = self.probe_for(state.market, state.endpoint, today)
        if probe != state.probe:
            state = replace(state, probe=probe, rows_seen=0, last_row_bucket=None, seen_buckets=frozenset())
        if state.endpoint == "hi2":
            return self._poll_hi2(state, today)
        grew_before = len(state.seen_buckets)
        state = self._poll_rows(state, today)
        if state.endpoint == "obstats":
            state = self._ensure_prev_day_max(state, today)
            if len(state.seen_buckets) != grew_before or state.secids_day != today:
                state = self._count_secids(state, today)
        return state

    def _rows_route(self, state: PairState) -> tuple[str, str]:
        if state.endpoint == "futoi":
            return FUTOI_TICKER.format(ticker=state.probe), "futoi"
        return ALGOPACK.format(market=state.market, dataset=state.endpoint) + f"/{state.probe}.json", "data"

    def _fetch_rows(self, state: PairState, today: date, start: int) -> pd.DataFrame:
        path, block = self._rows_route(state)
        params = {"from": _day(today), "till": _day(today)}
        result = self.client.get_block(path, params, block=block, required_columns=checks.TIME_COLUMNS,
                                       all_pages=True, start=start)
        return result.frame

    def _poll_rows(self, state: PairState, today: date) -> PairState:
        start = max(state.rows_seen - 1, 0)
        frame = self._fetch_rows(state, today, start)
        rows = self._checked(checks.rows_from_frame, frame)
        if state.rows_seen > 0 and (rows.empty or abs(rows.buckets[0] - (state.last_row_bucket or -1)) > 0.5):
            # The row we saw last is not where we left it: ISS reloaded or reordered the day.
            log.info("re-reading day market=%s endpoint=%s reason=overlap-mismatch", state.market, state.endpoint)
            frame = self._fetch_rows(state, today, 0)
            rows = self._checked(checks.rows_from_frame, frame)
            if rows.empty:
                # Rows we already saw today vanished: a bad answer, not a day without data.
                raise IssError("parse", f"no rows for {today} after {state.rows_seen} were seen")
            # Buckets seen earlier stay seen: a re-read adds late rows, it never un-publishes.
            seen: frozenset[float] = state.seen_buckets | frozenset(rows.buckets)
            rows_seen = len(rows.buckets)
        else:
            seen = state.seen_buckets | frozenset(rows.buckets)
            rows_seen = start + len(rows.buckets)
        state = replace(state, seen_buckets=seen, rows_seen=rows_seen,
                        last_row_bucket=rows.buckets[-1] if rows.buckets else state.last_row_bucket)
        newest = checks.newest(rows)
        if newest is not None and (state.last_tradetime_ts is None or newest[0] >= state.last_tradetime_ts):
            bucket, systime = newest
            state = replace(state, last_tradetime_ts=bucket, last_systime_ts=systime,
                            publish_delay_seconds=systime - bucket)
        return state

    def _poll_hi2(self, state: PairState, today: date) -> PairState:
        path = ALGOPACK.format(market=state.market, dataset="hi2") + f"/{state.probe}.json"
        result = self.client.get_block(path, {"from": _day(today), "till": _day(today)},
                                       required_columns=("tradedate", "secid"), all_pages=False)
        present = checks.has_rows_for_day(result.frame, today)
        if present and not state.hi2_present:
            log.info("hi2 published market=%s day=%s", state.market, today)
        return replace(state, hi2_present=present)

    def _count_secids(self, state: PairState, today: date) -> PairState:
        path = ALGOPACK.format(market=state.market, dataset="obstats") + ".json"
        result = self.client.get_block(path, {"date": _day(today), "latest": 1}, required_columns=SECID_COLUMNS,
                                       columns=SECID_COLUMNS, all_pages=True)
        newest = self._checked(checks.newest_interval_secids, result.frame)
        if newest is None:
            return state
        interval, count = newest
        return replace(state, secids_interval=interval, secids=count, secids_day=today)

    def _ensure_prev_day_max(self, state: PairState, today: date) -> PairState:
        prev = self.calendars.current.previous_working_day(today, state.market)
        if state.prev_day == prev and state.prev_day_max is not None:
            return state
        path = ALGOPACK.format(market=state.market, dataset="obstats") + ".json"
        result = self.client.get_block(path, {"date": _day(prev)}, required_columns=SECID_COLUMNS,
                                       columns=SECID_COLUMNS, all_pages=True, max_pages=2000)
        maximum = self._checked(checks.max_secids_per_interval, result.frame)
        log.info("previous day obstats max market=%s day=%s secids=%d", state.market, prev, maximum)
        return replace(state, prev_day=prev, prev_day_max=maximum)

    @staticmethod
    def _checked(check, frame: pd.DataFrame):
        """Run a pure check on ISS rows; rows it cannot interpret are a parse error of the poll."""
        try:
            return check(frame)
        except checks.RowsError as exc:
            raise IssError("parse", str(exc)) from exc

    # ---- probe instruments ----------------------------------------------------------

    def probe_for(self, market: str, endpoint: str, today: date) -> str:
        market_cfg = self.config.markets[market]
        if endpoint == "futoi":
            return market_cfg.futoi_ticker
        if market_cfg.probe != "auto":
            return market_cfg.probe
        return self.auto_probe(market, today)

    def auto_probe(self, market: str, today: date) -> str:
        """Most liquid contract by the previous trading day's traded value; once per day."""
        cached = self.store.probe(market, today)
        if cached:
            return cached
        with self._probe_lock:
            cached = self.store.probe(market, today)
            if cached:
                return cached
            path = ALGOPACK.format(market=market, dataset="tradestats") + ".json"
            prev = self.calendars.current.previous_working_day(today, market)
            secid = None
            for day, params in ((prev, {"date": _day(prev)}), (today, {"date": _day(today), "latest": 1})):
                result = self.client.get_block(path, params, required_columns=("secid", "val"),
                                               columns=("secid", "val"), all_pages=True, max_pages=2000)
                secid = self._checked(checks.most_liquid, result.frame)
                if secid:
                    log.info("probe chosen market=%s secid=%s by=tradestats-val day=%s", market, secid, day)
                    break
            if not secid:
                previous = self.store.last_probe(market)
                if previous is None:
                    raise IssError("parse", f"no {market} tradestats rows to choose the probe contract from")
                secid = previous
                log.warning("probe kept market=%s secid=%s reason=no-rows", market, secid)
            self.store.set_probe(market, today, secid)
            return secid
