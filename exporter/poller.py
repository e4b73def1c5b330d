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
from types import MappingProxyType

from . import checks, daily, datasets, slo
from .calendar import CalendarStore
from .clock import Clock
from .iss import IssClient, IssError
from .probes import Probes
from .rhythm import RhythmParams, next_daily_poll, next_intraday_poll
from .state import PairState, StateStore

log = logging.getLogger("exporter.poller")

SECID_COLUMNS = ("tradetime", "secid")
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
        # Buckets ending before the start of the day's state are never judged (storage.py may move it back).
        self.started_ts = clock.timestamp()
        self._pair_locks = {pair: threading.Lock() for pair in store.snapshot.pairs}
        # Previous-day reads (only when not carried over): off the poll path (exporter/daily.py).
        self.background = daily.Background(clock)
        self.probes = Probes(config, client, calendars, clock, store, self.params, self.background)
        self._latest_refused: set[tuple[str, str]] = set()  # pairs whose `latest=1` ISS refused

    # ---- planning -------------------------------------------------------------------

    def planned_next(self, pair: tuple[str, str], now: datetime | None = None) -> datetime:
        """Next poll moment of `pair` given its current state (virtual time); records nothing."""
        return self._plan(self.store.get(pair), now or self.clock.now())

    def replan(self, pair: tuple[str, str], now: datetime) -> datetime:
        """Plan `pair` afresh (after a calendar change or a clock jump) and record it as the
        pair's next poll, under the pair's lock so it never overwrites a poll's result."""
        with self._pair_locks[pair]:
            moment = self.planned_next(pair, now)
            self.store.put(replace(self.store.get(pair), next_poll_ts=moment.timestamp()), now.timestamp())
            return moment

    def _plan(self, state: PairState, now: datetime) -> datetime:
        calendar = self.calendars.current
        market, endpoint = state.pair
        spec = datasets.get(endpoint)
        if not spec.intraday:
            present = state.published and state.day == now.date()
            return next_daily_poll(lambda day: spec.deadline(calendar, market, day), now, present, self.params)
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
            moment = now if traded_today and datasets.get(pair[1]).intraday else self.planned_next(pair, now)
            self.store.put(replace(state, next_poll_ts=moment.timestamp()), now.timestamp())
            plan[pair] = moment
        return plan

    def is_due(self, pair: tuple[str, str], now: datetime) -> bool:
        """The pair's one next-poll value (`next_poll_ts`, planned by the poller) has come."""
        state = self.store.get(pair)
        return state.next_poll_ts is None or now.timestamp() >= state.next_poll_ts - 1.0

    def _trades_today(self, market: str, today: date) -> bool:
        return bool(self.calendars.current.sessions(market, today))

    # ---- what the scheduler sees: jobs (pairs), each with one next time ---------------

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.store.snapshot.pairs)

    def run(self, pair: tuple[str, str]) -> datetime:
        """Poll `pair` when due and return its next poll moment (the one value)."""
        state = self.poll(pair)
        if state.next_poll_ts is None:
            return self.planned_next(pair)
        return datetime.fromtimestamp(state.next_poll_ts, self.clock.now().tzinfo)

    # ---- polling --------------------------------------------------------------------

    def poll(self, pair: tuple[str, str], force: bool = False) -> PairState:
        """Poll `pair` if it is due (or `force`), record the outcome and the next poll (one
        store write); the returned state's `next_poll_ts` is the one value the scheduler plans by."""
        with self._pair_locks[pair]:
            now = self.clock.now()
            if not force and not self.is_due(pair, now):
                return self.store.get(pair)
            state = self.store.get(pair)
            if not force and not self._trades_today(state.market, now.date()):
                # Issue 16.3: a day the market does not trade costs no ISS request. The wake-up
                # only closes the previous day (judging it needs no request) and plans again; a
                # calendar edit that opens the day re-plans at once (`replan`).
                state = self._new_day(state, now)
                state = replace(state, next_poll_ts=self._plan(state, now).timestamp())
                self.store.put(state, now.timestamp())
                return state
            started = time.monotonic()
            try:
                with self.background.foreground():  # background day reads let this poll go first
                    state = self._poll_once(state, now)
                state = replace(state, up=True, last_success_ts=self.clock.timestamp(), last_error=None)
            except IssError as exc:
                state = replace(state.with_error(exc.reason), up=False, last_error=str(exc))
                log.warning("poll failed market=%s endpoint=%s reason=%s error=%s",
                            pair[0], pair[1], exc.reason, exc)
            duration = time.monotonic() - started
            after = self.clock.now()
            state = replace(state, polled=True, polls_total=state.polls_total + 1,
                            duration=state.duration.observe(duration))
            state = replace(state, next_poll_ts=self._plan(state, after).timestamp())
            self.store.put(state, after.timestamp())
            log.debug("polled market=%s endpoint=%s up=%s rows_seen=%d seconds=%.3f",
                      pair[0], pair[1], state.up, state.rows_seen, duration)
            return state

    def _new_day(self, state: PairState, now: datetime) -> PairState:
        """On the first poll of a day: close the previous day and reset today's cursor."""
        if state.day == now.date():
            return state
        if datasets.get(state.endpoint).intraday and state.day is not None:
            # Close the previous day: its rows are not read again, so what has not come is missing.
            state = self._judge(state, now.timestamp(), final=True)
        if datasets.get(state.endpoint).judges("secids"):
            state = daily.close_day(state)  # a completely observed day is kept as a previous day
        return replace(state, day=now.date(), rows_seen=0, last_row_key=None, seen_buckets=frozenset(),
                       rejected_keys=frozenset(), published=False, arrivals=MappingProxyType({}),
                       judged=frozenset())

    def _poll_once(self, state: PairState, now: datetime) -> PairState:
        today = now.date()
        spec = datasets.get(state.endpoint)
        state = self._new_day(state, now)
        state = self._with_probe(state, today)
        if spec.judges("presence"):
            return self._poll_presence(state, today)
        grew_before = len(state.seen_buckets)
        if spec.judges("secids"):
            # The once-a-day download first, the probe's rows after it: rows read before a
            # long download would be stale when the poll ends, and a bucket published
            # meanwhile could pass its grace and show as a hole until the next poll.
            state = self._ensure_prev_day_counts(state, today)
        state = self._poll_rows(state, today)
        if self.probes.has_no_rows_today(state, now) and self.probes.rechoose(state.market, today, state.probe):
            # The previous day's most liquid contract does not trade today (expired): read
            # the new probe's rows in this same poll, so its buckets never look missing.
            state = self._poll_rows(self._with_probe(state, today), today)
        if spec.judges("secids"):
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

    def _read_single(self, state: PairState, days: tuple[date, ...], today: date) -> tuple[checks.Rows, int]:
        """A dataset without a cursor (FUTOI): every answer is the whole day so far, so ask
        only for the newest bucket (`latest=1`, iss.latest_reads) when that is enough, and
        read the day whole when it is not: nothing seen yet, a hole whose row may still
        come, or an answer that skips a bucket (two published since the last poll). If ISS
        ignores the parameter the answer is the whole day, which is complete anyway; if it
        refuses it (an ISS error or HTTP 400), this pair stops asking. Returns the checked
        rows and how many rows the answer had."""
        now_ts, horizon = self.clock.timestamp(), self.grace_seconds + self.window_seconds
        expected, newest = self._expected(state), state.last_tradetime_ts if state.seen_buckets else None
        if (self.config.iss.latest_reads and state.pair not in self._latest_refused
                and not checks.needs_whole_day(expected, state.seen_buckets, newest, now_ts, horizon)):
            try:
                raw = self._fetch_rows(state, days, 0, latest=True)
            except IssError as exc:
                if not (exc.reason == "iss_error" or (exc.reason == "http" and exc.status == 400)):
                    raise
                self._latest_refused.add(state.pair)
                log.warning("latest=1 refused market=%s endpoint=%s error=%s: reading the day whole from now on",
                            state.market, state.endpoint, exc)
            else:
                rows = self._checked(checks.check_rows, raw, today, now_ts, days)
                newest = max((newest, *rows.buckets))
                if not checks.needs_whole_day(expected, state.seen_buckets | set(rows.buckets), newest, now_ts,
                                              horizon):
                    return rows, len(raw)
        raw = self._fetch_rows(state, days, 0)
        return self._checked(checks.check_rows, raw, today, now_ts, days), len(raw)

    def _fetch_rows(self, state: PairState, days: tuple[date, ...], start: int, latest: bool = False) -> list[dict]:
        spec = datasets.get(state.endpoint)
        params = {"from": _day(days[0]), "till": _day(days[-1])}
        if latest:
            params["latest"] = 1
        # A "single" dataset (FUTOI) has no cursor and ignores `start` (iss-api.md §11): one
        # request, the whole answer (~2 x 160 rows for one ticker and day, under its 1000-row
        # cap), so it asks only for its time columns (`<block>.columns`; if ISS ignores it,
        # the client trims the block the same way).
        single = spec.paging == "single"
        result = self.client.get_block(spec.route(state.market, state.probe), params, block=spec.block,
                                       required_columns=spec.time_columns, all_pages=not single,
                                       start=0 if single else start, columns=spec.ask_columns)
        return checks.records(result.table)

    def _poll_rows(self, state: PairState, today: date) -> PairState:
        """Read the probe's new rows of today; bad rows are skipped and counted, never fatal."""
        days = checks.polled_dates(self.calendars.current, state.market, today)
        if datasets.get(state.endpoint).paging == "single":
            rows, rows_seen = self._read_single(state, days, today)
            last_key = None
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

    def _poll_presence(self, state: PairState, today: date) -> PairState:
        spec = datasets.get(state.endpoint)
        days = checks.polled_dates(self.calendars.current, state.market, today)
        result = self.client.get_block(spec.route(state.market, state.probe),
                                       {"from": _day(days[0]), "till": _day(days[-1])}, block=spec.block,
                                       required_columns=spec.time_columns, all_pages=False)
        # Rows loaded before today are another day's (a weekend session's, filed under today).
        present = checks.has_rows_for_day(result.table, days, not_loaded_before=self._start_of_day(today))
        if present and not state.published:
            log.info("%s published market=%s day=%s", state.endpoint, state.market, today)
        return replace(state, published=present)

    def _count_secids(self, state: PairState, today: date) -> PairState:
        path = datasets.get(state.endpoint).day_route(state.market)
        newest = None
        start_of_day = self._start_of_day(today)
        calendar = self.calendars.current
        for day in checks.polled_dates(calendar, state.market, today):
            # SYSTIME only when the date may hold an earlier (weekend) session's rows: it halves
            # the answer (~250 rows of secid + tradetime for eq) on every other day.
            columns = (*SECID_COLUMNS, "systime") if checks.filed_before(calendar, state.market, today, day) \
                else SECID_COLUMNS
            result = self.client.get_block(path, {"date": _day(day), "latest": 1}, required_columns=SECID_COLUMNS,
                                           columns=columns, all_pages=True)
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
        state = daily.observe(state, today, interval, count)  # carried over to the next day
        return replace(state, secids_interval=interval, secids=count, secids_day=today)

    def _start_of_day(self, day: date) -> float:
        return datetime.combine(day, datetime.min.time(), tzinfo=self.clock.now().tzinfo).timestamp()

    def _ensure_prev_day_counts(self, state: PairState, today: date) -> PairState:
        """Distinct secids per interval of the previous trading day: today's newest interval
        is compared with the SAME interval of that day (§11). Carried over from what this
        exporter saw that day (exporter/daily.py); only when that is missing is the day read,
        as a stream in the background: no poll (and no `/-/ready`) waits for it, and the
        coverage series stay NaN until it lands."""
        prev = checks.comparison_day(self.calendars.current, state.market, today)
        if prev is None:
            # No earlier day of the same kind (e.g. the first weekend session): nothing to compare.
            return replace(state, prev_day=None, prev_day_max=None, prev_day_counts=None)
        if state.prev_day == prev and state.prev_day_counts is not None:
            return state
        counts = daily.carried(state, prev, today)
        if counts is not None:
            state = daily.with_prev_day(state, prev, counts)
            log.info("previous day %s market=%s day=%s intervals=%d max_secids=%d source=observed", state.endpoint,
                     state.market, prev, len(counts), state.prev_day_max)
            return state
        pair = state.pair
        self.background.start((*pair, prev), lambda: self._download_prev_day(pair, prev))
        return replace(state, prev_day=None, prev_day_max=None, prev_day_counts=None)

    def _download_prev_day(self, pair: tuple[str, str], prev: date) -> None:
        """The background read of `_ensure_prev_day_counts`; lands in the pair's state under
        its lock (never between a poll's read and write of the state)."""
        market, endpoint = pair
        path = datasets.get(endpoint).day_route(market)
        try:
            counts = daily.stream_interval_counts(self.client, path, self.calendars.current, market, prev,
                                                  pace=self.background.pace)
        except IssError as exc:
            with self._pair_locks[pair]:  # counted with the pair's errors (the pair stays up)
                self.store.put(self.store.get(pair).with_error(exc.reason), self.clock.timestamp())
            raise  # logged; tried again by a later poll (daily.RETRY_SECONDS)
        with self._pair_locks[pair]:
            state = self.store.get(pair)
            if state.day is None or checks.comparison_day(self.calendars.current, market, state.day) != prev:
                return  # the day moved on meanwhile
            state = daily.with_prev_day(state, prev, counts)
            self.store.put(state, self.clock.timestamp())
        log.info("previous day %s market=%s day=%s intervals=%d max_secids=%d source=download", endpoint, market,
                 prev, len(counts), state.prev_day_max)

    def wait_background(self, timeout: float | None = 30.0) -> None:
        """Wait for the background previous-day reads (tests and simulations)."""
        self.background.drain(timeout)

    @staticmethod
    def _checked(check, *args):
        """Run a pure check on ISS rows; rows it cannot interpret at all are a parse error."""
        try:
            return check(*args)
        except checks.RowsError as exc:
            raise IssError("parse", str(exc)) from exc

    def probe_for(self, market: str, endpoint: str, today: date) -> str:
        return self.probes.probe_for(market, endpoint, today)  # exporter/probes.py
