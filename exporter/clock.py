"""The one injectable clock.

Every component (exporter, sandbox ISS, bot, benchmarks) takes "now" from a `Clock`.
Production uses `SystemClock`. Tests and the demo use a `FastClock`: virtual time that
starts at a chosen Moscow moment and runs `speed` times faster than the wall clock, from a
real-time `anchor`. Two processes given the same spec string agree on "now", which is how
the sandbox ISS and the exporter share one fast trading day.

Spec string (env `ALGOPACK_CLOCK` or `--clock`):
    "start=2026-11-25T09:55:00+03:00,speed=30,anchor=1764053000.5"
`anchor` is the real Unix time at which virtual time equals `start`; when omitted it is
the moment the spec is parsed (fine for a single process, not for two).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MSK = ZoneInfo("Europe/Moscow")
CLOCK_ENV = "ALGOPACK_CLOCK"


class Clock:
    """Interface: virtual "now" plus conversions between virtual and real time."""

    speed: float = 1.0

    def now(self) -> datetime:
        """Aware datetime in Europe/Moscow."""
        raise NotImplementedError

    def timestamp(self) -> float:
        return self.now().timestamp()

    def today(self) -> date:
        return self.now().date()

    def to_real(self, virtual: datetime) -> datetime:
        """Real (wall-clock) moment at which virtual time reaches `virtual`."""
        return virtual

    def to_virtual(self, real: datetime) -> datetime:
        return real

    def real_seconds(self, virtual_seconds: float) -> float:
        """How long `virtual_seconds` of virtual time take on the wall clock."""
        return virtual_seconds / self.speed

    def spec(self) -> str:
        """The string that makes another process share this clock ('' for the system clock)."""
        return ""


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(MSK)


@dataclass
class FastClock(Clock):
    start: datetime
    speed: float = 1.0
    anchor: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("FastClock start must be timezone-aware")
        if self.speed <= 0:
            raise ValueError("FastClock speed must be > 0")

    def _virtual_ts(self, real_ts: float) -> float:
        return self.start.timestamp() + (real_ts - self.anchor) * self.speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._virtual_ts(time.time()), MSK)

    def to_real(self, virtual: datetime) -> datetime:
        real_ts = self.anchor + (virtual.timestamp() - self.start.timestamp()) / self.speed
        return datetime.fromtimestamp(real_ts, virtual.tzinfo or UTC)

    def to_virtual(self, real: datetime) -> datetime:
        return datetime.fromtimestamp(self._virtual_ts(real.timestamp()), real.tzinfo or MSK)

    def spec(self) -> str:
        return f"start={self.start.isoformat()},speed={self.speed:g},anchor={self.anchor:.3f}"


class ManualClock(Clock):
    """A clock that only moves when told to (unit tests)."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("ManualClock start must be timezone-aware")
        self._now = start.astimezone(MSK)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(MSK)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def parse_clock_spec(spec: str) -> Clock:
    """Parse a clock spec; '' or 'system' gives the system clock. Raises ValueError."""
    spec = (spec or "").strip()
    if spec in ("", "system"):
        return SystemClock()
    parts: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"clock spec item {item!r} is not key=value")
        parts[key.strip()] = value.strip()
    unknown = set(parts) - {"start", "speed", "anchor"}
    if unknown:
        raise ValueError(f"clock spec has unknown keys: {', '.join(sorted(unknown))}")
    if "start" not in parts:
        raise ValueError("clock spec needs start=ISO-8601 time")
    start = datetime.fromisoformat(parts["start"])
    if start.tzinfo is None:
        start = start.replace(tzinfo=MSK)
    speed = float(parts.get("speed", "1"))
    anchor = float(parts["anchor"]) if "anchor" in parts else time.time()
    return FastClock(start=start, speed=speed, anchor=anchor)


def clock_from_env(override: str | None = None) -> Clock:
    """The clock for this process: an explicit spec wins over env `ALGOPACK_CLOCK`."""
    return parse_clock_spec(override if override is not None else os.environ.get(CLOCK_ENV, ""))
