"""APScheduler 3 wiring: one job per (market, endpoint), run on the data's rhythm.

APScheduler waits on the wall clock; our logic runs on the injectable (possibly fast)
clock. `VirtualTimeTrigger` bridges them: it asks the poller for the next moment in
virtual time and converts it to the real moment the scheduler must wake up at. With the
system clock both are the same.

Isolation: the poll pool has one worker per pair and each job runs at most one instance,
so a slow pair (an answer that drips until `iss.timeout_seconds`, the whole-request
deadline) holds only its own worker; every other pair is polled on time. ISS concurrency
stays low anyway: a poll is one small request, a pair never overlaps itself, and pairs due
together start `STAGGER_SECONDS` apart in a fixed order (at most 1.8 s for 13 pairs). While a
pair's poll runs, its job is parked (`PollTrigger` answers "not before the hold"), and
the run itself plans the next poll when it ends; so APScheduler never tries to start a
second instance and never logs "maximum number of running instances" skips (should one
happen anyway it is counted per job in /jobs and logged once per run, at INFO).
`misfire_grace_time` is off: a late poll still runs (coalesced to one), the poller decides
what is due.

Clock jumps: APScheduler sleeps on a monotonic timer computed from the wall clock, so a
jump of the host clock (or of a fast clock's anchor) is invisible to it until that sleep
ends, which at night can be hours. A watchdog thread compares the clock with the
monotonic clock every `WATCH_SECONDS`; on a jump it re-plans every pair from the new
"now" (state and job), which also wakes the scheduler.

The scheduler knows the poller only as jobs with a next time: `pairs`, `plan_startup(now)`
(first moments), `run(pair)` (poll, return the next moment: the one value, also published
as the pair's `next_poll_ts`), `planned_next(pair, now)` and `replan(pair, now)`.

Besides the polls there is one rare job, `calendar-sync` (config `calendar.sync`): it runs
on its own one-thread executor, so a slow ISS calendar answer never delays a poll.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from .clock import MSK, Clock
from .poller import Poller

log = logging.getLogger("exporter.scheduler")

CALENDAR_SYNC_JOB = "calendar-sync"
# While a poll runs its job is parked this far ahead (virtual time); the run re-plans the
# job when it ends, so this is only a safety net should a run never report back.
RUNNING_HOLD = timedelta(hours=1)
# Pairs due at the same moment (every bucket end) start this many virtual seconds apart,
# in a fixed order: ISS sees a short row of requests, not a burst of 12 (its etiquette asks
# for low concurrency), and no pair's start depends on another pair's progress.
STAGGER_SECONDS = 0.15
WATCH_SECONDS = 1.0                    # real seconds between clock-jump checks
JUMP_TOLERANCE_SECONDS = 60.0          # virtual seconds of drift that count as a jump


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


class PollTrigger(VirtualTimeTrigger):
    """The trigger of a poll job. APScheduler asks it right after it started a run; the
    run plans the next poll itself when it ends (`PollScheduler._run`), so until then the
    job is parked `RUNNING_HOLD` ahead and cannot fire into its own running instance."""

    def __init__(self, clock: Clock, plan):
        super().__init__(clock, lambda virtual_now: max(plan(virtual_now), virtual_now + RUNNING_HOLD))

    def __str__(self) -> str:
        return "virtual-time rhythm (re-planned by each run)"


def job_id(pair: tuple[str, str]) -> str:
    return f"poll:{pair[0]}:{pair[1]}"


class _SkipFilter(logging.Filter):
    """APScheduler warns on every skipped or missed run; ours are counted per job and
    logged once per run by `PollScheduler`, so its own lines go to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and ("maximum number of running instances" in message
                                                  or "was missed by" in message):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_SKIP_FILTER = _SkipFilter()


