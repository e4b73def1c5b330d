"""Our exporter in virtual time, in-process: the real poller, ISS client (HTTP) and collector
against the sandbox on a ManualClock (tests/integration/test_slo_exactness.py drives a day with
it). The scheduler's only job, "call poll when planned_next says", is done by the loop here (as
in tests/integration/exporter_sim.py). No alert rule is evaluated here: the benchmark's
detection figures come from the real Prometheus and Alertmanager (bench.detection).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from exporter.app import ExporterApp
from exporter.clock import ManualClock
from exporter.config import load_config
from exporter.virtual import VirtualDriver

from . import scenario

Samples = dict[str, dict[tuple, float]]


def write_config(workdir: Path, iss_url: str, markets: dict | None = None) -> Path:
    data = {
        "iss": {"base_url": iss_url, "auth": "none", "timeout_seconds": 30, "retries": 0},
        "calendar": {"file": str(scenario.CALENDAR)},
        "poll": {"interval_seconds": scenario.POLL_INTERVAL, "publish_offset_seconds": scenario.PUBLISH_OFFSET,
                 "publish_grace_seconds": scenario.PUBLISH_GRACE,
                 "missing_window_seconds": scenario.MISSING_WINDOW},
        "delay_threshold_seconds": scenario.DELAY_THRESHOLD,
    }
    if markets is not None:
        data["markets"] = markets
    path = workdir / "bench-config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


class OurRun:
    """ExporterApp + sandbox ISS in-process on a ManualClock, driven by exporter.virtual's
    VirtualDriver (polled as the scheduler would, events at their moments)."""

    def __init__(self, workdir: Path, start: datetime = scenario.DAY_START, scale: float = 1.0,
                 with_faults: bool = True, markets: dict | None = None, latest_mode: str | None = None):
        self.clock = ManualClock(start)
        self.iss = scenario.make_sandbox(self.clock, scale=scale, with_faults=with_faults)
        if latest_mode is not None:  # sandbox knob: how ISS treats latest=1 on per-instrument routes (§3)
            self.iss.faults.set("latest_per_instrument", mode=latest_mode)
        self.config = load_config(str(write_config(workdir, self.iss.url, markets)), environ={})
        self.app = ExporterApp(self.config, self.clock)
        self.app.poller.plan_startup(self.clock.now())
        self.driver = VirtualDriver(self.app, self.clock)

    @property
    def polls(self) -> int:
        return self.driver.polls

    @property
    def poll_seconds(self) -> float:
        return self.driver.poll_seconds

    def close(self) -> None:
        self.iss.stop()
        self.app.client.close()

    def poll_due(self) -> None:
        self.driver.poll_due()

    def next_poll_ts(self) -> float:
        return self.driver.next_poll_ts()

    def samples(self) -> Samples:
        out: Samples = {}
        for family in self.app.collector.collect():
            for sample in family.samples:
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return out

    def run(self, end: datetime, events: list | None = None, evaluate: bool = False) -> None:
        """Poll as the scheduler would until virtual `end`, applying `events` (scenario.Event:
        `.apply(iss)`) at their moments. `evaluate` is a leftover of the removed rule model:
        only False is accepted."""
        if evaluate:
            raise ValueError("OurRun no longer evaluates alert rules: bench.detection runs the real ones")
        self.driver.run_until(end, events or (), target=self.iss)
