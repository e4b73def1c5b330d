"""Series derived from a pair's state, computed once per change, not on every scrape.

A pair's holes (missing buckets, their runs, one series per missing bucket) change only
when a poll lands (a new `PairState`), the calendar changes, or time crosses a known
moment: a bucket's grace running out (it becomes due) or a hole leaving the recent window.
`HolesCache.view()` keeps the last view per pair with the moment it stops being valid,
so a scrape between those moments only looks the view up (issue 16.5: at 15 s scrapes,
recomputing every pair's holes on every scrape was most of the exporter's CPU).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import checks

MAX_MISSING_SERIES = 200  # per pair; a whole stopped day is ~170 buckets


@dataclass(frozen=True)
class HolesView:
    missing: int = 0
    recent: int = 0
    runs: tuple[tuple[str, int], ...] = ()        # recent runs: (first bucket "HH:MM", buckets)
    each: tuple[tuple[str, float], ...] = ()      # last MAX_MISSING_SERIES holes: ("HH:MM", bucket end)


EMPTY = HolesView()


@dataclass(frozen=True)
class _Entry:
    state: object
    calendar: object
    computed_ts: float
    valid_until: float
    view: HolesView


def compute(calendar, state, now: datetime, grace: float, window: float) -> tuple[HolesView, float]:
    """(the holes of `state` at `now`, the last moment they hold without a new state)."""
    now_ts = now.timestamp()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo).timestamp()
    midnight -= 1e-3  # the new day's first moment is another day
    if not (state.polled and state.day == now.date()):
        return EMPTY, midnight
    expected = calendar.expected_buckets(state.market, now.date())
    due = [end for end in expected if end.timestamp() + grace < now_ts]
    valid_until = midnight
    if len(due) < len(expected):
        valid_until = min(valid_until, expected[len(due)].timestamp() + grace)  # due just after this
    runs = checks.missing_runs(due, state.seen_buckets)
    holes = [bucket for run in runs for bucket in run]
    recent_since = now_ts - grace - window
    recent = [hole for hole in holes if hole.timestamp() >= recent_since]
    if recent:
        valid_until = min(valid_until, recent[0].timestamp() + grace + window)  # leaves the window just after
    view = HolesView(
        missing=len(holes), recent=len(recent),
        runs=tuple((run[0].strftime("%H:%M"), len(run)) for run in runs if run[-1].timestamp() >= recent_since),
        each=tuple((bucket.strftime("%H:%M"), bucket.timestamp()) for bucket in holes[-MAX_MISSING_SERIES:]))
    return view, valid_until


class HolesCache:
    """The last HolesView per pair; safe for concurrent scrapes (a stale race only recomputes)."""

    def __init__(self, grace: float, window: float):
        self.grace = grace
        self.window = window
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()
        self.computed = 0  # views computed (tests: scrapes between changes compute none)

    def view(self, calendar, state, now: datetime) -> HolesView:
        now_ts = now.timestamp()
        entry = self._entries.get(state.pair)
        if (entry is not None and entry.state is state and entry.calendar is calendar
                and entry.computed_ts <= now_ts <= entry.valid_until):
            return entry.view
        view, valid_until = compute(calendar, state, now, self.grace, self.window)
        with self._lock:
            self._entries[state.pair] = _Entry(state, calendar, now_ts, valid_until, view)
            self.computed += 1
        return view
