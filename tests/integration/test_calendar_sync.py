"""calendar-sync against a real loopback ISS calendar server (sandbox/isscalendar.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from exporter.calendar import MARKETS, load_calendar, set_day, toggle_day
from exporter.calendar.sync import SyncError, sync_calendar
from exporter.config import IssConfig
from exporter.iss import IssClient
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, wait_http

from ..calendars import calendar_text

pytestmark = pytest.mark.integration

TARGET = calendar_text("# manual entries\n2026-07-15: holiday", comment="our calendar: comments must survive the sync")

YEAR = (date(2026, 1, 1), date(2026, 12, 31))


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """The 'exchange' calendar the sandbox serves: the shipped calendar.yml."""
    workdir = tmp_path_factory.mktemp("iss-calendar")
    source = workdir / "exchange.yml"
    source.write_text((REPO_ROOT / "calendar.yml").read_text())
    port = free_port()
    proc = ManagedProcess("iss-calendar", [sys.executable, "-m", "sandbox.isscalendar",
                                           "--listen", f"127.0.0.1:{port}", "--calendar", str(source)],
                          workdir / "iss-calendar.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/sandbox/health", timeout=20, proc=proc)
        yield url, source
    finally:
        proc.stop()


@pytest.fixture
def client(exchange):
    url, _ = exchange
    requests.post(f"{url}/sandbox/calendar-fault", json={"mode": "none"}, timeout=5).raise_for_status()
    with IssClient(IssConfig(base_url=url, retries=0, timeout_seconds=5)) as iss:
        yield iss
    requests.post(f"{url}/sandbox/calendar-fault", json={"mode": "none"}, timeout=5)


@pytest.fixture
def target(tmp_path) -> Path:
    path = tmp_path / "calendar.yml"
    path.write_text(TARGET)
    return path


def assert_same_year(ours, exchange_cal, skip=()):
    day = YEAR[0]
    while day <= YEAR[1]:
        if day not in skip:
            for market in MARKETS:
                assert ours.sessions(market, day) == exchange_cal.sessions(market, day), (day, market)
        day += timedelta(days=1)


def test_sync_fills_the_year_and_keeps_manual_entries(client, exchange, target):
    _, source = exchange
    result = sync_calendar(client, str(target), *YEAR)
    assert result.added > 80 and result.updated == 0
    assert result.kept_manual == 1  # 2026-07-15 manual holiday on an ordinary ISS working day
    text = target.read_text()
    assert "# our calendar: comments must survive the sync" in text and "# manual entries" in text
    ours = load_calendar(str(target))
    assert_same_year(ours, load_calendar(str(source)), skip={date(2026, 7, 15)})
    assert not ours.is_working_day(date(2026, 7, 15))
    assert ours.day_source(date(2026, 7, 15)) == "manual"
    assert ours.day_source(date(2026, 2, 23)) == "iss"
    # weekend-session hours came from session.json
    assert [(s.start.strftime("%H:%M"), s.end.strftime("%H:%M")) for s in ours.sessions("fo", date(2026, 2, 7))] \
        == [("10:00", "19:00")]

    # Manual overrides made after the sync survive a re-sync.
    set_day(str(target), date(2026, 2, 23), "holiday", "ops")
    toggle_day(str(target), date(2026, 2, 7), "ops")  # iss weekend session -> manual holiday
    before = target.read_bytes()
    again = sync_calendar(client, str(target), *YEAR)
    assert (again.added, again.updated) == (0, 0)
    assert again.kept_manual == 3
    assert target.read_bytes() == before
    ours = load_calendar(str(target))
    assert not ours.is_working_day(date(2026, 2, 23)) and not ours.is_working_day(date(2026, 2, 7))


def test_moved_weekend_session_is_updated_on_resync(client, exchange, target):
    _, source = exchange
    original = source.read_text()
    try:
        sync_calendar(client, str(target), *YEAR)
        ours = load_calendar(str(target))
        assert ours.is_working_day(date(2026, 12, 5), "eq") and not ours.is_working_day(date(2026, 11, 28))
        # The exchange moves the session back from 5-6 Dec to 28-29 Nov.
        weekend = {"eq": [["10:00", "19:00"]], "fo": [["10:00", "19:00"]]}
        for day in (date(2026, 11, 28), date(2026, 11, 29)):
            set_day(str(source), day, "working", "exchange", markets=weekend, source="iss")
        for day in (date(2026, 12, 5), date(2026, 12, 6)):
            set_day(str(source), day, "holiday", "exchange", source="iss")
        result = sync_calendar(client, str(target), *YEAR)
        assert (result.added, result.updated) == (2, 2), result.changes
        ours = load_calendar(str(target))
        assert ours.is_working_day(date(2026, 11, 28), "fo") and not ours.is_working_day(date(2026, 11, 28), "fx")
        assert not ours.is_working_day(date(2026, 12, 5))
        assert_same_year(ours, load_calendar(str(source)), skip={date(2026, 7, 15)})
    finally:
        source.write_text(original)


@pytest.mark.parametrize("mode", ["html", "malformed"])
def test_broken_answer_changes_nothing(client, exchange, target, mode):
    url, _ = exchange
    requests.post(f"{url}/sandbox/calendar-fault", json={"mode": mode}, timeout=5).raise_for_status()
    before = target.read_bytes()
    with pytest.raises(SyncError) as info:
        sync_calendar(client, str(target), *YEAR)
    assert "/iss/calendars.json" in str(info.value)
    assert target.read_bytes() == before


def test_null_flags_mean_unknown_not_closed(client, exchange, target):
    url, _ = exchange
    sync_calendar(client, str(target), *YEAR)
    before = target.read_bytes()
    requests.post(f"{url}/sandbox/calendar-fault", json={"mode": "null_flags"}, timeout=5).raise_for_status()
    result = sync_calendar(client, str(target), *YEAR)
    assert (result.added, result.updated) == (0, 0)
    assert target.read_bytes() == before


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", "calendar-sync", f"--config.file={config}", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_dry_run_writes_nothing_and_broken_answer_exits_nonzero(exchange, target, tmp_path):
    url, _ = exchange
    config = tmp_path / "config.yml"
    config.write_text(f"iss: {{base_url: '{url}', auth: none, retries: 0}}\ncalendar: {{file: {target.name}}}\n")
    before = target.read_bytes()
    dry = _cli(config, "--from", "2026-01-01", "--till", "2026-12-31", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+++" in dry.stdout and "+  2026-02-07:" in dry.stdout
    assert "would add" in dry.stdout
    assert "  2026-02-07 Sat: eq 10:00-19:00 (ISS); fo 10:00-19:00 (ISS); fx closed" in dry.stdout  # the hours
    assert target.read_bytes() == before

    requests.post(f"{url}/sandbox/calendar-fault", json={"mode": "html"}, timeout=5).raise_for_status()
    try:
        broken = _cli(config, "--from", "2026-01-01", "--till", "2026-12-31")
    finally:
        requests.post(f"{url}/sandbox/calendar-fault", json={"mode": "none"}, timeout=5)
    assert broken.returncode != 0
    assert "calendar-sync failed" in broken.stderr
    assert target.read_bytes() == before

    real = _cli(config, "--from", "2026-01-01", "--till", "2026-12-31")
    assert real.returncode == 0, real.stderr
    assert "kept manual 1" in real.stdout
    assert load_calendar(str(target)).day_source(date(2026, 2, 7)) == "iss"


def test_weekend_session_at_unusual_hours_gets_the_exchange_hours(client, exchange, target):
    """iss-api.md §11 "session schedule": the hours come from session_schedule (TQBR/RFUD main
    rows, auctions not counted), not from the weekday defaults or the file's weekend template."""
    _, source = exchange
    original = source.read_text()
    saturday = date(2026, 10, 3)
    try:
        set_day(str(source), saturday, "working", "exchange", source="iss",
                markets={"eq": [["11:00", "15:30"]], "fo": [["11:05", "15:35"]]})
        url, _ = exchange
        answer = requests.get(f"{url}/iss/calendars/stock/session.json",
                              params={"from": saturday.isoformat(), "till": saturday.isoformat()}, timeout=5).json()
        block = answer["session_schedule"]                    # §11: the real block name and columns
        rows = [dict(zip(block["columns"], row, strict=True)) for row in block["data"]]
        assert {(r["boardid"], r["type"], r["time_from"]) for r in rows} >= {
            ("TQBR", "opening_auction", "10:50:00"), ("TQBR", "main", "11:00:00")}
        result = sync_calendar(client, str(target), saturday - timedelta(days=1), saturday + timedelta(days=2))
        ours = load_calendar(str(target))
        assert [(s.start.strftime("%H:%M"), s.end.strftime("%H:%M")) for s in ours.sessions("eq", saturday)] \
            == [("11:00", "15:30")]
        assert [(s.start.strftime("%H:%M"), s.end.strftime("%H:%M")) for s in ours.sessions("fo", saturday)] \
            == [("11:05", "15:35")]
        assert not ours.is_working_day(saturday, "fx")
        assert "2026-10-03 Sat: eq 11:00-15:30 (ISS); fo 11:05-15:35 (ISS); fx closed" in result.hours
    finally:
        source.write_text(original)
