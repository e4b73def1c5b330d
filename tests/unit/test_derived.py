"""Holes derived once per change (exporter/derived.py): the cached view equals the
per-scrape computation at every moment, and scrapes between changes compute nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from exporter import checks, derived
from exporter.calendar import parse_calendar_text
from exporter.clock import MSK
from exporter.state import PairState
from tests.calendars import calendar_text

GRACE, WINDOW = 120.0, 900.0
CAL = parse_calendar_text(calendar_text(""))


def per_scrape(calendar, state, now: datetime) -> derived.HolesView:
    """The collector's computation before the cache (the reference)."""
    runs = []
    if state.polled and state.day == now.date():
        runs = checks.missing_runs(calendar.due_buckets(state.market, now, GRACE), state.seen_buckets)
    holes = [b for run in runs for b in run]
    since = now.timestamp() - GRACE - WINDOW
    return derived.HolesView(
        len(holes), sum(1 for h in holes if h.timestamp() >= since),
        tuple((run[0].strftime("%H:%M"), len(run)) for run in runs if run[-1].timestamp() >= since),
        tuple((b.strftime("%H:%M"), b.timestamp()) for b in holes[-derived.MAX_MISSING_SERIES:]))


def test_cached_holes_equal_the_per_scrape_ones_and_are_computed_once_per_change():
    day = datetime(2026, 11, 25, tzinfo=MSK).date()
    expected = CAL.expected_buckets("eq", day)
    seen = frozenset(b.timestamp() for i, b in enumerate(expected[:40]) if i not in (5, 6, 20))
    state = PairState("eq", "tradestats", day=day, polled=True, seen_buckets=seen)  # stopped after 40 buckets
    cache = derived.HolesCache(GRACE, WINDOW)
    now = datetime(2026, 11, 25, 9, 50, tzinfo=MSK)
    scrapes = 0
    while now < datetime(2026, 11, 26, 0, 10, tzinfo=MSK):
        assert cache.view(CAL, state, now) == per_scrape(CAL, state, now), now
        scrapes += 1
        now += timedelta(seconds=15)
    # at most: each bucket coming due, each hole leaving the recent window, midnight (+ the first)
    assert cache.computed <= 2 * len(expected) + 3 and scrapes > 20 * cache.computed
    before = cache.computed
    newer = replace(state, seen_buckets=state.seen_buckets | {expected[5].timestamp()})
    moment = datetime(2026, 11, 25, 12, 0, 7, tzinfo=MSK)
    assert cache.view(CAL, newer, moment) == per_scrape(CAL, newer, moment)  # a new state: recomputed
    assert cache.computed == before + 1
    earlier = moment - timedelta(hours=1)  # a clock that went back: recomputed, never a stale view
    assert cache.view(CAL, newer, earlier) == per_scrape(CAL, newer, earlier)
