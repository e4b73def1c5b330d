"""A tiny ISS stand-in for poller conformance tests: it answers ISS-shaped JSON written from
iss-api.md §11 (each test names the fact its fixture encodes) and records every request.

The exporter under test is the real one (IssClient over HTTP, Poller, StateStore, collector);
only ISS is replaced, by `Route` functions the test writes: (path, query) -> JSON body, on the
shared `tests.support.FakeIss` (the `iss` fixture of tests/conformance/conftest.py).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import ExporterApp
from exporter.clock import MSK, ManualClock
from exporter.config import load_config
from tests.calendars import calendar_text
from tests.support import FakeIss, Route

__all__ = ["EQ_TRADESTATS", "FUTOI", "Exporter", "FakeIss", "Route", "at", "supercandles_page", "tradestats_row"]

# §4 / §11 column sets (SuperCandles: upper-case SYSTIME; FUTOI: lower-case systime).
EQ_TRADESTATS = ["tradedate", "tradetime", "secid", "pr_open", "pr_high", "pr_low", "pr_close", "pr_std", "vol",
                 "val", "trades", "pr_vwap", "pr_change", "trades_b", "trades_s", "val_b", "val_s", "vol_b",
                 "vol_s", "disb", "pr_vwap_b", "pr_vwap_s", "SYSTIME", "sec_pr_open", "sec_pr_high",
                 "sec_pr_low", "sec_pr_close"]
FUTOI = ["sess_id", "seqnum", "tradedate", "tradetime", "ticker", "clgroup", "pos", "pos_long", "pos_short",
         "pos_long_num", "pos_short_num", "systime", "trade_session_date"]


def at(hh: int, mm: int, ss: int = 0, day: int = 25) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=MSK)


def tradestats_row(day: str, tradetime: str, systime: str, secid: str = "SBER") -> list:
    row: list = [None] * len(EQ_TRADESTATS)
    row[0], row[1], row[2], row[22] = day, tradetime, secid, systime
    row[9] = 1000.0
    return row


def supercandles_page(rows: list[list], start: int, columns: list[str] = EQ_TRADESTATS,
                      pagesize: int = 1000) -> dict:
    """§11 "SuperCandles paging": `data` + `data.cursor` (INDEX = requested start, TOTAL, PAGESIZE)."""
    page = rows[start:start + pagesize]
    return {"data": {"columns": columns, "data": page},
            "data.cursor": {"columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, len(rows), pagesize]]}}


class Exporter:
    """The real exporter pieces against a FakeIss on a manual clock."""

    def __init__(self, tmp_path: Path, iss: FakeIss, start: datetime, markets: dict, days: str = "",
                 iss_options: dict | None = None):
        self.clock = ManualClock(start)
        calendar = tmp_path / "calendar.yml"
        calendar.write_text(calendar_text(days))
        config = {"iss": {"base_url": iss.url, "auth": "none", "timeout_seconds": 2, "retries": 0,
                          **(iss_options or {})},
                  "calendar": {"file": str(calendar)},
                  "poll": {"interval_seconds": 60, "publish_offset_seconds": 20, "publish_grace_seconds": 120},
                  "markets": markets}
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(config))
        self.app = ExporterApp(load_config(str(path)), self.clock)

    def poll(self, pair: tuple[str, str], moment: datetime):
        self.clock.set(moment)
        self.app.poller.poll(pair, force=True)
        self.app.poller.wait_background()  # previous-day reads run in the background (exporter/daily.py)
        return self.app.store.get(pair)

    def run_until(self, end: datetime) -> None:
        """Poll every pair when the poller plans it (as the scheduler would) until `end`."""
        poller, store = self.app.poller, self.app.store
        poller.plan_startup(self.clock.now())
        while True:
            upcoming = [s.next_poll_ts for s in store.snapshot.pairs.values() if s.next_poll_ts]
            nxt = min(upcoming) if upcoming else end.timestamp()
            if nxt > end.timestamp():
                self.clock.set(end)
                return
            self.clock.set(datetime.fromtimestamp(max(nxt, self.clock.timestamp()), MSK))
            for pair in store.snapshot.pairs:
                if poller.is_due(pair, self.clock.now()):
                    poller.poll(pair)
                    poller.wait_background()

    def metrics(self) -> dict:
        out = {}
        for family in text_string_to_metric_families(generate_latest(self.app.registry).decode()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def value(self, name: str, **labels: str) -> float:
        return self.metrics()[(name, tuple(sorted(labels.items())))]

    def close(self) -> None:
        self.app.client.close()
