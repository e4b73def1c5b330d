"""A billion-laughs calendar.yml written while the exporter runs (issue 14): the reload is
refused at once, the last good calendar stays in force, and /metrics keeps answering fast.
The real ExporterApp and HTTP server on loopback; no market is polled."""

from __future__ import annotations

import os
import time

import requests
import yaml

from exporter.app import ExporterApp
from exporter.clock import SystemClock
from exporter.config import load_config
from sandbox.procs import free_port
from tests.calendars import calendar_text
from tests.unit.test_calendar_files import calendar_bomb


def test_bomb_written_while_running_is_refused_and_scrapes_stay_fast(tmp_path):
    calendar = tmp_path / "calendar.yml"
    calendar.write_text(calendar_text("2030-01-01: holiday"), encoding="utf-8")
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump({
        "iss": {"base_url": f"http://127.0.0.1:{free_port()}", "retries": 0, "timeout_seconds": 1},
        "calendar": {"file": str(calendar), "reload_interval_seconds": 0.1},
        "markets": {m: {"enabled": False} for m in ("eq", "fx", "fo")},
    }), encoding="utf-8")
    app = ExporterApp(load_config(config_path, {}), SystemClock())
    port = free_port()
    app.start(f"127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert "algopack_calendar_last_reload_successful 1.0" in requests.get(url, timeout=5).text
        good = app.calendars.current
        tmp = calendar.with_suffix(".tmp")
        tmp.write_text(calendar_bomb("2030-01-02"), encoding="utf-8")
        os.replace(tmp, calendar)
        deadline = time.monotonic() + 5
        slowest = 0.0
        while app.calendars.last_reload_successful:
            assert time.monotonic() < deadline, "the bomb was never looked at"
            time.sleep(0.05)
        for _ in range(10):
            started = time.monotonic()
            text = requests.get(url, timeout=5).text
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.12)
        assert "algopack_calendar_last_reload_successful 0.0" in text
        assert slowest < 1.0, slowest
        assert app.calendars.current is good
        assert "aliases" in app.calendars.last_error and len(app.calendars.last_error) < 400
    finally:
        app.stop()
