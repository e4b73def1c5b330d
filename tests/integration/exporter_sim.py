"""Drive the real exporter pieces against the sandbox ISS on a manual clock.

The scheduler's job is only "call poll(pair) when planned_next says"; `Simulation.run_until`
does exactly that in virtual time, so a trading day runs in seconds and deterministically.
Everything else (ISS client over HTTP, sandbox, calendar, poller, collector) is the real code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import ExporterApp
from exporter.calendar import CalendarStore
from exporter.clock import MSK, ManualClock
from exporter.config import load_config
from exporter.virtual import VirtualDriver
from sandbox.iss import SandboxIss
from sandbox.issdata import DataSource

REPO = Path(__file__).resolve().parents[2]
CALENDAR = REPO / "calendar.yml"
_SHARED_DATA: DataSource | None = None


def shared_data() -> DataSource:
    """One generated data set for all simulations of a test run (generation is the slow part)."""
    global _SHARED_DATA
    if _SHARED_DATA is None:
        store = CalendarStore(str(CALENDAR))
        _SHARED_DATA = DataSource(lambda: store.current, scale=1.0, seed=1)
    return _SHARED_DATA


def at(hh: int, mm: int, ss: int = 0, day: int = 25) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=MSK)


def write_config(tmp_path: Path, iss_url: str, calendar: Path = CALENDAR, **overrides) -> Path:
    data = {
        "iss": {"base_url": iss_url, "auth": "none", "timeout_seconds": 2, "retries": 0},
        "calendar": {"file": str(calendar)},
        "poll": {"interval_seconds": 60, "publish_offset_seconds": 20, "publish_grace_seconds": 120},
        "delay_threshold_seconds": 600,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


class Simulation:
    def __init__(self, tmp_path: Path, start: datetime, auth: str = "none", environ=None, **config_overrides):
        self.clock = ManualClock(start)
        self.iss = SandboxIss(str(CALENDAR), self.clock, auth=auth, seed=1, port=0)
        self.iss.data = shared_data()
        self.iss.start()
        overrides = dict(config_overrides)
        overrides["iss"] = {"auth": auth, "passport_url": self.iss.url + "/authenticate", **overrides.get("iss", {})}
        path = write_config(tmp_path, self.iss.url, **overrides)
        self.config = load_config(str(path), environ=environ)
        self.app = ExporterApp(self.config, self.clock)
        self.app.poller.plan_startup(self.clock.now())

    @property
    def app(self) -> ExporterApp:
        return self._app

    @app.setter
    def app(self, app: ExporterApp) -> None:
        """A test that restarts the exporter swaps the app; the driver follows it."""
        self._app = app
        self.driver = VirtualDriver(app, self.clock)

    def close(self) -> None:
        self.iss.stop()
        self.app.client.close()

    def poll_due(self) -> int:
        """Poll every pair whose next poll has come (exporter/virtual.py)."""
        return self.driver.poll_due()

    def run_until(self, end: datetime) -> None:
        """Advance virtual time poll by poll, as the scheduler would."""
        self.driver.run_until(end)

    def exposition(self) -> str:
        return generate_latest(self.app.registry).decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(self.exposition()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def value(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.metrics()[key]

    def pair_values(self, name: str) -> dict[tuple[str, str], float]:
        return {(dict(labels)["market"], dict(labels)["endpoint"]): value
                for (metric, labels), value in self.metrics().items()
                if metric == name and "endpoint" in dict(labels)}
