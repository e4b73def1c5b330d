"""Issue 16's figures on real processes: sandbox ISS + exporter (deploy.stack.LocalStack) on a
fast virtual clock, everything stopped by pid, a timeout on every wait.

Measures whatever exporter is on main: a feature not there yet (e.g. `--storage.path`) is
detected from `python -m exporter --help` and reported as not available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import requests
import yaml

from deploy.stack import LocalStack
from exporter.clock import MSK

from . import scenario

AFTER_RESTART = timedelta(minutes=10)
SATURDAY = date(2026, 11, 28)        # a weekend day of calendar.yml: no market trades


def exporter_flags() -> str:
    try:
        out = subprocess.run([sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True,
                             timeout=60, cwd=str(scenario.REPO))
        return out.stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def storage_available() -> bool:
    return "--storage.path" in exporter_flags()


def proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = float(os.sysconf("SC_CLK_TCK"))
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024,
            "cpu_s": (int(stat[11]) + int(stat[12])) / ticks, "threads": int(fields["Threads"]), "fds": fds}


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


class TimedStack(LocalStack):
    """LocalStack that records how long the exporter took from spawn to `/-/ready`.

    Before the exporter starts, the sandbox is made to generate its data for the virtual day
    and the two before (it does so lazily on a first request: seconds at scale 10), then its
    counters are reset: start-up time and requests are the exporter's own."""

    exporter_ready_seconds: float | None = None
    _warmed = False

    def _warm_sandbox(self) -> None:
        base = self.urls["iss"]
        today = self.clock.now().date()
        with requests.Session() as http:
            # Oldest first: the sandbox's frame cache is an LRU bounded below three days at
            # scale 10, so today's frames (the first polls' data) must be generated last.
            for back in (2, 1, 0):
                day = (today - timedelta(days=back)).isoformat()
                routes = [(f"/iss/datashop/algopack/{market}/{dataset}.json", {"date": day, "limit": 1})
                          for market in ("eq", "fx", "fo") for dataset in ("tradestats", "orderstats", "obstats")]
                routes.append(("/iss/analyticalproducts/futoi/securities/RI.json", {"from": day, "till": day}))
                for route, params in routes:
                    try:
                        http.get(base + route, params=params, timeout=120)
                    except requests.RequestException:
                        pass
            http.post(base + "/sandbox/stats/reset", timeout=10)

    def _start_exporter(self) -> None:
        if "iss" in self.urls and not self._warmed:      # the first start only, not a restart
            self._warm_sandbox()
            self._warmed = True
        t0 = time.monotonic()
        super()._start_exporter()
        self.exporter_ready_seconds = time.monotonic() - t0


def _calendar() -> dict:
    return yaml.safe_load(scenario.CALENDAR.read_text(encoding="utf-8"))


def _stack(workdir: Path, speed: float, start: datetime, scale: float = 1.0) -> TimedStack:
    return TimedStack(workdir, clock_speed=speed, virtual_start=start, components=("iss", "exporter"),
                      calendar=_calendar(), extra_args={"iss": ["--scale", f"{scale:g}"]}, startup_timeout=300)


def iss_stats(stack: LocalStack) -> dict:
    return requests.get(stack.urls["iss"] + "/sandbox/stats", timeout=10).json()["total"]


def _scenario_faults(stack: LocalStack) -> None:
    stack.iss_fault(delay_profile=scenario.DELAY_PROFILE, drop_intervals=[
        {"market": m, "dataset": d, "intervals": i, "scope": "probe"} for m, d, i in scenario.DROPPED])


def _run_until(stack: LocalStack, end: datetime, events: list | None = None, on_step=None) -> None:
    scenario.run_stack_until(stack, end, events or (), on_step)


def day(workdir: Path, scale: float, speed: float) -> dict:
    """The scenario's trading day (06:55-23:58, its delay profile, dropped buckets and stops),
    the exporter started cold at 06:55: peak RSS, CPU, ISS requests and bytes for the day."""
    start, end = scenario.DAY_START, scenario.DAY_END
    stack = _stack(workdir, speed, start, scale)
    with stack:
        _scenario_faults(stack)
        pid = stack.pids["exporter"]
        ready = iss_stats(stack)
        _run_until(stack, end, [e for e in scenario.events() if e.moment > stack.virtual_now()])
        metrics = stack.exporter_metrics()
        stats = iss_stats(stack)
        proc = proc_stats(pid)
    return {"scale": scale, "speed": speed, "ready_seconds": stack.exporter_ready_seconds,
            "startup_requests": ready["requests"], "startup_bytes": ready["bytes"],
            "requests": stats["requests"], "bytes": stats["bytes"],
            "polls": metric_sum(metrics, "algopack_poll_duration_seconds_count"),
            "poll_sum": metric_sum(metrics, "algopack_poll_duration_seconds_sum"), **proc}


def ready(workdir: Path, scale: float = 10.0, speed: float = 60.0) -> dict:
    """Start-up in session (12:03:50 of the scenario's day) on a moderate clock: real seconds from
    spawning the exporter (sandbox up and warm) until `/-/ready`, and the ISS requests/bytes
    until then. A fast clock would let virtual hours pass during the start-up."""
    stack = _stack(workdir, speed, scenario.at(12, 3, 50), scale)
    with stack:
        stats = iss_stats(stack)
    return {"scale": scale, "speed": speed, "ready_seconds": stack.exporter_ready_seconds,
            "requests": stats["requests"], "bytes": stats["bytes"]}


