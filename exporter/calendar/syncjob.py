"""The exporter's daily calendar sync (config `calendar.sync`) and its metrics.

    job = CalendarSyncJob(settings, calendar_path, client, clock)
    job.run() -> bool; job.planned_next(now) -> datetime   # the scheduler runs it on that plan
    CalendarSyncCollector(job or None, clock)              # registered next to the main collector

The three series are always present: NaN while `calendar.sync` is off (and the timestamp /
last-run state before the first success / run); the age counts from the exporter's start
while no sync has succeeded yet, so a sync that never works still alerts.

    algopack_calendar_sync_success_timestamp_seconds 1.76404062e+09
    algopack_calendar_sync_last_run_successful 1.0
    algopack_calendar_sync_age_seconds 27000.0
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter.clock import MSK, Clock

from .issreader import SyncError
from .sync import SyncResult, sync_calendar

if TYPE_CHECKING:
    from exporter.config import CalendarSyncConfig

log = logging.getLogger("exporter.scheduler")

NAN = math.nan


class CalendarSyncJob:
    """The exporter's daily merge of the ISS calendar into calendar.yml.

    A failure (ISS down, an HTML or malformed answer, a merge that would not validate)
    changes nothing: the file stays, `last_success_ts` keeps its value, and the next try
    comes `retry_minutes` later instead of a day later.
    """

    def __init__(self, settings: CalendarSyncConfig, calendar_path: str | Path, client, clock: Clock):
        self.settings = settings
        self.calendar_path = str(calendar_path)
        self.client = client
        self.clock = clock
        self.started_ts = clock.now().timestamp()
        self.last_success_ts: float | None = None
        self.last_run_successful: bool | None = None
        self.last_result: SyncResult | None = None
        self.last_error: str | None = None
        self._retry_at: datetime | None = None
        self._lock = threading.Lock()
        hours, minutes = (int(part) for part in settings.time.split(":"))
        self.daily_at = time(hours, minutes)

    def sync_range(self, today: date) -> tuple[date, date]:
        return today, today + timedelta(days=self.settings.days_ahead)

    def planned_next(self, now: datetime) -> datetime:
        """The next daily run strictly after `now`, or the retry after a failure if sooner."""
        now = now.astimezone(MSK)
        daily = datetime.combine(now.date(), self.daily_at, MSK)
        if daily <= now:
            daily = datetime.combine(now.date() + timedelta(days=1), self.daily_at, MSK)
        # Strictly after `now`: APScheduler asks again until the answer is in the future, so
        # a past retry moment (the retry that is running now) must not be returned.
        retry = self._retry_at
        if retry is not None and now < retry < daily:
            return retry
        return daily

    def age_seconds(self, now_ts: float) -> float:
        """Seconds since the last success; since exporter start while none succeeded yet."""
        return max(0.0, now_ts - (self.last_success_ts if self.last_success_ts is not None else self.started_ts))

    def run(self) -> bool:
        with self._lock:
            now = self.clock.now()
            date_from, date_till = self.sync_range(now.date())
            try:
                result = sync_calendar(self.client, self.calendar_path, date_from, date_till)
            except SyncError as exc:
                return self._failed(now, str(exc))
            except Exception as exc:  # a bug or an I/O error must not kill the job
                log.exception("calendar sync crashed")
                return self._failed(now, repr(exc))
            self.last_success_ts = self.clock.now().timestamp()
            self.last_run_successful = True
            self.last_result, self.last_error, self._retry_at = result, None, None
            log.info("event=calendar_sync_ok from=%s till=%s added=%d updated=%d kept_manual=%d", date_from,
                     date_till, result.added, result.updated, result.kept_manual)
            return True

    def _failed(self, now: datetime, error: str) -> bool:
        self.last_run_successful = False
        self.last_error = error
        self._retry_at = now + timedelta(minutes=self.settings.retry_minutes)
        log.warning("event=calendar_sync_failed error=%r retry_at=%s", error,
                    self._retry_at.isoformat(timespec="seconds"))
        return False


class CalendarSyncCollector(Collector):
    """`algopack_calendar_sync_*` from the job (NaN when there is none: sync is off)."""

    def __init__(self, job: CalendarSyncJob | None, clock: Clock):
        self.job = job
        self.clock = clock

    def describe(self):
        return []  # values depend on the job's state; skip the registration-time collect()

    def collect(self):
        job = self.job
        success = GaugeMetricFamily("algopack_calendar_sync_success_timestamp_seconds",
                                    "Last successful merge of the ISS calendar into calendar.yml")
        last_ok = GaugeMetricFamily("algopack_calendar_sync_last_run_successful",
                                    "1 if the last calendar sync succeeded, 0 if it failed")
        age = GaugeMetricFamily("algopack_calendar_sync_age_seconds",
                                "Seconds since the last successful calendar sync (exporter clock; since start "
                                "while none succeeded); NaN when calendar.sync is off")
        if job is None:
            for family in (success, last_ok, age):
                family.add_metric([], NAN)
        else:
            success.add_metric([], NAN if job.last_success_ts is None else float(job.last_success_ts))
            ran = job.last_run_successful
            last_ok.add_metric([], NAN if ran is None else (1.0 if ran else 0.0))
            age.add_metric([], job.age_seconds(self.clock.now().timestamp()))
        yield from (success, last_ok, age)


__all__ = ["CalendarSyncCollector", "CalendarSyncJob"]
