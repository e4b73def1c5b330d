"""The one virtual-time driver: an `ExporterApp` on a `ManualClock`, polled as the scheduler would.

Tests (tests/integration/exporter_sim.py) and the benchmark (bench/ours.py) run a trading day
in-process with it: the scheduler's only job, "call poll when the pair's next poll has come",
is done by this loop, and the clock jumps straight to the next planned poll (or event), so a
day takes as long as its polls.

    driver = VirtualDriver(app, clock)
    driver.poll_due()                      # every pair whose next poll has come
    driver.run_until(end, events=[...])    # events: objects with `.moment` and `.apply()`
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from .clock import MSK, ManualClock


class Event(Protocol):
    """Something that happens at a virtual moment (a fault switched on, a file changed)."""

    moment: datetime

    def apply(self, target: Any) -> None: ...


class VirtualDriver:
    def __init__(self, app: Any, clock: ManualClock):
        self.app = app
        self.clock = clock
        self.polls = 0
        self.poll_seconds = 0.0  # real time spent inside Poller.poll

    def poll_due(self) -> int:
        """Poll every pair whose next poll has come; returns how many were polled."""
        poller = self.app.poller
        now = self.clock.now()
        polled = 0
        for pair in self.app.store.snapshot.pairs:
            if poller.is_due(pair, now):
                started = time.perf_counter()
                poller.poll(pair)
                self.poll_seconds += time.perf_counter() - started
                polled += 1
        # Previous-day reads run in background threads (exporter/daily.py): let them land
        # before the clock moves on, so a run is as deterministic as its polls.
        poller.wait_background()
        self.polls += polled
        return polled

    def next_poll_ts(self) -> float:
        """The earliest planned poll of any pair (inf when none is planned)."""
        upcoming = [s.next_poll_ts for s in self.app.store.snapshot.pairs.values() if s.next_poll_ts]
        return min(upcoming) if upcoming else float("inf")

    def run_until(self, end: datetime, events: Iterable[Event] = (), target: Any = None) -> None:
        """Advance virtual time poll by poll up to `end`; each event's `apply(target)` runs at
        its moment, before the polls due then."""
        pending = sorted(events, key=lambda event: event.moment)
        end_ts = end.timestamp()
        self.poll_due()
        while True:
            candidates = [self.next_poll_ts()]
            if pending:
                candidates.append(pending[0].moment.timestamp())
            nxt = max(min(candidates), self.clock.timestamp())
            if nxt > end_ts:
                self.clock.set(end)
                return
            self.clock.set(datetime.fromtimestamp(nxt, MSK))
            while pending and pending[0].moment.timestamp() <= nxt:
                pending.pop(0).apply(target)
            self.poll_due()
