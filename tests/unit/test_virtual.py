"""exporter.virtual: the virtual-time driver jumps from planned poll to planned poll."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import SimpleNamespace

from exporter.clock import MSK, ManualClock
from exporter.virtual import VirtualDriver

START = datetime(2026, 11, 25, 10, 0, tzinfo=MSK)


@dataclass(frozen=True)
class State:
    next_poll_ts: float | None


class FakePoller:
    """Every pair is polled every `every` seconds; records (pair, virtual time) of each poll."""

    def __init__(self, app, clock, every: dict):
        self.app, self.clock, self.every = app, clock, every
        self.log: list[tuple[str, datetime]] = []
        self.background_waits = 0

    def is_due(self, pair, now):
        state = self.app.store.snapshot.pairs[pair]
        return state.next_poll_ts is None or now.timestamp() >= state.next_poll_ts - 1.0

    def poll(self, pair):
        now = self.clock.now()
        self.log.append((pair, now))
        pairs = self.app.store.snapshot.pairs
        pairs[pair] = replace(pairs[pair], next_poll_ts=now.timestamp() + self.every[pair])

    def wait_background(self):
        self.background_waits += 1


def make(every):
    clock = ManualClock(START)
    app = SimpleNamespace(store=SimpleNamespace(snapshot=SimpleNamespace(pairs={p: State(None) for p in every})))
    app.poller = FakePoller(app, clock, every)
    return VirtualDriver(app, clock), app, clock


def test_run_until_polls_at_the_planned_moments_and_stops_at_the_end():
    driver, app, clock = make({"a": 300, "b": 600})
    driver.run_until(START + timedelta(minutes=20))
    minutes = [(pair, int((at - START).total_seconds() // 60)) for pair, at in app.poller.log]
    assert minutes == [("a", 0), ("b", 0), ("a", 5), ("a", 10), ("b", 10), ("a", 15), ("a", 20), ("b", 20)]
    assert clock.now() == START + timedelta(minutes=20)
    assert driver.polls == 8 and app.poller.background_waits >= 5


def test_events_apply_at_their_moment_before_the_polls_then():
    driver, app, clock = make({"a": 600})
    seen = []

    @dataclass
    class Event:
        moment: datetime

        def apply(self, target):
            seen.append((target, clock.now(), len(app.poller.log)))

    driver.run_until(START + timedelta(minutes=12), events=[Event(START + timedelta(minutes=10)),
                                                           Event(START + timedelta(minutes=3))], target="iss")
    assert seen == [("iss", START + timedelta(minutes=3), 1), ("iss", START + timedelta(minutes=10), 1)]
    assert len(app.poller.log) == 2  # minute 0 and 10 (after the event of minute 10)


def test_nothing_planned_ends_at_the_end():
    driver, app, clock = make({})
    driver.run_until(START + timedelta(hours=1))
    assert clock.now() == START + timedelta(hours=1) and driver.polls == 0
