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
from datetime import date, datetime, timedelta
from types import MappingProxyType

from . import checks, slo
from .calendar import CalendarStore
from .clock import Clock
from .iss import IssClient, IssError
from .rhythm import DEADLINE_MARGIN, RhythmParams, next_hi2_poll, next_intraday_poll
from .state import PairState, StateStore

log = logging.getLogger("exporter.poller")

ALGOPACK = "/iss/datashop/algopack/{market}/{dataset}"
FUTOI_TICKER = "/iss/analyticalproducts/futoi/securities/{ticker}.json"
SECID_COLUMNS = ("tradetime", "secid")
# While the `auto` probe has no row today, look at today's rows for a new one at most this often.
PROBE_RECHECK_SECONDS = 300.0
# Within a session the rhythm polls at least every bucket; only when its plan is further than
# this past a bucket's SLO verdict moment is an extra poll planned for the verdict.
VERDICT_SLACK_SECONDS = 300.0


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
        self.grace_seconds = float(poll.publish_grace_seconds)
        self.window_seconds = float(poll.missing_window_seconds)
        # Buckets ending before the start are never judged (slo.py: no persisted state yet).
        self.started_ts = clock.timestamp()
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
        planned = next_intraday_poll(calendar, market, now, last_seen, state.last_systime_ts, self.params)
        verdict = self._next_verdict(state)
        if verdict is not None and planned.timestamp() > verdict + VERDICT_SLACK_SECONDS:
            # After the session (or a long break) nothing else would poll before the closing
            # buckets' hole window ends: one poll then judges them (late or missing).
            planned = max(datetime.fromtimestamp(verdict, now.tzinfo), now + self.params.interval)
        return planned

    def _expected(self, state: PairState) -> list[float]:
        if state.day is None:
            return []
        return [b.timestamp() for b in self.calendars.current.expected_buckets(state.market, state.day)]

    def _next_verdict(self, state: PairState) -> float | None:
        return slo.next_verdict_ts(self._expected(state), state.arrivals, state.judged, self.grace_seconds,
                                   self.window_seconds, self.started_ts)

    def _judge(self, state: PairState, now_ts: float, final: bool = False) -> PairState:
        """Judge the probe buckets of `state.day` that can be judged at `now_ts` (slo.py)."""
        verdicts = slo.judge(self._expected(state), state.arrivals, state.judged, now_ts, self.grace_seconds,
                             self.window_seconds, self.started_ts, final=final)
        return state.with_verdicts(verdicts)

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
            if state.endpoint != "hi2" and state.day is not None:
                # Close the previous day: its rows are not read again, so what has not come is missing.
                state = self._judge(state, now.timestamp(), final=True)
            state = replace(state, day=today, rows_seen=0, last_row_key=None, seen_buckets=frozenset(),
                            rejected_keys=frozenset(), hi2_present=False, arrivals=MappingProxyType({}),
                            judged=frozenset())
        state = self._with_probe(state, today)
        if state.endpoint == "hi2":
            return self._poll_hi2(state, today)
        grew_before = len(state.seen_buckets)
        if state.endpoint == "obstats":
            # The once-a-day download first, the probe's rows after it: rows read before a
            # long download would be stale when the poll ends, and a bucket published
            # meanwhile could pass its grace and show as a hole until the next poll.
            state = self._ensure_prev_day_counts(state, today)
        state = self._poll_rows(state, today)
        if self._probe_has_no_rows_today(state, now) and self._rechoose_probe(state.market, today, state.probe):
            # The previous day's most liquid contract does not trade today (expired): read
            # the new probe's rows in this same poll, so its buckets never look missing.
            state = self._poll_rows(self._with_probe(state, today), today)
        if state.endpoint == "obstats":
            if len(state.seen_buckets) != grew_before or state.secids_day != today:
                state = self._count_secids(state, today)
        # Judged at the poll's start: every row published by then has just been read.
        return self._judge(state, now.timestamp())

    def _with_probe(self, state: PairState, today: date) -> PairState:
        probe = self.probe_for(state.market, state.endpoint, today)
        if probe != state.probe:
            state = replace(state, probe=probe, rows_seen=0, last_row_key=None, seen_buckets=frozenset(),
                            arrivals=MappingProxyType({}))
        return state

    def _rows_route(self, state: PairState) -> tuple[str, str]:
        if state.endpoint == "futoi":
            return FUTOI_TICKER.format(ticker=state.probe), "futoi"
        return ALGOPACK.format(market=state.market, dataset=state.endpoint) + f"/{state.probe}.json", "data"

    def _fetch_rows(self, state: PairState, days: tuple[date, ...], start: int) -> list[dict]:
        path, block = self._rows_route(state)
        params = {"from": _day(days[0]), "till": _day(days[-1])}
        # FUTOI has no cursor and ignores `start` (iss-api.md §11): one request, the whole
        # answer (~2 x 160 rows for one ticker and day, under its 1000-row cap).
        futoi = state.endpoint == "futoi"
        # ...and the whole answer every poll, so only the time columns are asked for
        # (`futoi.columns`; if ISS ignores it, the client trims the block the same way).
        result = self.client.get_block(path, params, block=block, required_columns=checks.TIME_COLUMNS,
                                       all_pages=not futoi, start=0 if futoi else start,
                                       columns=checks.TIME_COLUMNS if futoi else None)
        return checks.records(result.table)

    def _poll_rows(self, state: PairState, today: date) -> PairState:
        """Read the probe's new rows of today; bad rows are skipped and counted, never fatal."""
        days = checks.polled_dates(self.calendars.current, state.market, today)
        if state.endpoint == "futoi":
            raw = self._fetch_rows(state, days, 0)
            rows_seen, last_key = len(raw), None
        else:
            start = max(state.rows_seen - 1, 0)
            raw = self._fetch_rows(state, days, start)
            if state.rows_seen > 0 and (not raw or checks.row_key(raw[0]) != state.last_row_key):
                # The row we saw last is not where we left it: ISS reloaded or reordered the day.
                log.info("re-reading day market=%s endpoint=%s reason=overlap-mismatch", state.market, state.endpoint)
                raw = self._fetch_rows(state, days, 0)
                if not raw:
                    # Rows we already saw today vanished: a bad answer, not a day without data.
                    raise IssError("parse", f"no rows for {today} after {state.rows_seen} were seen")
                start = 0
            # ISS's offsets count every row, the rejected ones too.
            rows_seen = start + len(raw)
            last_key = checks.row_key(raw[-1]) if raw else state.last_row_key
        rows = self._checked(checks.check_rows, raw, today, self.clock.timestamp(), days)
        counted = state.with_rejected(rows.rejected)
        if counted is not state:
            for reason in checks.REJECT_REASONS:
                added = counted.rejected.get(reason, 0) - state.rejected.get(reason, 0)
                if added:
                    log.warning("rows rejected market=%s endpoint=%s reason=%s rows=%d",
                                state.market, state.endpoint, reason, added)
        # Buckets seen earlier stay seen: a re-read adds late rows, it never un-publishes.
        state = replace(counted, seen_buckets=state.seen_buckets | frozenset(rows.buckets), rows_seen=rows_seen,
                        last_row_key=last_key,
                        arrivals=MappingProxyType(slo.merge_arrivals(state.arrivals, rows.buckets, rows.systimes)))
        newest = checks.newest(rows)
        if newest is not None and (state.last_tradetime_ts is None or newest[0] >= state.last_tradetime_ts):
            bucket, systime = newest
            state = replace(state, last_tradetime_ts=bucket, last_systime_ts=systime,
                            publish_delay_seconds=systime - bucket)
        return state

    def _poll_hi2(self, state: PairState, today: date) -> PairState:
        days = checks.polled_dates(self.calendars.current, state.market, today)
        path = ALGOPACK.format(market=state.market, dataset="hi2") + f"/{state.probe}.json"
        result = self.client.get_block(path, {"from": _day(days[0]), "till": _day(days[-1])},
                                       required_columns=("tradedate", "secid"), all_pages=False)
        # Rows loaded before today are another day's (a weekend session's, filed under today).
        present = checks.has_rows_for_day(result.table, days, not_loaded_before=self._start_of_day(today))
        if present and not state.hi2_present:
            log.info("hi2 published market=%s day=%s", state.market, today)
        return replace(state, hi2_present=present)

    def _count_secids(self, state: PairState, today: date) -> PairState:
        path = ALGOPACK.format(market=state.market, dataset="obstats") + ".json"
        newest = None
        start_of_day = self._start_of_day(today)
        for day in checks.polled_dates(self.calendars.current, state.market, today):
            result = self.client.get_block(path, {"date": _day(day), "latest": 1}, required_columns=SECID_COLUMNS,
                                           columns=(*SECID_COLUMNS, "systime"), all_pages=True)
            # A weekend session's rows filed under today's date are not today's interval.
            rows = checks.loaded_since(result.table, start_of_day)
            newest = self._checked(checks.newest_interval_secids, rows)
            if newest is not None:
                break
        if newest is None:
            if state.secids_day != today:
                return replace(state, secids_interval=None, secids=None)  # unknown, not yesterday's count
            return state
        interval, count = newest
        return replace(state, secids_interval=interval, secids=count, secids_day=today)

    def _start_of_day(self, day: date) -> float:
        return datetime.combine(day, datetime.min.time(), tzinfo=self.clock.now().tzinfo).timestamp()

    def _ensure_prev_day_counts(self, state: PairState, today: date) -> PairState:
        """Distinct secids per interval of the previous trading day (one download a day):
        today's newest interval is compared with the SAME interval of that day (§11)."""
        prev = checks.comparison_day(self.calendars.current, state.market, today)
        if prev is None:
            # No earlier day of the same kind (e.g. the first weekend session): nothing to compare.
            return replace(state, prev_day=None, prev_day_max=None, prev_day_counts=None)
        if state.prev_day == prev and state.prev_day_counts is not None:
            return state
        path = ALGOPACK.format(market=state.market, dataset="obstats") + ".json"
        counts: dict[str, int] = {}
        for filed in checks.polled_dates(self.calendars.current, state.market, prev):
            if filed == prev:
                result = self.client.get_block(path, {"date": _day(prev)}, required_columns=SECID_COLUMNS,
                                               columns=SECID_COLUMNS, all_pages=True, max_pages=2000)
                rows = result.table
            else:
                # A weekend session filed under its next trading day: that day's rows loaded on `prev`.
                result = self.client.get_block(path, {"date": _day(filed)}, required_columns=SECID_COLUMNS,
                                               columns=(*SECID_COLUMNS, "systime"), all_pages=True, max_pages=2000)
                rows = checks.loaded_since(result.table, self._start_of_day(prev),
                                           self._start_of_day(prev + timedelta(days=1)))
            counts = self._checked(checks.secids_per_interval, rows)
            if counts:
                break
        maximum = checks.max_secids_per_interval(counts)
        log.info("previous day obstats market=%s day=%s intervals=%d max_secids=%d", state.market, prev,
                 len(counts), maximum)
        return replace(state, prev_day=prev, prev_day_max=maximum, prev_day_counts=MappingProxyType(counts))

    @staticmethod
    def _checked(check, *args):
        """Run a pure check on ISS rows; rows it cannot interpret at all are a parse error."""
        try:
            return check(*args)
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
        """Most liquid contract by the previous trading day's traded value; once per day
        (re-chosen from today's rows when that contract has none: `_rechoose_probe`)."""
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
            by = "prev-day"
            for day, params in ((prev, {"date": _day(prev)}), (today, {"date": _day(today), "latest": 1})):
                result = self.client.get_block(path, params, required_columns=("secid", "val"),
                                               columns=("secid", "val"), all_pages=True, max_pages=2000)
                secid = self._checked(checks.most_liquid, result.table)
                if secid:
                    by = "prev-day" if day == prev else "today"
                    log.info("probe chosen market=%s secid=%s by=tradestats-val day=%s", market, secid, day)
                    break
            if not secid:
                previous = self.store.last_probe(market)
                if previous is None:
                    raise IssError("parse", f"no {market} tradestats rows to choose the probe contract from")
                secid = previous
                log.warning("probe kept market=%s secid=%s reason=no-rows", market, secid)
            self.store.set_probe(market, today, secid, by=by)
            return secid

    def _probe_has_no_rows_today(self, state: PairState, now: datetime) -> bool:
        """An `auto` probe chosen by yesterday's value with no row of today although the
        first bucket of today is at its missing deadline (the rhythm's last poll before it)."""
        if state.endpoint in ("hi2", "futoi") or self.config.markets[state.market].probe != "auto":
            return False
        choice = self.store.probe_choice(state.market, now.date())
        if choice is None or choice.by != "prev-day" or state.seen_buckets:
            return False
        if choice.checked_ts is not None and now.timestamp() - choice.checked_ts < PROBE_RECHECK_SECONDS:
            return False
        soon = now + DEADLINE_MARGIN + timedelta(seconds=1)
        return bool(self.calendars.current.due_buckets(state.market, soon, self.params.grace.total_seconds()))

    def _rechoose_probe(self, market: str, today: date, old: str | None) -> bool:
        """Choose the probe again from today's rows (`latest=1`); True when it changed."""
        with self._probe_lock:
            choice = self.store.probe_choice(market, today)
            if choice is None or choice.by != "prev-day" or choice.secid != old:
                return choice is not None and choice.secid != old  # another pair re-chose already
            path = ALGOPACK.format(market=market, dataset="tradestats") + ".json"
            result = self.client.get_block(path, {"date": _day(today), "latest": 1},
                                           required_columns=("secid", "val"), columns=("secid", "val"),
                                           all_pages=True, max_pages=2000)
            secid = self._checked(checks.most_liquid, result.table)
            if not secid or secid == old:
                # Nobody traded yet (or the old one leads after all): ask again a while later.
                self.store.set_probe(market, today, choice.secid, by="prev-day", checked_ts=self.clock.timestamp())
                return False
            log.warning("probe re-chosen market=%s old=%s new=%s reason=no-rows-today", market, old, secid)
            self.store.set_probe(market, today, secid, by="today")
            return True