class PollScheduler:
    def __init__(self, poller: Poller, clock: Clock, max_workers: int = 2):
        self.poller = poller
        self.clock = clock
        pairs = list(poller.pairs)
        # One worker per pair: a pair never waits for another pair's poll (issue 14). A
        # bigger `max_workers` is allowed but unused (a job never runs twice at once).
        self.workers = max(max_workers, len(pairs), 1)
        self._stagger = {pair: timedelta(seconds=STAGGER_SECONDS * index) for index, pair in enumerate(sorted(pairs))}
        self.scheduler = BackgroundScheduler(
            timezone=MSK,
            executors={"default": ThreadPoolExecutor(max_workers=self.workers),
                       "background": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        logging.getLogger("apscheduler.scheduler").addFilter(_SKIP_FILTER)
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self.startup_pairs: set[tuple[str, str]] = set()
        self.skipped: dict[str, int] = {}
        self.clock_jumps = 0
        self._running: dict[tuple[str, str], float] = {}   # pair -> monotonic start of its run
        self._skip_logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        now = self.clock.now()
        plan = self.poller.plan_startup(now)
        self.startup_pairs = {pair for pair, moment in plan.items() if moment <= now}
        for pair, first in plan.items():
            trigger = PollTrigger(self.clock, lambda v_now, pair=pair: self.poller.planned_next(pair, v_now))
            self.scheduler.add_job(self._run, trigger, args=[pair], id=job_id(pair), name=f"{pair[0]} {pair[1]}",
                                   next_run_time=self.clock.to_real(first + self._stagger.get(pair, timedelta())))
        self.scheduler.start()
        self._watcher = threading.Thread(target=self._watch_clock, name="clock-watch", daemon=True)
        self._watcher.start()
        log.info("scheduler started jobs=%d polls_now=%d workers=%d", len(plan), len(self.startup_pairs),
                 self.workers)

    def add_calendar_sync(self, job) -> None:
        """Run `job` (exporter.calendar.syncjob.CalendarSyncJob: `run()`, `planned_next(now)`)
        once now, then on its own plan (daily, sooner after a failure)."""

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
        with self._lock:
            self._running[pair] = _time.monotonic()
            self._skip_logged.discard(pair)
        moment: datetime | None = None
        try:
            moment = self.poller.run(pair)
        except Exception:  # a bug must not kill the job: log it and try again later
            log.exception("poll crashed market=%s endpoint=%s", *pair)
            moment = self.clock.now() + timedelta(seconds=60)
        finally:
            with self._lock:
                self._running.pop(pair, None)
            if moment is None:
                moment = self._safe_plan(pair)
            self.reschedule(pair, moment)

    def _safe_plan(self, pair: tuple[str, str]) -> datetime:
        now = self.clock.now()
        try:
            return self.poller.planned_next(pair, now)
        except Exception:
            log.exception("planning failed market=%s endpoint=%s", *pair)
            return now + timedelta(seconds=60)

    def _skipped(self, event) -> None:
        self.skipped[event.job_id] = self.skipped.get(event.job_id, 0) + 1
        kind, _, rest = event.job_id.partition(":")
        pair = tuple(rest.split(":", 1)) if kind == "poll" else None
        with self._lock:
            started = self._running.get(pair) if pair else None
            if pair in self._skip_logged:
                return
            if pair:
                self._skip_logged.add(pair)
        running = f" running_for={_time.monotonic() - started:.1f}s" if started is not None else ""
        log.info("event=poll_skipped job=%s reason=%s%s", event.job_id,
                 "previous-run-still-running" if event.code == EVENT_JOB_MAX_INSTANCES else "missed", running)

    def running(self) -> set[tuple[str, str]]:
        with self._lock:
            return set(self._running)

    def reschedule(self, pair: tuple[str, str], virtual_moment: datetime) -> None:
        try:
            moment = virtual_moment + self._stagger.get(pair, timedelta())
            self.scheduler.modify_job(job_id(pair), next_run_time=self.clock.to_real(moment))
        except JobLookupError:
            pass

    def replan_all(self) -> None:
        """Re-plan every pair from now (after a calendar change or a clock jump): its
        state's next poll and its job. A pair whose poll is running re-plans when it ends."""
        now = self.clock.now()
        for pair in self.poller.pairs:
            if pair in self.running():
                continue
            # The poller plans and records the one next-poll value; the job follows it.
            self.reschedule(pair, self.poller.replan(pair, now))

    # ---- clock jumps ----------------------------------------------------------------

    def _watch_clock(self) -> None:
        last_virtual, last_mono = self.clock.timestamp(), _time.monotonic()
        while not self._watch_stop.wait(WATCH_SECONDS):
            virtual, mono = self.clock.timestamp(), _time.monotonic()
            jump = (virtual - last_virtual) - (mono - last_mono) * self.clock.speed
            last_virtual, last_mono = virtual, mono
            if abs(jump) < max(JUMP_TOLERANCE_SECONDS, 2 * WATCH_SECONDS * self.clock.speed):
                continue
            self.clock_jumps += 1
            log.warning("event=clock_jump seconds=%+.0f now=%s; re-planning every poll", jump,
                        self.clock.now().isoformat(timespec="seconds"))
            try:
                self.replan_all()
            except Exception:
                log.exception("re-plan after a clock jump failed")

    def jobs(self) -> list[dict]:
        """Scheduled jobs with their next run (virtual time), for /jobs."""
        out = []
        for job in sorted(self.scheduler.get_jobs(), key=lambda j: j.id):
            next_real = job.next_run_time
            next_virtual = self.clock.to_virtual(next_real).astimezone(MSK) if next_real else None
            out.append({"id": job.id, "name": job.name,
                        "next_run": next_virtual.isoformat(timespec="seconds") if next_virtual else None,
                        "skipped": self.skipped.get(job.id, 0)})
        return out

    def shutdown(self) -> None:
        self._watch_stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