def restart(workdir: Path, speed: float = 60.0) -> dict:
    """In session (12:00 of the scenario's day, scale 1): stop the exporter by pid, start it
    again with the same config (and state directory, when the exporter has one), count ISS
    requests/bytes and time until `/-/ready`."""
    stack = _stack(workdir, speed, scenario.at(11, 45))
    with stack:
        _scenario_faults(stack)
        _run_until(stack, scenario.at(12, 10) - AFTER_RESTART)
        base0 = iss_stats(stack)
        _run_until(stack, scenario.at(12, 10))
        base1 = iss_stats(stack)
        stack.stop_component("exporter")
        before = iss_stats(stack)
        t0 = time.monotonic()
        stack.restart_component("exporter")
        seconds = time.monotonic() - t0
        after = iss_stats(stack)
        # Reads a restart sets off after /-/ready (off the readiness path) show in the next minutes.
        _run_until(stack, stack.virtual_now() + AFTER_RESTART)
        later = iss_stats(stack)
    return {"requests": after["requests"] - before["requests"], "bytes": after["bytes"] - before["bytes"],
            "ready_seconds": seconds, "requests_after": later["requests"] - before["requests"],
            "bytes_after": later["bytes"] - before["bytes"],
            "requests_normal": base1["requests"] - base0["requests"], "bytes_normal": base1["bytes"] - base0["bytes"]}


def closed_day(workdir: Path, speed: float = 1200.0) -> dict:
    """Friday after the close (23:52) until Saturday 23:59 (no market trades): ISS requests of
    the Saturday, the date change included."""
    friday = SATURDAY - timedelta(days=1)
    stack = _stack(workdir, speed, datetime(friday.year, friday.month, friday.day, 23, 52, tzinfo=MSK))
    with stack:
        _run_until(stack, datetime(SATURDAY.year, SATURDAY.month, SATURDAY.day, 0, 0, tzinfo=MSK))
        before = iss_stats(stack)
        _run_until(stack, datetime(SATURDAY.year, SATURDAY.month, SATURDAY.day, 23, 59, 30, tzinfo=MSK))
        after = iss_stats(stack)
    return {"requests": after["requests"] - before["requests"], "bytes": after["bytes"] - before["bytes"]}


def scrape_cost(workdir: Path, seconds: float = 20.0, rate: float = 100.0) -> dict:
    """Real-time clock, in session, scale 1: exporter CPU over `seconds` idle, then over
    `seconds` of `rate` scrapes/s from a separate load-generator process; CPU per scrape is
    the difference over the scrapes sent; latency quantiles from the load generator."""
    stack = LocalStack(workdir, clock_speed=1.0, virtual_start=scenario.at(12, 3, 50), components=("iss", "exporter"),
                       calendar=_calendar(), startup_timeout=300)
    with stack:
        pid = stack.pids["exporter"]
        time.sleep(3)
        idle0 = proc_stats(pid)["cpu_s"]
        time.sleep(seconds)
        idle = proc_stats(pid)["cpu_s"] - idle0
        load0 = proc_stats(pid)["cpu_s"]
        proc = subprocess.run([sys.executable, "-m", "bench.loadgen", stack.urls["exporter"] + "/metrics",
                               str(rate), str(seconds)], capture_output=True, text=True, timeout=seconds + 60,
                              cwd=str(scenario.REPO))
        busy = proc_stats(pid)["cpu_s"] - load0
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
        load = json.loads(proc.stdout)
        series = series_count(stack.exporter_metrics())
    per_scrape = (busy - idle * load["seconds"] / seconds) / max(1, load["sent"] - load["errors"])
    return {"load": load, "cpu_idle_s": idle, "cpu_busy_s": busy, "cpu_per_scrape_ms": 1000 * per_scrape,
            "series": series}


def soak(workdir: Path, days: int = 5, speed: float = 2400.0) -> dict:
    """`days` virtual days from the scenario's day (calendar.yml: weekends are closed), scale 1,
    the scenario's delay profile: at every virtual midnight the exporter's RSS, peak RSS,
    threads, fds, series count and the day's ISS requests/bytes."""
    start = scenario.DAY_START
    stack = _stack(workdir, speed, start)
    rows: list[dict] = []
    with stack:
        stack.iss_fault(delay_profile=scenario.DELAY_PROFILE)
        pid = stack.pids["exporter"]
        last = iss_stats(stack)
        last_polls = metric_sum(stack.exporter_metrics(), "algopack_poll_duration_seconds_count")
        for n in range(days):
            d = start.date() + timedelta(days=n + 1)
            _run_until(stack, datetime(d.year, d.month, d.day, 0, 0, 30, tzinfo=MSK))
            metrics = stack.exporter_metrics()
            stats = iss_stats(stack)
            polls = metric_sum(metrics, "algopack_poll_duration_seconds_count")
            rows.append({"day": (d - timedelta(days=1)).isoformat(), **proc_stats(pid), "series": series_count(metrics),
                         "requests": stats["requests"] - last["requests"], "bytes": stats["bytes"] - last["bytes"],
                         "polls": polls - last_polls})
            last, last_polls = stats, polls
    return {"speed": speed, "rows": rows}
