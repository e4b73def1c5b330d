"""Fault knobs of the sandbox ISS (see sandbox/README.md for the control API).

Two families:
- data knobs change WHEN a bucket is published (stop, slow, delay_profile, hi2_late,
  drop_intervals) or WHICH rows it has (drop_intervals scope=probe, drop_secids);
- request knobs change HOW a request is answered (http_error, hang, malformed, html,
  empty, break_paging, missing_columns, throttle, error_message, no_subscription, drip,
  redirect, gzip_bomb) and the auth knobs (expire_auth, cookie_ttl, auth_html);
- ISS-shape knobs change WHAT a published set looks like (bad_row, weekend_tradedate,
  expire, secid_daypattern; applied by sandbox/iss.py when it serves a set).

stop/slow are kept as time windows even after they are cleared, so rows published during
or after a fault keep a stable `systime` (a resumed backlog carries the resume moment).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import date, datetime

from exporter import datasets as registry
from exporter.clock import MSK, Clock

SCOPE_MARKETS = ("eq", "fx", "fo")
SCOPE_DATASETS = (*registry.names(), "calendar", "authenticate")  # at import; checks read the registry
REQUEST_KNOBS = ("http_error", "hang", "malformed", "html", "empty", "break_paging", "missing_columns",
                 "throttle", "error_message", "no_subscription", "drip", "redirect", "gzip_bomb")
DATA_KNOBS = ("stop", "slow", "delay_profile", "drop_intervals", "drop_secids", "hi2_late",
              "bad_row", "weekend_tradedate", "expire", "secid_daypattern", "latest_per_instrument")
LATEST_MODES = ("honoured", "ignored", "refused")
BAD_ROW_KINDS = ("empty_time", "null_time", "other_day", "future_systime", "off_grid")
DEFAULT_ERROR_MESSAGE = "Запрос не может быть обработан. Попробуйте повторить позже."
AUTH_KNOBS = ("expire_auth", "cookie_ttl", "auth_html")
KNOBS = DATA_KNOBS + REQUEST_KNOBS + AUTH_KNOBS


class FaultError(ValueError):
    """A bad knob name or parameter (the control API answers 400 with the message)."""


@dataclass
class Knob:
    name: str
    market: str | None
    dataset: str | None
    params: dict
    set_at: float
    remaining: int | None = None  # request knobs: answers left; None = until cleared

    def matches(self, market: str | None, dataset: str | None) -> bool:
        return (self.market is None or self.market == market) and (self.dataset is None or self.dataset == dataset)

    def to_json(self) -> dict:
        out = {"market": self.market, "dataset": self.dataset, **self.params,
               "set_at": datetime.fromtimestamp(self.set_at, MSK).isoformat()}
        if self.name in REQUEST_KNOBS:
            out["remaining"] = self.remaining
        return out


@dataclass
class Window:
    """A stop (seconds=None) or slow window; until=None while the knob is active."""

    source: str
    market: str | None
    dataset: str | None
    start: float
    until: float | None = None
    seconds: float | None = None

    def matches(self, market: str, dataset: str) -> bool:
        return (self.market is None or self.market == market) and (self.dataset is None or self.dataset == dataset)

    def to_json(self) -> dict:
        def iso(ts: float | None) -> str | None:
            return None if ts is None else datetime.fromtimestamp(ts, MSK).isoformat()
        return {"knob": self.source, "market": self.market, "dataset": self.dataset,
                "from": iso(self.start), "until": iso(self.until), "seconds": self.seconds}


@dataclass
class DelayProfile:
    base: tuple[float, float] = (5.0, 15.0)
    late: tuple[float, float] = (30.0, 90.0)
    late_share: float = 0.0
    never_share: float = 0.0

    def delay(self, u_position: float, u_kind: float) -> float | None:
        if u_kind < self.never_share:
            return None
        low, high = self.late if u_kind < self.never_share + self.late_share else self.base
        return float(round(low + u_position * (high - low)))


@dataclass
class PublishPlan:
    """Knob state for one (market, dataset, day), copied at request time (no locks after)."""

    profile: DelayProfile
    stops: list[Window]
    slows: list[Window]
    drop_all: set[str]
    drop_probe: set[str]
    drop_secids: tuple[int, float] | None  # (count, since_ts)
    bad_rows: list[tuple[str, str | None, float]] = field(default_factory=list)  # (kind, secid, set_at)
    expire: tuple[str, str | None, date] | None = None  # (secid, successor or None = next expiry, from day)
    daypattern: bool = False
    weekend_next: bool = False
    _cache: dict = field(default_factory=dict)

    def publish_ts(self, end_ts: float, tradetime: str, uniforms: tuple[float, float],
                   fixed_ts: float | None = None) -> float | None:
        """Effective publish moment of a bucket; None = not published (held or never)."""
        if tradetime[:5] in self.drop_all:
            return None
        if fixed_ts is not None:
            moment = fixed_ts
        else:
            delay = self.profile.delay(*uniforms)
            if delay is None:
                return None
            moment = end_ts + delay
        for window in self.slows:
            if window.start <= moment and (window.until is None or moment < window.until):
                moment += window.seconds or 0.0
        for window in self.stops:
            if moment > window.start:
                if window.until is None:
                    return None
                if moment <= window.until:
                    moment = window.until
        return moment


def _check_scope(market: object, dataset: object) -> tuple[str | None, str | None]:
    if market is not None and market not in SCOPE_MARKETS:
        raise FaultError(f"market must be one of {', '.join(SCOPE_MARKETS)} (got {market!r})")
    scope = (*registry.names(), "calendar", "authenticate")
    if dataset is not None and dataset not in scope:
        raise FaultError(f"dataset must be one of {', '.join(scope)} (got {dataset!r})")
    return market, dataset  # type: ignore[return-value]


def _pair(value: object, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise FaultError(f"{name} must be [low, high] seconds") from exc
    if low < 0 or high < low:
        raise FaultError(f"{name} must satisfy 0 <= low <= high")
    return low, high


class Faults:
    """The knob object. Thread-safe; all moments are sandbox-clock Unix times."""

    def __init__(self, clock: Clock, default_delay: tuple[float, float] = (5.0, 15.0)):
        self._clock = clock
        self.default_delay = default_delay
        self._lock = threading.RLock()
        self._active: dict[str, dict[tuple, Knob]] = {}
        self._windows: list[Window] = []
        self.auth_generation = 0  # expire_auth bumps it; cookies of older generations are invalid

    # ----- control ---------------------------------------------------------------------

    def now_ts(self) -> float:
        return self._clock.now().timestamp()

    def moment(self, value: object) -> float:
        """'HH:MM[:SS]' (sandbox today), ISO-8601, or None (= now) -> Unix time."""
        if value is None:
            return self.now_ts()
        if not isinstance(value, str):
            raise FaultError(f"moment must be 'HH:MM[:SS]' or ISO-8601 (got {value!r})")
        try:
            if len(value) <= 8 and ":" in value:
                parts = [int(p) for p in value.split(":")] + [0]
                today = self._clock.now().date()
                moment = datetime(today.year, today.month, today.day, parts[0], parts[1], parts[2], tzinfo=MSK)
            else:
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=MSK)
        except ValueError as exc:
            raise FaultError(f"bad moment {value!r}") from exc
        return moment.timestamp()

    def update(self, body: object) -> None:
        """Apply a control-API body: {"knob": {params}} or {"knob": [{params}, ...]}."""
        if not isinstance(body, dict):
            raise FaultError("body must be a JSON object {knob: params}")
        for name in body:
            if name not in KNOBS:
                raise FaultError(f"unknown knob {name!r}; known: {', '.join(KNOBS)}")
        for name, value in body.items():
            items = value if isinstance(value, list) else [value]
            for params in items:
                if params is None:
                    params = {}
                if not isinstance(params, dict):
                    raise FaultError(f"{name}: params must be an object")
                self.set(name, **params)

    def set(self, name: str, market: str | None = None, dataset: str | None = None, **params) -> None:
        """Switch a knob on (replacing one with the same scope)."""
        if name not in KNOBS:
            raise FaultError(f"unknown knob {name!r}; known: {', '.join(KNOBS)}")
        market, dataset = _check_scope(market, dataset)
        now = self.now_ts()
        count = params.pop("count", None)
        if count is not None and (not isinstance(count, int) or count < 1):
            raise FaultError(f"{name}: count must be a positive integer")
        with self._lock:
            if name == "stop":
                at = self.moment(params.pop("at", None))
                self._end_windows("stop", market, dataset, now)
                self._windows.append(Window("stop", market, dataset, at))
                params["at"] = datetime.fromtimestamp(at, MSK).isoformat()
            elif name == "slow":
                seconds = float(params.get("seconds", 600))
                since = self.moment(params.pop("since", None))
                self._end_windows("slow", market, dataset, now)
                self._windows.append(Window("slow", market, dataset, since, seconds=seconds))
                params["seconds"] = seconds
            elif name == "hi2_late":
                dataset = "hi2"
                self._end_windows("hi2_late", market, dataset, now)
                if params.get("seconds") is not None:
                    self._windows.append(Window("hi2_late", market, dataset, now,
                                                seconds=float(params["seconds"])))
                else:
                    self._windows.append(Window("hi2_late", market, dataset, now))
            elif name == "delay_profile":
                profile = self._profile(params)
                params = {"base": list(profile.base), "late": list(profile.late),
                          "late_share": profile.late_share, "never_share": profile.never_share}
            elif name == "drop_intervals":
                intervals = params.get("intervals")
                if not isinstance(intervals, list) or not all(isinstance(i, str) for i in intervals):
                    raise FaultError("drop_intervals: intervals must be a list of 'HH:MM'")
                params["intervals"] = [i[:5] for i in intervals]
                if params.setdefault("scope", "probe") not in ("probe", "all"):
                    raise FaultError("drop_intervals: scope must be probe or all")
                if params.get("date") is not None:
                    try:
                        date.fromisoformat(params["date"])
                    except (TypeError, ValueError) as exc:
                        raise FaultError("drop_intervals: date must be YYYY-MM-DD") from exc
            elif name == "drop_secids":
                if count is None:
                    raise FaultError("drop_secids: count (number of secids) is required")
                params = {"secids": count, "since": self.moment(params.get("since"))}
                count = None
            elif name == "http_error":
                status = params.setdefault("status", 500)
                if not isinstance(status, int) or not 400 <= status <= 599:
                    raise FaultError("http_error: status must be an HTTP error code")
            elif name == "hang":
                params["seconds"] = float(params.get("seconds", 30))
            elif name == "missing_columns":
                columns = params.get("columns")
                if isinstance(columns, str):
                    columns = [columns]
                if not isinstance(columns, list) or not columns:
                    raise FaultError("missing_columns: columns must be a list of names")
                params["columns"] = [str(c).lower() for c in columns]
            elif name in ("throttle", "no_subscription", "gzip_bomb", "drip", "redirect", "error_message"):
                params = self._request_params(name, params)
            elif name == "bad_row":
                kind = params.get("kind")
                if kind not in BAD_ROW_KINDS:
                    raise FaultError(f"bad_row: kind must be one of {', '.join(BAD_ROW_KINDS)} (got {kind!r})")
                if params.get("secid") is not None and not isinstance(params["secid"], str):
                    raise FaultError("bad_row: secid must be a string")
                params = {"kind": kind, "secid": params.get("secid"), "set_at": now}
                self._active.setdefault(name, {})[(market, dataset, kind)] = Knob(name, market, dataset, params, now)
                return
            elif name == "weekend_tradedate":
                if params.setdefault("mode", "next") not in ("next", "calendar"):
                    raise FaultError("weekend_tradedate: mode must be next (or calendar = the default)")
            elif name == "expire":
                market = market or "fo"
                if market != "fo":
                    raise FaultError("expire: only market fo has expiring contracts")
                day = params.get("day")
                try:
                    day = self._clock.now().date() if day is None else date.fromisoformat(day)
                except (TypeError, ValueError) as exc:
                    raise FaultError("expire: day must be YYYY-MM-DD") from exc
                params = {"secid": params.get("secid") or "SiZ6", "successor": params.get("successor"),
                          "day": day.isoformat()}
            elif name == "secid_daypattern":
                params = {}
            elif name == "expire_auth":
                self.auth_generation += 1
                return
            elif name == "latest_per_instrument":
                if params.setdefault("mode", "ignored") not in LATEST_MODES:
                    raise FaultError(f"latest_per_instrument: mode must be one of {', '.join(LATEST_MODES)}")
            elif name == "cookie_ttl":
                params["seconds"] = float(params.get("seconds", 3600))
            self._active.setdefault(name, {})[(market, dataset)] = Knob(name, market, dataset, params, now, count)

    def clear(self, name: str | None = None, market: str | None = None, dataset: str | None = None,
              scoped: bool = False) -> None:
        """End knob(s) now. `scoped=True` ends only the knob with exactly (market, dataset)."""
        if name is not None and name not in KNOBS:
            raise FaultError(f"unknown knob {name!r}")
        now = math.ceil(self.now_ts())
        if name == "hi2_late":
            dataset = "hi2"
        with self._lock:
            names = [name] if name else list(self._active) + ["stop", "slow", "hi2_late"]
            for knob_name in set(names):
                knobs = self._active.get(knob_name, {})
                for key in list(knobs):
                    if not scoped or key[:2] == (market, dataset):
                        del knobs[key]
                if knob_name in ("stop", "slow", "hi2_late"):
                    self._end_windows(knob_name, market, dataset, now, scoped=scoped)

    def reset(self) -> None:
        """Forget everything, including past stop/slow windows and the auth epoch."""
        with self._lock:
            self._active.clear()
            self._windows.clear()

    def state(self) -> dict:
        with self._lock:
            return {
                "active": {name: [k.to_json() for k in knobs.values()]
                           for name, knobs in self._active.items() if knobs},
                "windows": [w.to_json() for w in self._windows],
                "auth_generation": self.auth_generation,
                "default_delay": list(self.default_delay),
            }

    def _end_windows(self, source: str, market: str | None, dataset: str | None, now: float,
                     scoped: bool = True) -> None:
        for window in self._windows:
            if window.source == source and window.until is None and (
                    not scoped or (window.market, window.dataset) == (market, dataset)):
                window.until = float(math.ceil(now))

    @staticmethod
    def _request_params(name: str, params: dict) -> dict:
        """Validate and fill in the defaults of throttle/no_subscription/error_message/drip/
        redirect/gzip_bomb."""
        if name == "error_message":
            text = params.get("text", DEFAULT_ERROR_MESSAGE)
            if not isinstance(text, str):
                raise FaultError("error_message: text must be a string")
            return {"text": text}
        if name == "drip":
            try:
                rate = float(params.get("bytes_per_second", 1))
            except (TypeError, ValueError) as exc:
                raise FaultError("drip: bytes_per_second must be a number") from exc
            if not rate > 0:
                raise FaultError("drip: bytes_per_second must be > 0")
            return {"bytes_per_second": rate, "headers": bool(params.get("headers", False))}
        if name == "redirect":
            location = params.get("location")
            status = params.get("status", 302)
            if not isinstance(location, str) or not location:
                raise FaultError("redirect: location (absolute URL or path) is required")
            if status not in (301, 302, 303, 307, 308):
                raise FaultError("redirect: status must be 301, 302, 303, 307 or 308")
            return {"location": location, "status": status}
        if name == "gzip_bomb":
            size = params.get("unpacked_bytes", 1 << 30)
            if not isinstance(size, int) or not 0 < size <= 1 << 34:
                raise FaultError("gzip_bomb: unpacked_bytes must be an integer in (0, 16 GiB]")
            return {"unpacked_bytes": size}
        return {}

    def _profile(self, params: dict) -> DelayProfile:
        profile = DelayProfile(
            base=_pair(params.get("base", self.default_delay), "base"),
            late=_pair(params.get("late", (30, 90)), "late"),
            late_share=float(params.get("late_share", 0.0)),
            never_share=float(params.get("never_share", 0.0)),
        )
        if not (0 <= profile.late_share <= 1 and 0 <= profile.never_share <= 1
                and profile.late_share + profile.never_share <= 1):
            raise FaultError("delay_profile: shares must be within [0, 1] and sum to <= 1")
        return profile

    # ----- queries used by the server ----------------------------------------------------

    def _matching(self, name: str, market: str | None, dataset: str | None) -> list[Knob]:
        return [k for k in self._active.get(name, {}).values() if k.matches(market, dataset)]

    def plan(self, market: str, dataset: str, day: date) -> PublishPlan:
        with self._lock:
            profile_knobs = self._matching("delay_profile", market, dataset)
            profile = (self._profile(profile_knobs[-1].params) if profile_knobs
                       else DelayProfile(base=self.default_delay))
            stops = sorted((w for w in self._windows if w.seconds is None and w.matches(market, dataset)),
                           key=lambda w: w.start)
            slows = [w for w in self._windows if w.seconds is not None and w.matches(market, dataset)]
            drop_all: set[str] = set()
            drop_probe: set[str] = set()
            for knob in self._matching("drop_intervals", market, dataset):
                if knob.params.get("date") not in (None, day.isoformat()):
                    continue
                (drop_all if knob.params["scope"] == "all" else drop_probe).update(knob.params["intervals"])
            drop_secids = None
            for knob in self._active.get("drop_secids", {}).values():
                datasets = (knob.dataset,) if knob.dataset else ("tradestats", "obstats")
                if (knob.market is None or knob.market == market) and dataset in datasets:
                    drop_secids = (int(knob.params["secids"]), float(knob.params["since"]))
            bad_rows = [(k.params["kind"], k.params.get("secid"), k.params["set_at"])
                        for k in self._matching("bad_row", market, dataset)]
            expire = None
            if dataset != "futoi":
                for knob in self._matching("expire", market, dataset):
                    expire = (knob.params["secid"], knob.params.get("successor"),
                              date.fromisoformat(knob.params["day"]))
            daypattern = (market in ("eq", "fx") and dataset in ("tradestats", "orderstats", "obstats")
                          and bool(self._matching("secid_daypattern", market, dataset)))
            weekend = self._matching("weekend_tradedate", market, dataset)
            weekend_next = bool(weekend) and weekend[-1].params.get("mode") == "next"
            return PublishPlan(profile, stops, slows, drop_all, drop_probe, drop_secids, bad_rows, expire,
                               daypattern, weekend_next)

    def take(self, name: str, market: str | None, dataset: str | None) -> dict | None:
        """The params of an active request knob matching the request, consuming one use."""
        with self._lock:
            knobs = self._active.get(name, {})
            for key, knob in list(knobs.items()):
                if knob.matches(market, dataset):
                    if knob.remaining is not None:
                        knob.remaining -= 1
                        if knob.remaining <= 0:
                            del knobs[key]
                    return dict(knob.params)
            return None

    def peek(self, name: str, market: str | None = None, dataset: str | None = None) -> dict | None:
        """Params of an active knob matching the scope, without consuming it."""
        with self._lock:
            knobs = self._matching(name, market, dataset)
            return dict(knobs[-1].params) if knobs else None
