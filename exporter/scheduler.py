"""APScheduler 3 wiring: one job per (market, endpoint), run on the data's rhythm.

APScheduler waits on the wall clock; our logic runs on the injectable (possibly fast)
clock. `VirtualTimeTrigger` bridges them: it asks the poller for the next moment in
virtual time and converts it to the real moment the scheduler must wake up at. With the
system clock both are the same.

Besides the polls there is one rare job, `calendar-sync` (config `calendar.sync`): it runs
on its own one-thread executor, so a slow ISS calendar answer never delays a poll.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from .calendar_sync import SyncError, SyncResult, sync_calendar
from .clock import MSK, Clock
from .config import CalendarSyncConfig
from .poller import Poller

log = logging.getLogger("exporter.scheduler")

MISFIRE_GRACE_SECONDS = 30
CALENDAR_SYNC_JOB = "calendar-sync"


class VirtualTimeTrigger(BaseTrigger):
    """Fires when `plan(virtual_now)` says, translated to real time."""

    def __init__(self, clock: Clock, plan):
        self.clock = clock
        self.plan = plan

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        virtual_now = self.clock.to_virtual(now)
        planned = self.plan(virtual_now)
        if planned <= virtual_now:
            # APScheduler asks again while the answer is <= now: a plan that says "now"
            # would spin forever (it did, in the calendar-sync retry); one second later is safe.
            planned = virtual_now + timedelta(seconds=1)
        return self.clock.to_real(planned).astimezone(now.tzinfo or MSK)

    def __str__(self) -> str:
        return "virtual-time rhythm"


def job_id(pair: tuple[str, str]) -> str:
    return f"poll:{pair[0]}:{pair[1]}"


class PollScheduler:
    def __init__(self, poller: Poller, clock: Clock, max_workers: int = 2):
        self.poller = poller
        self.clock = clock
        self.scheduler = BackgroundScheduler(
            timezone=MSK,
            executors={"default": ThreadPoolExecutor(max_workers=max_workers),
                       "background": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
        )
        self.startup_pairs: set[tuple[str, str]] = set()

    def start(self) -> None:
        now = self.clock.now()
        plan = self.poller.plan_startup(now)
        self.startup_pairs = {pair for pair, moment in plan.items() if moment <= now}
        for pair, first in plan.items():
            trigger = VirtualTimeTrigger(self.clock, lambda v_now, pair=pair: self.poller.planned_next(pair, v_now))
            self.scheduler.add_job(self._run, trigger, args=[pair], id=job_id(pair), name=f"{pair[0]} {pair[1]}",
                                   next_run_time=self.clock.to_real(first))
        self.scheduler.start()
        log.info("scheduler started jobs=%d polls_now=%d", len(plan), len(self.startup_pairs))

    def add_calendar_sync(self, job: CalendarSyncJob) -> None:
        """Run `job` once now, then on its own plan (daily, sooner after a failure)."""

        def run() -> None:
            job.run()
            try:
                self.scheduler.modify_job(CALENDAR_SYNC_JOB,
                                          next_run_time=self.clock.to_real(job.planned_next(self.clock.now())))
            except JobLookupError:
                pass

        self.scheduler.add_job(run, VirtualTimeTrigger(self.clock, job.planned_next), id=CALENDAR_SYNC_JOB,
                               name="calendar sync (ISS)", executor="background",
                               next_run_time=self.clock.to_real(self.clock.now()))

    def polled_at_start(self, pair: tuple[str, str]) -> bool:
        return pair in self.startup_pairs

    def _run(self, pair: tuple[str, str]) -> None:
        try:
            state = self.poller.poll(pair)
        except Exception:  # a bug must not kill the job: log it and try again later
            log.exception("poll crashed market=%s endpoint=%s", *pair)
            self.reschedule(pair, self.clock.now() + timedelta(seconds=60))
            return
        if state.next_poll_ts is not None:
            self.reschedule(pair, datetime.fromtimestamp(state.next_poll_ts, MSK))

    def reschedule(self, pair: tuple[str, str], virtual_moment: datetime) -> None:
        try:
            self.scheduler.modify_job(job_id(pair), next_run_time=self.clock.to_real(virtual_moment))
        except JobLookupError:
            pass

    def replan_all(self) -> None:
        """Re-plan every job now (after a calendar change)."""
        now = self.clock.now()
        for pair in self.poller.store.snapshot.pairs:
            self.reschedule(pair, self.poller.planned_next(pair, now))

    def jobs(self) -> list[dict]:
        """Scheduled jobs with their next run (virtual time), for /jobs."""
        out = []
        for job in sorted(self.scheduler.get_jobs(), key=lambda j: j.id):
            next_real = job.next_run_time
            next_virtual = self.clock.to_virtual(next_real).astimezone(MSK) if next_real else None
            out.append({"id": job.id, "name": job.name,
                        "next_run": next_virtual.isoformat(timespec="seconds") if next_virtual else None})
        return out

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


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
