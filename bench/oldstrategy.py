"""A faithful model of the system we replace (the "old strategy"), driven in virtual time.

What it does, per the issue and the seed's src/monitor.py:
- jobs every `interval` (60 s or 300 s) at :30 s, inside each market's session windows;
- per job and market: the probe's tradestats/orderstats/obstats of today (no FO orderstats)
  with `from=till=today`, one page of `fo/tradestats.json?iss.only=data` to pick the liquid
  contract; for FO also every page of today's and yesterday's `fo/obstats.json` and the RI
  futoi of today; hi2 of the three markets once at 19:02;
- a bucket is missing the moment its end has passed and today's rows lack it (no grace);
  each missing bucket is reported once (one message per pair and job) and never re-checked;
  no resolve message; the lag check (now - newest row's bucket end > DELAY) only for futoi,
  a message on every job while it holds.

Requests go over HTTP to the sandbox ISS. A request repeated while the data set it reads is
unchanged (same path and parameters, same published buckets: e.g. yesterday's obstats pages,
or the 1-minute jobs between two buckets) is answered from a replay table with the size the
sandbox counted the first time, instead of being sent again: the byte-identical response
would cost minutes of loopback JSON per simulated day. `Load.replayed` says how many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import requests

from exporter.calendar import Calendar
from exporter.clock import MSK, ManualClock
from sandbox.iss import SandboxIss

from .scoring import Message, Pair

ALGOPACK = "/iss/datashop/algopack/{market}/{dataset}"
PROBES = {"eq": "SBER", "fx": "CNYRUB_TOM"}
ENDPOINTS = {"eq": ("tradestats", "orderstats", "obstats"), "fx": ("tradestats", "orderstats", "obstats"),
             "fo": ("tradestats", "obstats")}
HI2_AT = (19, 2, 0)


def job_times(calendar: Calendar, market: str, day: date, interval: float, phase: float = 30.0) -> list[float]:
    """Job moments of one market: every `interval` at `phase` s past the grid, inside its sessions.

    A job runs while start < t <= end + 60 s (the seed's windows end at the session end + 50 s,
    so its last bucket is checked); the grid is aligned to midnight, so a 300 s job runs 30 s
    after each bucket end.
    """
    out: list[float] = []
    midnight = datetime(day.year, day.month, day.day, tzinfo=MSK).timestamp()
    for session in calendar.sessions(market, day):
        start, end = session.start.timestamp(), session.end.timestamp() + 60
        k = int((start - midnight - phase) // interval) + 1
        t = midnight + k * interval + phase
        while t <= end:
            if t > start:
                out.append(t)
            t += interval
    return out


def newly_missing(expected: list[float], seen: set[float], now: float, reported: set[float]) -> list[float]:
    """Buckets whose end has passed, absent from today's rows, not reported before (no grace)."""
    return [end for end in expected if end < now and end not in seen and end not in reported]


def futoi_lagging(now: float, newest_bucket: float | None, delay_threshold: float) -> bool:
    return newest_bucket is not None and now - newest_bucket > delay_threshold


@dataclass
class Load:
    requests: int = 0
    bytes: int = 0
    replayed: int = 0
    replayed_bytes: int = 0
    by_route: dict[str, list[int]] = field(default_factory=dict)  # route -> [requests, bytes]

    def add(self, route: str, size: int, replayed: bool) -> None:
        self.requests += 1
        self.bytes += size
        if replayed:
            self.replayed += 1
            self.replayed_bytes += size
        row = self.by_route.setdefault(route, [0, 0])
        row[0] += 1
        row[1] += size


