"""The exporter's daily calendar-sync job (config calendar.sync), as a real process against
the sandbox ISS (its /iss/calendars routes serve an 'exchange' calendar file).

Fast clock: virtual 05:00 at start, speed 600, so the daily 06:17 run comes ~8 s after the
startup run and the hourly retry after a failure ~6 s later. No market is polled, so the
only ISS traffic is the calendar's.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.calendar import load_calendar
from exporter.clock import MSK, FastClock
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, wait_http

from ..calendars import calendar_text

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 5, 0, tzinfo=MSK)
SPEED = 600

TARGET = calendar_text(comment="our calendar (no days yet): the exporter's sync fills it")

SYNC_METRICS = ("algopack_calendar_sync_success_timestamp_seconds", "algopack_calendar_sync_last_run_successful",
                "algopack_calendar_sync_age_seconds")


def write_config(tmp: Path, iss_url: str, target: Path, enabled: bool) -> Path:
    config = {
        "iss": {"base_url": iss_url, "auth": "none", "retries": 0, "timeout_seconds": 5},
        "calendar": {"file": str(target), "reload_interval_seconds": 0.2,
                     "sync": {"enabled": enabled, "time": "06:17", "days_ahead": 45, "retry_minutes": 60}},
        "markets": {m: {"enabled": False} for m in ("eq", "fx", "fo")},
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def sync_metrics(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {f.name: f.samples[0].value for f in text_string_to_metric_families(text) if f.name in SYNC_METRICS}


def wait_metric(url: str, name: str, value: float, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = sync_metrics(url)
        if metrics.get(name) == value:
            return metrics
        time.sleep(0.2)
    raise TimeoutError(f"{name} != {value}: {sync_metrics(url)}")


def sync_next_run(url: str) -> str:
    jobs = requests.get(f"{url}/jobs?format=json", timeout=5).json()
    jobs = jobs["jobs"] if isinstance(jobs, dict) else jobs
    return next(job for job in jobs if job["id"] == "calendar-sync")["next_run"]


def wait_next_run(url: str, expected: datetime, timeout: float = 5) -> None:
    """The job is re-planned just after the metrics change: give it a moment. Real/virtual
    conversions round, so 06:17:00 may read 06:16:59."""

    def close() -> bool:
        return abs(datetime.fromisoformat(sync_next_run(url)) - expected).total_seconds() <= 2

    deadline = time.monotonic() + timeout
    while not close() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert close(), (sync_next_run(url), expected)


@pytest.fixture
def exchange(tmp_path):
    source = tmp_path / "exchange.yml"
    source.write_text((REPO_ROOT / "calendar.yml").read_text(encoding="utf-8"), encoding="utf-8")
    clock = FastClock(start=START, speed=SPEED)
    port = free_port()
    proc = ManagedProcess("sandbox-iss", [sys.executable, "-m", "sandbox.iss", "--listen", f"127.0.0.1:{port}",
                                          "--calendar", str(source), "--clock", clock.spec()],
                          tmp_path / "sandbox-iss.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/sandbox/stats", timeout=20, proc=proc)
        yield url, clock
    finally:
        proc.stop()


def test_daily_job_syncs_keeps_the_file_on_html_and_retries(exchange, tmp_path):
    iss_url, clock = exchange
    target = tmp_path / "calendar.yml"
    target.write_text(TARGET, encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exporter = ManagedProcess("exporter", [sys.executable, "-m", "exporter",
                                           f"--config.file={write_config(tmp_path, iss_url, target, True)}",
                                           f"--web.listen-address=127.0.0.1:{port}", f"--clock={clock.spec()}",
                                           "--log.level=info"], tmp_path / "exporter.log")
    try:
        wait_http(f"{url}/-/healthy", timeout=20, proc=exporter)
        # 1. the startup run fills the next 45 days from the exchange
        first = wait_metric(url, "algopack_calendar_sync_last_run_successful", 1.0, timeout=20)
        assert START.timestamp() <= first["algopack_calendar_sync_success_timestamp_seconds"] <= clock.now().timestamp()
        assert 0 <= first["algopack_calendar_sync_age_seconds"] <= clock.now().timestamp() - START.timestamp()
        ours = load_calendar(str(target))
        assert ours.is_working_day(date(2026, 11, 21), "eq") and ours.is_working_day(date(2026, 11, 21), "fo")
        assert not ours.is_working_day(date(2026, 11, 21), "fx")
        assert ours.day_source(date(2026, 11, 21)) == "iss"
        assert not ours.is_working_day(date(2026, 12, 31)) and ours.day_source(date(2026, 12, 31)) == "iss"
        assert not ours.is_working_day(date(2026, 11, 28))  # a plain weekend: no entry needed
        assert date(2027, 1, 20) not in ours.days  # beyond days_ahead
        assert "# our calendar (no days yet)" in target.read_text(encoding="utf-8")
        wait_next_run(url, datetime(2026, 11, 20, 6, 17, tzinfo=MSK))

        # 2. ISS answers HTML: the 06:17 run fails, nothing changes, the age keeps growing
        requests.post(f"{iss_url}/sandbox/faults", json={"html": {"dataset": "calendar"}},
                      timeout=5).raise_for_status()
        before = target.read_bytes()
        failed = wait_metric(url, "algopack_calendar_sync_last_run_successful", 0.0, timeout=25)
        assert failed["algopack_calendar_sync_success_timestamp_seconds"] == \
            first["algopack_calendar_sync_success_timestamp_seconds"]
        daily = datetime(2026, 11, 20, 6, 17, tzinfo=MSK).timestamp()
        assert failed["algopack_calendar_sync_age_seconds"] >= \
            daily - first["algopack_calendar_sync_success_timestamp_seconds"]  # the run failed at 06:17
        time.sleep(1.3)  # /metrics renders at most once a second (single-flight cache)
        later = sync_metrics(url)
        assert later["algopack_calendar_sync_age_seconds"] > failed["algopack_calendar_sync_age_seconds"]
        assert target.read_bytes() == before
        wait_next_run(url, datetime(2026, 11, 20, 7, 17, tzinfo=MSK))  # retry in an hour, not tomorrow
        log = (tmp_path / "exporter.log").read_text(encoding="utf-8")
        assert "event=calendar_sync_failed" in log

        # 3. ISS is back: the retry succeeds and the age drops
        requests.delete(f"{iss_url}/sandbox/faults", timeout=5).raise_for_status()
        again = wait_metric(url, "algopack_calendar_sync_last_run_successful", 1.0, timeout=25)
        assert again["algopack_calendar_sync_success_timestamp_seconds"] > \
            first["algopack_calendar_sync_success_timestamp_seconds"]
        assert again["algopack_calendar_sync_age_seconds"] < failed["algopack_calendar_sync_age_seconds"]
        assert target.read_bytes() == before  # already in sync: nothing to write
        wait_next_run(url, datetime(2026, 11, 21, 6, 17, tzinfo=MSK))
    finally:
        exporter.stop()


def test_sync_off_by_default_exposes_nan_and_writes_nothing(exchange, tmp_path):
    iss_url, clock = exchange
    target = tmp_path / "calendar.yml"
    target.write_text(TARGET, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "exporter", "--once", f"--clock={clock.spec()}",
                             f"--config.file={write_config(tmp_path, iss_url, target, False)}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    values = {f.name: f.samples[0].value for f in text_string_to_metric_families(result.stdout)
              if f.name in SYNC_METRICS}
    assert set(values) == set(SYNC_METRICS) and all(math.isnan(v) for v in values.values())
    assert target.read_text(encoding="utf-8") == TARGET
