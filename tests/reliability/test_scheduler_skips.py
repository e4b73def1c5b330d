"""A job due while its previous run still goes (issue 14, item 1): the run is skipped
quietly (counted per job, one INFO line per run, no APScheduler warning per skip), and when
the slow run ends the pair is re-planned from its state."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from exporter.clock import MSK, SystemClock
from exporter.scheduler import PollScheduler, job_id

from .helpers import wait_for

pytestmark = pytest.mark.reliability

PAIR = ("eq", "tradestats")


class SlowPoller:
    """Just what PollScheduler uses; `poll` blocks until released."""

    def __init__(self):
        self.pairs = (PAIR,)
        self.started = threading.Event()
        self.release = threading.Event()
        self.polls = 0

    def plan_startup(self, now):
        return {PAIR: now}

    def planned_next(self, pair, now):
        return now + timedelta(hours=1)

    def poll(self, pair):
        self.polls += 1
        self.started.set()
        self.release.wait(20)
        return SimpleNamespace(next_poll_ts=(datetime.now(MSK) + timedelta(minutes=5)).timestamp())

    def run(self, pair):
        return datetime.fromtimestamp(self.poll(pair).next_poll_ts, MSK)


def test_a_run_due_while_the_previous_one_runs_is_skipped_quietly_and_replanned(caplog):
    caplog.set_level(logging.DEBUG, logger="exporter.scheduler")
    caplog.set_level(logging.INFO, logger="apscheduler")
    poller = SlowPoller()
    scheduler = PollScheduler(poller, SystemClock())
    try:
        scheduler.start()
        assert poller.started.wait(10)
        assert scheduler.running() == {PAIR}
        # While it runs the job is parked an hour ahead, so nothing fires into it ...
        job = scheduler.scheduler.get_job(job_id(PAIR))
        assert job.next_run_time > datetime.now(MSK) + timedelta(minutes=50)
        # ... and if something makes it due anyway, each such run is skipped and counted.
        for expected in (1, 2, 3):
            scheduler.scheduler.modify_job(job_id(PAIR), next_run_time=datetime.now(MSK))
            wait_for(lambda expected=expected: scheduler.skipped.get(job_id(PAIR), 0) >= expected, 10,
                     f"skip {expected}", step=0.05)
        assert poller.polls == 1
        poller.release.set()
        wait_for(lambda: not scheduler.running(), 10, "the slow run to end")
        # Re-planned from the run's own result (next poll in 5 min), not left parked.
        wait_for(lambda: abs((scheduler.scheduler.get_job(job_id(PAIR)).next_run_time - datetime.now(MSK))
                             - timedelta(minutes=5)) < timedelta(seconds=10), 5, "the job re-planned")
    finally:
        poller.release.set()
        scheduler.shutdown()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("apscheduler")]
    assert not warnings, [r.getMessage() for r in warnings]
    lines = [r for r in caplog.records if "event=poll_skipped" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO, [r.getMessage() for r in lines]
    assert "previous-run-still-running" in lines[0].getMessage()
    assert [j["skipped"] for j in scheduler.jobs() if j["id"] == job_id(PAIR)] in ([3], [])