class OldStrategy:
    def __init__(self, iss: SandboxIss, clock: ManualClock, interval: float, delay_threshold: float = 600.0,
                 replay: dict | None = None):
        self.iss = iss
        self.clock = clock
        self.interval = interval
        self.delay_threshold = delay_threshold
        self.http = requests.Session()
        self.load = Load()
        self.messages: list[Message] = []
        self.reported: dict[Pair, set[float]] = {}
        self._replay: dict[tuple, tuple[int, object]] = replay if replay is not None else {}

    # ---- HTTP with replay -----------------------------------------------------------

    def _signature(self, market: str, dataset: str, day: date) -> tuple:
        segments = self.iss.published_segments(market, dataset, day, self.clock.timestamp())
        return tuple((len(rows), systime) for rows, systime in segments)

    def get(self, route: str, path: str, params: dict, sig: tuple[str, str, date],
            reduce: Callable[[dict], object]) -> object:
        key = (path, tuple(sorted(params.items())), sig, self._signature(*sig))
        hit = self._replay.get(key)
        if hit is not None:
            self.load.add(route, hit[0], True)
            return hit[1]
        response = self.http.get(self.iss.url + path, params=params, timeout=30)
        response.raise_for_status()
        size = len(response.content)
        value = reduce(response.json())
        self._replay[key] = (size, value)
        self.load.add(route, size, False)
        return value

    # ---- reducers (what the old tool read from each answer) ----------------------------

    @staticmethod
    def _bucket_ends(body: dict, block: str = "data") -> frozenset[float]:
        data = body[block]
        cols = data["columns"]
        i_date, i_time = cols.index("tradedate"), cols.index("tradetime")
        return frozenset(datetime.fromisoformat(f"{row[i_date]}T{row[i_time]}").replace(tzinfo=MSK).timestamp()
                         for row in data["data"])

    @staticmethod
    def _liquid(body: dict) -> str | None:
        data = body["data"]
        cols = data["columns"]
        i_sec, i_val = cols.index("secid"), cols.index("val")
        totals: dict[str, float] = {}
        for row in data["data"]:
            totals[row[i_sec]] = totals.get(row[i_sec], 0.0) + float(row[i_val] or 0)
        return max(totals, key=totals.get) if totals else None

    @staticmethod
    def _row_count(body: dict) -> int:
        return len(body["data"]["data"])

    # ---- one job ----------------------------------------------------------------------

    def job(self, market: str, day: date, expected: dict[Pair, list[float]]) -> None:
        now = self.clock.timestamp()
        today = day.isoformat()
        if market == "fo":
            probe = self.get("fo/tradestats.json (liquid)", ALGOPACK.format(market="fo", dataset="tradestats") + ".json",
                             {"iss.only": "data"}, ("fo", "tradestats", day), self._liquid)
        else:
            probe = PROBES[market]
        for endpoint in ENDPOINTS[market]:
            pair = (market, endpoint)
            path = ALGOPACK.format(market=market, dataset=endpoint) + f"/{probe}.json"
            seen = self.get(f"{market}/{endpoint}/SECID.json", path, {"from": today, "till": today},
                            (market, endpoint, day), self._bucket_ends)
            reported = self.reported.setdefault(pair, set())
            new = newly_missing(expected[pair], set(seen), now, reported)
            if new:
                reported.update(new)
                self.messages.append(Message(now, False, "old:missing", {pair: frozenset(new)}))
        if market == "fo":
            yesterday = self.iss.calendar.previous_working_day(day, "fo")
            for label, which, params in (("today", day, {}), ("yesterday", yesterday, {"date": yesterday.isoformat()})):
                start = 0
                while True:
                    rows = self.get(f"fo/obstats.json all pages ({label})",
                                    ALGOPACK.format(market="fo", dataset="obstats") + ".json",
                                    {**params, "start": start}, ("fo", "obstats", which), self._row_count)
                    if not rows:
                        break
                    start += 1000
            seen = self.get("futoi/securities/ri.json", "/iss/analyticalproducts/futoi/securities/ri.json",
                            {"from": today, "till": today, "iss.only": "futoi", "reversed": 1},
                            ("fo", "futoi", day), lambda body: self._bucket_ends(body, "futoi"))
            newest = max(seen) if seen else None
            if futoi_lagging(now, newest, self.delay_threshold):
                due = frozenset(t for t in expected[("fo", "futoi")] if t < now and (newest is None or t > newest))
                self.messages.append(Message(now, False, "old:futoi-lag", {("fo", "futoi"): due}))

    def hi2(self, day: date) -> None:
        for market in ("eq", "fx", "fo"):
            self.get(f"{market}/hi2.json", ALGOPACK.format(market=market, dataset="hi2") + ".json", {},
                     (market, "hi2", day), self._row_count)

    def run_day(self, day: date, events: list, end: datetime) -> None:
        calendar = self.iss.calendar
        expected = {}
        for market, endpoints in ENDPOINTS.items():
            for endpoint in endpoints:
                expected[(market, endpoint)] = [b.timestamp() for b in calendar.expected_buckets(market, day)]
        expected[("fo", "futoi")] = [b.timestamp() for b in calendar.expected_buckets("fo", day)]
        plan: list[tuple[float, int, str]] = []
        for market in ENDPOINTS:
            plan.extend((t, 1, market) for t in job_times(calendar, market, day, self.interval))
        hi2_ts = datetime(day.year, day.month, day.day, *HI2_AT, tzinfo=MSK).timestamp()
        plan.append((hi2_ts, 1, "hi2"))
        plan.extend((e.moment.timestamp(), 0, str(i)) for i, e in enumerate(events))
        for moment, kind, what in sorted(plan):
            if moment > end.timestamp():
                break
            self.clock.set(datetime.fromtimestamp(moment, MSK))
            if kind == 0:
                events[int(what)].apply(self.iss)
            elif what == "hi2":
                self.hi2(day)
            else:
                self.job(what, day, expected)
        self.clock.set(end)

    def close(self) -> None:
        self.http.close()

