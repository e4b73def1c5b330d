"""`python -m exporter` as a process: flags, bad config, --once, serving, secrets, shutdown."""

from __future__ import annotations

import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

import pytest
import requests

from exporter.clock import FastClock
from sandbox.iss import SandboxIss
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, python_module, wait_http

from .exporter_sim import CALENDAR, at, write_config

pytestmark = pytest.mark.integration

SECRET = "Pa55-word-never-logged"


def run_exporter(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env)


def test_bad_config_exits_with_the_key_and_reason(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("iss: {auth: kerberos, timeout_seconds: -1}\npoll: {intervall_seconds: 5}\n")
    result = run_exporter(f"--config.file={bad}", "--once")
    assert result.returncode == 2
    assert "iss.auth" in result.stderr and "kerberos" in result.stderr
    assert "iss.timeout_seconds" in result.stderr
    assert "poll.intervall_seconds" in result.stderr


def test_missing_secret_and_bad_calendar_exit_clearly(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"iss: {{auth: passport}}\ncalendar: {{file: {CALENDAR}}}\n")
    result = run_exporter(f"--config.file={cfg}", "--once", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "MOEX_PASSPORT_LOGIN" in result.stderr
    broken = tmp_path / "cal.yml"
    broken.write_text("markets: {xx: {sessions: []}}\n")
    cfg.write_text(f"calendar: {{file: {broken}}}\n")
    result = run_exporter(f"--config.file={cfg}", "--once")
    assert result.returncode == 2 and "markets.xx" in result.stderr


def test_calendar_sync_takes_the_global_flags_before_or_after_the_command(tmp_path):
    """`python -m exporter --config.file=X calendar-sync` used to fail: the flags are global."""
    port = free_port()
    source = tmp_path / "exchange.yml"
    source.write_text((REPO_ROOT / "calendar.yml").read_text())
    iss = ManagedProcess("iss-calendar", [sys.executable, "-m", "sandbox.isscalendar", "--listen",
                                          f"127.0.0.1:{port}", "--calendar", str(source)], tmp_path / "iss.log")
    target = tmp_path / "calendar.yml"
    target.write_text(CALENDAR.read_text())
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"iss: {{base_url: 'http://127.0.0.1:{port}', retries: 0}}\ncalendar: {{file: {target.name}}}\n")
    own = ("--from=2026-01-01", "--till=2026-12-31", "--dry-run")
    try:
        wait_http(f"http://127.0.0.1:{port}/sandbox/health", timeout=20, proc=iss)
        before = run_exporter(f"--config.file={cfg}", "--log.level=error", "calendar-sync", *own)
        after = run_exporter("calendar-sync", *own, f"--config.file={cfg}", "--log.level=error")
    finally:
        iss.stop()
    assert before.returncode == 0, before.stderr
    assert "calendar-sync 2026-01-01..2026-12-31: would add" in before.stdout
    assert str(target) in before.stdout  # the calendar of the --config.file, not of the defaults
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("poll: {interval_seconds: 0}\n")
    for argv in ((f"--config.file={bad}", "calendar-sync"), ("calendar-sync", f"--config.file={bad}")):
        result = run_exporter(*argv)
        assert result.returncode == 2 and "poll.interval_seconds: must be > 0" in result.stderr, argv


def test_once_prints_the_exposition(tmp_path):
    clock = FastClock(start=at(11, 0), speed=1)
    iss = SandboxIss(str(CALENDAR), clock, port=0)
    iss.start()
    try:
        cfg = write_config(tmp_path, iss.url)
        result = run_exporter(f"--config.file={cfg}", "--once", f"--clock={clock.spec()}")
    finally:
        iss.stop()
    assert result.returncode == 0, result.stderr
    assert 'algopack_up{endpoint="tradestats",market="eq"} 1.0' in result.stdout
    assert 'algopack_session_open{market="fo"} 1.0' in result.stdout


def test_serving_process_with_passport_auth_never_leaks_secrets(tmp_path):
    clock = FastClock(start=at(10, 20), speed=30)
    iss = SandboxIss(str(CALENDAR), clock, auth="passport", port=0, passport_login="robot",
                     passport_password=SECRET)
    iss.start()
    port = free_port()
    cfg = write_config(tmp_path, iss.url, iss={"auth": "passport", "passport_url": iss.url + "/authenticate"})
    env = {"MOEX_PASSPORT_LOGIN": "robot", "MOEX_PASSPORT_PASSWORD": SECRET, "ALGOPACK_CLOCK": clock.spec()}
    proc = ManagedProcess("exporter", python_module("exporter", f"--config.file={cfg}",
                                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=debug"),
                          tmp_path / "exporter.log", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/-/ready", timeout=60, proc=proc)
        iss.faults.set("expire_auth")  # the cookie dies: one re-auth, then data again
        time.sleep(12)  # 6 virtual minutes: at least one bucket after the expiry
        metrics = requests.get(base + "/metrics", timeout=5).text
        assert 'algopack_up{endpoint="tradestats",market="eq"} 1.0' in metrics
        assert requests.get(base + "/-/healthy", timeout=5).status_code == 200
        assert "algopack exporter" in requests.get(base + "/", timeout=5).text
        jobs = requests.get(base + "/jobs?format=json", timeout=5).json()
        assert {job["id"] for job in jobs} >= {"poll:eq:tradestats", "poll:fo:futoi", "poll:fx:hi2"}
        assert all(job["next_run"] and job["next_run"].endswith("+03:00") for job in jobs)
        text_jobs = subprocess.run([sys.executable, "-m", "exporter", "jobs", f"--web.listen-address=127.0.0.1:{port}"],
                                   capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
        assert "poll:eq:tradestats" in text_jobs.stdout
        flag_first = subprocess.run([sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}", "jobs"],
                                    capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
        assert "poll:eq:tradestats" in flag_first.stdout, flag_first.stderr
        auth_requests = [r for r in iss.stats()["routes"] if r["kind"] == "authenticate"]
        assert sum(r["requests"] for r in auth_requests) >= 2
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(timeout=15) == 0
        log_text = proc.log_path.read_text()
        for secret in (SECRET, "MicexPassportCert="):
            assert secret not in metrics and secret not in log_text
    finally:
        proc.stop()
        iss.stop()


def test_bad_listen_address_exits_clearly(tmp_path):
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    result = run_exporter(f"--config.file={cfg}", "--web.listen-address=localhost")
    assert result.returncode == 2
    assert "cannot listen on localhost" in result.stderr and "host:port" in result.stderr


def _proc_status(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_1000_half_open_connections_cost_no_threads_and_scrapes_stay_fast(tmp_path):
    """Issue 14: ~1200 half-open /metrics connections used to cost a rendering thread each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:  # this process and the exporter (inherits it)
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard))
    clock = FastClock(start=at(11, 0), speed=1)
    iss = SandboxIss(str(CALENDAR), clock, port=0)
    iss.start()
    port = free_port()
    cfg = write_config(tmp_path, iss.url)
    proc = ManagedProcess("exporter", python_module("exporter", f"--config.file={cfg}",
                                                    f"--web.listen-address=127.0.0.1:{port}"),
                          tmp_path / "exporter.log", env={"ALGOPACK_CLOCK": clock.spec()})
    socks: list[socket.socket] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/-/ready", timeout=60, proc=proc)
        assert "algopack_up{" in requests.get(base + "/metrics", timeout=5).text  # the real registry
        threads_before = _proc_status(proc.pid, "Threads")
        fds_before = len(os.listdir(f"/proc/{proc.pid}/fd"))
        for index in range(1000):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            kind = index % 4
            if kind == 1:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a partial header
            elif kind >= 2:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # then close (2) or never read (3)
            if kind == 2:
                sock.close()
            else:
                socks.append(sock)
        deadline = time.monotonic() + 30
        while len(os.listdir(f"/proc/{proc.pid}/fd")) < fds_before + 700 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling: until the exporter holds the half-open connections
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) >= fds_before + 700
        times = []
        with requests.Session() as http:
            # Five variants that cannot share a cached rendering: each scrape renders.
            for accept, name in (("*/*", None), ("application/openmetrics-text; version=1.0.0", None),
                                 ("text/plain; version=1.0.0", None), ("*/*", "algopack_up"),
                                 ("application/openmetrics-text; version=1.0.0", "algopack_up")):
                started = time.perf_counter()
                response = http.get(base + "/metrics", headers={"Accept": accept}, timeout=10,
                                    params={"name[]": name} if name else None)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200 and "algopack_up" in response.text
        threads = _proc_status(proc.pid, "Threads")
        assert statistics.median(times) < 0.1, times
        # Connections cost no thread; at most the background day-read worker and a poll worker
        # that the schedule starts meanwhile (threads that exist whatever HTTP clients do).
        assert threads <= threads_before + 2 and threads <= 24, (threads_before, threads)
    finally:
        for sock in socks:
            sock.close()
        proc.stop()
        iss.stop()
