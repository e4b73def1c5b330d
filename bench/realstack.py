"""Measurements with real processes: the alert pipeline (LocalStack), exporter cost, scale.

Everything runs on loopback ports, is started through deploy.stack.LocalStack and stopped
by pid (also on errors), with a timeout on every wait.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

from deploy.stack import ALERT_BOT_ID, LocalStack, demo_calendar
from exporter.clock import MSK

from . import scenario

# What the real alert pipeline runs with: production values, stated in BENCHMARKS.md.
PIPELINE_TIMINGS = {"scrape_interval": "15s", "eval_interval": "15s", "group_wait": "30s",
                    "group_interval": "1m", "repeat_interval": "4h"}


def _today_at(hh: int, mm: int, ss: int = 0) -> datetime:
    day = datetime.now(MSK).date()
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=MSK)


def alert_pipeline(workdir: Path, speed: float = 5.0) -> dict:
    """Stop eq/tradestats so one bucket T never comes; time T -> Telegram message.

    The exporter side runs on the fast clock (`speed`); Prometheus (scrape/eval 15 s) and
    Alertmanager run with the production timings (PIPELINE_TIMINGS, the defaults of
    deploy/render_alertmanager.py) in real time. LocalStack's own defaults are short test
    values (group_wait 5 s, group_interval 10 s), so every one is set here explicitly.
    """
    stack = LocalStack(workdir, clock_speed=speed, virtual_start=_today_at(12, 2, 40),
                       components=("telegram", "iss", "exporter", "alertmanager", "prometheus"),
                       calendar=demo_calendar(_today_at(12, 0).date()),
                       scrape_interval=PIPELINE_TIMINGS["scrape_interval"],
                       eval_interval=PIPELINE_TIMINGS["eval_interval"],
                       env={"ALERTMANAGER_GROUP_WAIT": PIPELINE_TIMINGS["group_wait"],
                            "ALERTMANAGER_GROUP_INTERVAL": PIPELINE_TIMINGS["group_interval"],
                            "ALERTMANAGER_REPEAT_INTERVAL": PIPELINE_TIMINGS["repeat_interval"]})
    with stack:
        clock = stack.clock
        deadline = time.monotonic() + 120
        # Stop at least 20 s after a bucket end: that bucket is published (delay 5-15 s),
        # the next one (T) is not, and never will be while the stop holds.
        while True:
            now_v = clock.now()
            if now_v.timestamp() % 300 >= 20 and now_v.timestamp() % 300 < 240:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("virtual clock never reached a stop moment")
            time.sleep(0.2)
        stack.iss_fault("stop", market="eq", dataset="tradestats")
        bucket_due = math.floor(now_v.timestamp() / 300) * 300 + 300
        message = stack.wait_for_message(
            lambda m: m["bot_id"] == ALERT_BOT_ID and "Пропущены интервалы" in (m["text"] or ""), timeout=240)
        arrival_real = float(message["ts"])
        condition_v = bucket_due + scenario.PUBLISH_GRACE
        condition_real = clock.to_real(datetime.fromtimestamp(condition_v, MSK)).timestamp()
        arrival_v = clock.to_virtual(datetime.fromtimestamp(arrival_real, MSK)).timestamp()
        lag_msgs = [m for m in stack.telegram_messages() if m["bot_id"] == ALERT_BOT_ID]
        return {
            "speed": speed,
            "timings": dict(PIPELINE_TIMINGS),
            "bucket_due": datetime.fromtimestamp(bucket_due, MSK).strftime("%H:%M:%S"),
            "virtual_due_to_message": arrival_v - bucket_due,
            "exporter_part_virtual": scenario.PUBLISH_GRACE,
            "pipeline_real": arrival_real - condition_real,
            "production_estimate": scenario.PUBLISH_GRACE + (arrival_real - condition_real),
            "messages": len(lag_msgs),
            "text": message["text"].split("\n")[0],
        }


def _proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = 100.0
    try:
        import os
        ticks = float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        pass
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024,
            "cpu_s": (int(stat[11]) + int(stat[12])) / ticks}


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def exporter_process(workdir: Path, scale: float, speed: float, start: datetime, end: datetime | None = None,
                     window: timedelta | None = None, load_seconds: float = 0.0, rate: float = 100.0) -> dict:
    """Sandbox ISS + exporter as processes on a fast clock.

    Runs until virtual `end`, or for `window` of virtual time after the exporter is ready
    (then requests/bytes/polls are counted from the ready moment; the start-up cost is
    reported apart). With `load_seconds`, a separate load-generator process scrapes
    /metrics at `rate`/s right after start-up and reports latency quantiles. Returns
    RSS/CPU of the exporter process, poll duration from its own histogram, ISS load from
    the sandbox's counters.
    """
    calendar = demo_calendar(start.date())
    stack = LocalStack(workdir, clock_speed=speed, virtual_start=start, components=("iss", "exporter"),
                       calendar=calendar, extra_args={"iss": ["--scale", f"{scale:g}"]}, startup_timeout=240)
    t0 = time.monotonic()
    with stack:
        startup_real = time.monotonic() - t0
        pid = stack.pids["exporter"]
        iss_url = stack.urls["iss"]
        requests.post(iss_url + "/sandbox/faults", json={"delay_profile": scenario.DELAY_PROFILE}, timeout=10)
        base_stats = requests.get(iss_url + "/sandbox/stats", timeout=10).json()["total"]
        base_metrics = stack.exporter_metrics()
        base_proc = _proc_stats(pid)
        ready_v = stack.virtual_now()
        if end is None:
            end = ready_v + (window or timedelta(hours=1))
        load = None
        if load_seconds:
            proc = subprocess.run([sys.executable, "-m", "bench.loadgen", stack.urls["exporter"] + "/metrics",
                                   str(rate), str(load_seconds)], capture_output=True, text=True,
                                  timeout=load_seconds + 60, cwd=str(scenario.REPO))
            if proc.returncode != 0:
                raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
            load = json.loads(proc.stdout)
        real_total = max(0.0, (end - stack.virtual_now()).total_seconds() / speed)
        deadline = time.monotonic() + real_total + 120
        while stack.virtual_now() < end:
            if time.monotonic() > deadline:
                raise TimeoutError("virtual window did not finish")
            if not all(stack.alive().values()):
                raise RuntimeError("a component died:\n" + stack.log_tail("exporter"))
            time.sleep(0.5)
        metrics = stack.exporter_metrics()
        stats = requests.get(iss_url + "/sandbox/stats", timeout=10).json()["total"]
        proc_stats = _proc_stats(pid)
        polls = (_metric_sum(metrics, "algopack_poll_duration_seconds_count")
                 - _metric_sum(base_metrics, "algopack_poll_duration_seconds_count"))
        poll_sum = (_metric_sum(metrics, "algopack_poll_duration_seconds_sum")
                    - _metric_sum(base_metrics, "algopack_poll_duration_seconds_sum"))
        return {
            "scale": scale, "speed": speed, "startup_real": startup_real,
            "startup_requests": base_stats["requests"], "startup_bytes": base_stats["bytes"],
            "startup_cpu_s": base_proc["cpu_s"],
            "window": f"{ready_v:%H:%M}-{end:%H:%M}", "window_hours": (end - ready_v).total_seconds() / 3600,
            "requests": stats["requests"] - base_stats["requests"], "bytes": stats["bytes"] - base_stats["bytes"],
            "total_requests": stats["requests"], "total_bytes": stats["bytes"],
            "exporter_bytes": _metric_sum(metrics, "algopack_iss_response_bytes_total"),
            "polls": polls, "poll_mean_ms": 1000 * poll_sum / polls if polls else float("nan"),
            **proc_stats, "load": load,
        }


def day_window() -> tuple[datetime, datetime]:
    return _today_at(6, 55), _today_at(23, 58)


def today_at(hh: int, mm: int, ss: int = 0) -> datetime:
    return _today_at(hh, mm, ss)
