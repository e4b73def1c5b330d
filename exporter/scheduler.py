"""APScheduler 3 wiring: one job per (market, endpoint), run on the data's rhythm.

APScheduler waits on the wall clock; our logic runs on the injectable (possibly fast)
clock. `VirtualTimeTrigger` bridges them: it asks the poller for the next moment in
virtual time and converts it to the real moment the scheduler must wake up at. With the
system clock both are the same.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from .clock import MSK, Clock
from .poller import Poller

log = logging.getLogger("exporter.scheduler")

MISFIRE_GRACE_SECONDS = 30


class VirtualTimeTrigger(BaseTrigger):
    """Fires when `plan(virtual_now)` says, translated to real time."""

    def __init__(self, clock: Clock, plan):
        self.clock = clock
        self.plan = plan

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        virtual_now = self.clock.to_virtual(now)
        planned = self.plan(virtual_now)
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
            executors={"default": ThreadPoolExecutor(max_workers=max_workers)},
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

    def polled_at_start(self, pair: tuple[str, str], _now: datetime | None = None) -> bool:
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
