"""The simulated trading day both strategies face: same sandbox data, same faults, same times."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from exporter.calendar import CalendarStore
from exporter.clock import MSK, Clock
from sandbox.iss import SandboxIss
from sandbox.issdata import DataSource

REPO = Path(__file__).resolve().parents[1]
CALENDAR = REPO / "calendar.yml"
DAY = date(2026, 11, 25)              # a Wednesday, a working day for every market in calendar.yml
SEED = 1
DAY_START = datetime(2026, 11, 25, 6, 55, tzinfo=MSK)
DAY_END = datetime(2026, 11, 25, 23, 58, tzinfo=MSK)

# Production defaults of the exporter (config.py) and of the alerting pipeline.
PUBLISH_OFFSET = 20.0
PUBLISH_GRACE = 120.0
MISSING_WINDOW = 1800.0               # poll.missing_window_seconds (algopack_missing_intervals_recent)
POLL_INTERVAL = 60.0
DELAY_THRESHOLD = 600.0
SCRAPE_INTERVAL = 15.0
GROUP_WAIT = 30.0
GROUP_INTERVAL = 60.0
REPEAT_INTERVAL = 4 * 3600.0
# `for:` of the modelled rules (prometheus/rules/algopack.yml); absent = no `for:`.
RULE_HOLDS = {"AlgopackDataDelayed": 60.0}
# The AlgopackMissingIntervals description lists at most this many holes (sorted), then "…".
LISTED_HOLES = 12

DELAY_PROFILE = {"base": [5, 15], "late": [30, 90], "late_share": 0.1, "never_share": 0.02}

# Holes the sandbox never publishes for the probe (besides the profile's random "never" buckets).
DROPPED = [("eq", "tradestats", ["11:15"]), ("fx", "obstats", ["13:40"]), ("fo", "tradestats", ["15:20"])]


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hh, mm, ss, tzinfo=MSK)


@dataclass(frozen=True)
class Event:
    moment: datetime
    label: str
    apply: Callable[[SandboxIss], None]


def events() -> list[Event]:
    """Feed stops: set at `moment`, resumed (backlog published late) at the second moment."""
    out = []
    for market, dataset, stop, resume in (("eq", "orderstats", at(12, 2), at(12, 40)),
                                          ("fo", "obstats", at(16, 1), at(16, 21)),
                                          ("fx", "tradestats", at(9, 31), at(9, 47))):
        out.append(Event(stop, f"stop {market}/{dataset}",
                         lambda iss, m=market, d=dataset: iss.faults.set("stop", market=m, dataset=d)))
        out.append(Event(resume, f"resume {market}/{dataset}",
                         lambda iss, m=market, d=dataset: iss.faults.clear("stop", m, d, scoped=True)))
    return sorted(out, key=lambda e: e.moment)


_DATA: dict[float, DataSource] = {}


def shared_data(scale: float = 1.0) -> DataSource:
    """One generated data set per scale for every sandbox of the run (generation is the slow part)."""
    if scale not in _DATA:
        store = CalendarStore(str(CALENDAR))
        _DATA[scale] = DataSource(lambda: store.current, scale=scale, seed=SEED)
    return _DATA[scale]


def make_sandbox(clock: Clock, scale: float = 1.0, with_faults: bool = True) -> SandboxIss:
    iss = SandboxIss(str(CALENDAR), clock, auth="none", scale=scale, seed=SEED, port=0)
    iss.data = shared_data(scale)
    if with_faults:
        iss.faults.set("delay_profile", **DELAY_PROFILE)
        for market, dataset, intervals in DROPPED:
            iss.faults.set("drop_intervals", market=market, dataset=dataset, intervals=intervals, scope="probe")
    return iss.start()


# Pairs judged for holes by both strategies (the old tool had no FO orderstats; futoi is lag-only).
HOLE_PAIRS = [("eq", "tradestats"), ("eq", "orderstats"), ("eq", "obstats"),
              ("fx", "tradestats"), ("fx", "orderstats"), ("fx", "obstats"),
              ("fo", "tradestats"), ("fo", "obstats")]


def probe_truth(iss: SandboxIss, market: str, dataset: str, day: date = DAY) -> dict[float, float | None]:
    """Bucket end -> publish moment of the probe's row (None = never), from the sandbox's own plan.

    Call after the day is over (stop windows closed), with the faults that were in force.
    """
    frame = iss.data.frame(market, dataset, day)
    plan = iss.faults.plan(market, dataset, day)
    out: dict[float, float | None] = {}
    for bucket in frame.buckets:
        moment = plan.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms, bucket.base_publish_ts)
        if bucket.tradetime[:5] in plan.drop_probe:
            moment = None
        out[bucket.end_ts] = moment
    return out


def step_times(start: datetime, end: datetime, step: float) -> list[float]:
    n = int((end - start).total_seconds() // step)
    return [(start + timedelta(seconds=i * step)).timestamp() for i in range(n + 1)]


def run_stack_until(stack, end: datetime, events: Iterable[Event] = (), on_step: Callable[[], None] | None = None,
                    slack: float = 180.0, what: str = "") -> None:
    """Drive a LocalStack's virtual time to `end`, applying the scenario's stop/resume events at
    their moments; every component must stay alive, and `slack` real seconds bound the wait."""
    events = list(events)
    deadline = time.monotonic() + max(0.0, (end - stack.virtual_now()).total_seconds()) / stack.clock_speed + slack
    while stack.virtual_now() < end:
        if events and stack.virtual_now() >= events[0].moment:
            event = events.pop(0)
            market, dataset = event.label.split(" ", 1)[1].split("/")
            if event.label.startswith("stop"):
                stack.iss_fault("stop", market=market, dataset=dataset)
            else:
                stack.iss_clear_faults("stop", market=market, dataset=dataset)
        if on_step is not None:
            on_step()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'virtual time'} did not reach {end:%H:%M}")
        dead = [name for name, ok in stack.alive().items() if not ok]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} died{' in ' + what if what else ''}:\n" + stack.log_tail(dead[0]))
        time.sleep(0.05)
