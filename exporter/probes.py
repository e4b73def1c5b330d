"""The probe instrument of a pair: configured, or `auto` (FO: the most liquid contract).

`auto` is chosen once a day by the previous trading day's summed traded value (`val` of the
all-instruments tradestats day, read page by page: exporter/daily.py), kept in the
StateStore (persisted with it, so a restart the same day reads nothing), and chosen again
from today's rows (`latest=1`) when that contract has no row today (it expired).

When an earlier choice exists (yesterday's, or persisted), the day's choice is read in the
background and the earlier contract is polled meanwhile, so the first poll (and
`/-/ready`) never waits for a whole day of tradestats; once the choice lands, the next poll
switches (and reads the new contract's day from its start).

With no earlier choice at all (a cold start), a provisional choice is made from today's
newest interval (`latest=1`, by="latest": one small request, once a bucket of today has
ended) and refined in the background from the previous day's traded value (by="prev-day";
the next poll switches when it differs). Only when today has no row yet (before the
session's first bucket is out) is the previous day read on the poll path; `/-/ready` does
not wait for that case, as a pair is polled at start only once its session has begun.
Background reads let the polls go first (daily.Background.pace).
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta

from . import daily, datasets
from .iss import IssError
from .rhythm import DEADLINE_MARGIN
from .state import PairState

log = logging.getLogger("exporter.probes")

# While the `auto` probe has no row today, look at today's rows for a new one at most this often.
PROBE_RECHECK_SECONDS = 300.0


class Probes:
    """Probe choice for the poller; shares its client, calendars, clock, store and rhythm."""

    def __init__(self, config, client, calendars, clock, store, params, background: daily.Background | None = None):
        self.config = config
        self.client = client
        self.calendars = calendars
        self.clock = clock
        self.store = store
        self.params = params
        self._lock = threading.Lock()
        self.background = background
        # Secids of today's newest interval seen by a provisional choice (market, day) -> set.
        self._trading: dict[tuple[str, date], frozenset[str]] = {}

    def probe_for(self, market: str, endpoint: str, today: date) -> str:
        market_cfg = self.config.markets[market]
        setting = datasets.get(endpoint).probe_setting
        if setting != "probe":
            return getattr(market_cfg, setting)   # e.g. FUTOI's ticker
        if market_cfg.probe != "auto":
            return market_cfg.probe
        return self.auto_probe(market, today)

    def auto_probe(self, market: str, today: date) -> str:
        """Most liquid contract by the previous trading day's traded value; once per day
        (re-chosen from today's rows when that contract has none: `rechoose`)."""
        choice = self.store.probe_choice(market, today)
        if choice is not None:
            if choice.by == "latest" and self.background is not None:
                self._refine_later(market, today)  # provisional (a failed refinement or a restart)
            return choice.secid
        if self.background is not None:
            earlier = self.store.last_probe(market)
            if earlier is not None:
                self.background.start(("probe", market, today),
                                      lambda: self._choose(market, today, pace=self.background.pace))
                return earlier
            provisional = self._provisional(market, today)
            if provisional:
                return provisional
        return self._choose(market, today)

    def _provisional(self, market: str, today: date) -> str | None:
        """Cold start: the most liquid contract of today's newest interval (one `latest=1`
        read), refined in the background; None when today can have no row yet."""
        now = self.clock.now()
        if not any(end <= now for end in self.calendars.current.expected_buckets(market, today)):
            return None
        path = datasets.liquidity().day_route(market)
        with self._lock:  # the market's other pairs wait for this one request, then use its answer
            cached = self.store.probe(market, today)
            if cached:
                return cached
            totals = daily.stream_value_totals(self.client, path, {"date": today.isoformat(), "latest": 1})
            secid = totals.best()
            if not secid:
                return None
            self._trading = {(market, today): frozenset(totals.totals)}
            self.store.set_probe(market, today, secid, by="latest")
        log.info("probe chosen provisionally market=%s secid=%s by=latest-interval-val day=%s", market, secid, today)
        self._refine_later(market, today)
        return secid

    def _refine_later(self, market: str, today: date) -> None:
        self.background.start(("probe", market, today), lambda: self._refine(market, today))

    def _refine(self, market: str, today: date) -> None:
        """The background half of `_provisional`: the previous day's traded value decides."""
        path = datasets.liquidity().day_route(market)
        prev = self.calendars.current.previous_working_day(today, market)
        secid = daily.stream_most_liquid(self.client, path, {"date": prev.isoformat()}, pace=self.background.pace)
        with self._lock:
            choice = self.store.probe_choice(market, today)
            if choice is None or choice.by != "latest":
                return  # chosen otherwise meanwhile
            if not secid:
                log.warning("probe kept market=%s secid=%s reason=no-rows-prev-day day=%s", market, choice.secid, prev)
                self.store.set_probe(market, today, choice.secid, by="today")
                return
            trading = self._trading.get((market, today))
            if trading is not None and secid not in trading and secid != choice.secid:
                # Yesterday's leader has no row in today's newest interval (it expired): the
                # choice from today's rows stands, as `rechoose` would decide.
                log.warning("probe re-chosen market=%s old=%s new=%s reason=no-rows-today", market, secid,
                            choice.secid)
                self.store.set_probe(market, today, choice.secid, by="today")
                return
            log.info("probe chosen market=%s secid=%s by=tradestats-val day=%s provisional=%s", market, secid, prev,
                     choice.secid)
            self.store.set_probe(market, today, secid, by="prev-day")

    def _choose(self, market: str, today: date, pace=None) -> str:
        with self._lock:
            cached = self.store.probe(market, today)
            if cached:
                return cached
            path = datasets.liquidity().day_route(market)
            prev = self.calendars.current.previous_working_day(today, market)
            secid = None
            by = "prev-day"
            for day, params in ((prev, {"date": prev.isoformat()}), (today, {"date": today.isoformat(), "latest": 1})):
                secid = daily.stream_most_liquid(self.client, path, params, pace=pace)  # page by page
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

    def has_no_rows_today(self, state: PairState, now: datetime) -> bool:
        """An `auto` probe chosen by yesterday's value with no row of today although the
        first bucket of today is at its missing deadline (the rhythm's last poll before it)."""
        spec = datasets.get(state.endpoint)
        if not spec.intraday or spec.probe_setting != "probe" or self.config.markets[state.market].probe != "auto":
            return False
        choice = self.store.probe_choice(state.market, now.date())
        if choice is None or choice.by != "prev-day" or state.seen_buckets:
            return False
        if choice.checked_ts is not None and now.timestamp() - choice.checked_ts < PROBE_RECHECK_SECONDS:
            return False
        soon = now + DEADLINE_MARGIN + timedelta(seconds=1)
        return bool(self.calendars.current.due_buckets(state.market, soon, self.params.grace.total_seconds()))

    def rechoose(self, market: str, today: date, old: str | None) -> bool:
        """Choose the probe again from today's rows (`latest=1`); True when it changed."""
        with self._lock:
            choice = self.store.probe_choice(market, today)
            if choice is None or choice.by != "prev-day" or choice.secid != old:
                return choice is not None and choice.secid != old  # another pair re-chose already
            path = datasets.liquidity().day_route(market)
            secid = daily.stream_most_liquid(self.client, path, {"date": today.isoformat(), "latest": 1})
            if not secid or secid == old:
                # Nobody traded yet (or the old one leads after all): ask again a while later.
                self.store.set_probe(market, today, choice.secid, by="prev-day", checked_ts=self.clock.timestamp())
                return False
            log.warning("probe re-chosen market=%s old=%s new=%s reason=no-rows-today", market, old, secid)
            self.store.set_probe(market, today, secid, by="today")
            return True
