"""calendar-sync against ISS-shaped calendar answers written from iss-api.md §11.

The exporter side is the real one (IssClient over loopback HTTP, `sync_calendar`, the
`calendar-sync` command line); only ISS is replaced, by a tiny server answering the fixtures
below. Each fixture names the fact of iss-api.md it encodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from exporter.calendar import load_calendar
from exporter.calendar.issreader import schedule_hours
from exporter.calendar.sync import sync_calendar
from exporter.config import IssConfig
from exporter.iss import IssClient
from tests.calendars import calendar_text

REPO_ROOT = Path(__file__).resolve().parents[2]
FRI, SAT, SUN, MON = date(2027, 3, 12), date(2027, 3, 13), date(2027, 3, 14), date(2027, 3, 15)
UPD = "2027-01-10 12:00:00"

# §11 "off days": /iss/calendars.json block off_days with tradedate, {stock,futures,currency}_workday,
# *_trade_session_date, *_reason — in an order that differs from §8's (map by name).
OFF_DAYS = {"off_days": {
    "columns": ["tradedate", "stock_workday", "stock_trade_session_date", "stock_reason",
                "futures_workday", "futures_trade_session_date", "futures_reason",
                "currency_workday", "currency_trade_session_date", "currency_reason"],
    "data": [
        ["2027-03-12", 1, "2027-03-12", "N", 1, "2027-03-12", "N", 1, "2027-03-12", "N"],
        # §7/§11 "weekend sessions": a Saturday session counts as part of the NEXT trading day
        ["2027-03-13", 1, "2027-03-15", "W", 1, "2027-03-15", "W", 0, None, "W"],
        ["2027-03-14", 0, None, "W", 0, None, "W", 0, None, "W"],
        ["2027-03-15", 1, "2027-03-15", "N", 1, "2027-03-15", "N", 1, "2027-03-15", "N"],
    ]}}

# §11 "off days": the per-market routes use is_traded, trade_session_date, reason, updatetime.
MARKET_OFF_DAYS = {
    "stock": [["2027-03-12", 1, "2027-03-12", "N", UPD], ["2027-03-13", 1, "2027-03-15", "W", UPD],
              ["2027-03-14", 0, None, "W", UPD], ["2027-03-15", 1, "2027-03-15", "N", UPD]],
    "futures": [["2027-03-12", 1, "2027-03-12", "N", UPD], ["2027-03-13", 1, "2027-03-15", "W", UPD],
                ["2027-03-14", 0, None, "W", UPD], ["2027-03-15", 1, "2027-03-15", "N", UPD]],
    "currency": [["2027-03-12", 1, "2027-03-12", "N", UPD], ["2027-03-13", 0, None, "W", UPD],
                 ["2027-03-14", 0, None, "W", UPD], ["2027-03-15", 1, "2027-03-15", "N", UPD]],
}

# §11 "session schedule", stock: block session_schedule (+ .types), columns tradedate,
# tradingsession, boardid, secid, type, time_from, time_till, updatetime; times HH:MM:SS;
# auction rows next to the main session; filter by board TQBR. The Saturday session runs at
# hours no default or template has (11:00-15:30); SMAL's rows must be dropped.
STOCK_COLUMNS = ["tradedate", "tradingsession", "boardid", "secid", "type", "time_from", "time_till", "updatetime"]
STOCK_ROWS = [
    ["2027-03-12", 1, "TQBR", None, "opening_auction", "09:50:00", "10:00:00", UPD],
    ["2027-03-12", 1, "TQBR", None, "main", "10:00:00", "18:39:59", UPD],
    ["2027-03-12", 1, "TQBR", None, "closing_auction", "18:40:00", "18:50:00", UPD],
    ["2027-03-12", 2, "TQBR", None, "opening_auction", "19:00:00", "19:05:00", UPD],
    ["2027-03-12", 2, "TQBR", None, "main", "19:05:00", "23:50:00", UPD],
    ["2027-03-13", 5, "TQBR", None, "opening_auction", "10:50:00", "11:00:00", UPD],
    ["2027-03-13", 5, "TQBR", None, "main", "11:00:00", "15:30:00", UPD],
    ["2027-03-13", 5, "TQBR", None, "closing_auction", "15:30:00", "15:40:00", UPD],
    ["2027-03-13", 5, "SMAL", None, "main", "09:00:00", "19:00:00", UPD],
    ["2027-03-15", 1, "TQBR", None, "main", "10:00:00", "18:40:00", UPD],
]
# §11 "session schedule", futures: trade_session_date, boardid, secid, type, time_from, time_till,
# updatetime; full datetimes; the Saturday session carries the next working day (Monday) as
# trade_session_date; the clearing after Friday's session runs past midnight (§7: 23:50-00:30).
FUTURES_COLUMNS = ["trade_session_date", "boardid", "secid", "type", "time_from", "time_till", "updatetime"]
FUTURES_ROWS = [
    ["2027-03-12", "RFUD", None, "opening_auction", "2027-03-12 08:50:00", "2027-03-12 09:00:00", UPD],
    ["2027-03-12", "RFUD", None, "main", "2027-03-12 09:00:00", "2027-03-12 23:50:00", UPD],
    ["2027-03-12", "RFUD", None, "clearing", "2027-03-12 23:50:00", "2027-03-13 00:30:00", UPD],
    ["2027-03-15", "RFUD", None, "opening_auction", "2027-03-13 10:50:00", "2027-03-13 11:00:00", UPD],
    ["2027-03-15", "RFUD", None, "main", "2027-03-13 11:00:00", "2027-03-13 15:30:00", UPD],
    ["2027-03-15", "ROPD", None, "main", "2027-03-13 08:00:00", "2027-03-13 20:00:00", UPD],
    ["2027-03-15", "RFUD", None, "main", "2027-03-15 09:00:00", "2027-03-15 23:50:00", UPD],
]
CURRENCY_ROWS = [
    ["2027-03-12", 1, "CETS", None, "opening_auction", "06:50:00", "07:00:00", UPD],
    ["2027-03-12", 1, "CETS", None, "main", "07:00:00", "19:00:00", UPD],
    ["2027-03-12", 1, "CNGD", None, "main", "10:00:00", "23:50:00", UPD],
]
TYPES = {"columns": ["type", "title"], "data": [["opening_auction", "opening auction"], ["main", "main"],
                                                ["closing_auction", "closing auction"], ["clearing", "clearing"]]}


def schedule(columns: list[str], rows: list[list]) -> dict:
    return {"session_schedule": {"columns": columns, "data": rows}, "session_schedule.types": TYPES}


class FakeCalendarIss:
    """Serves the fixtures; `answers` maps a path to a JSON body (None: 404)."""

    def __init__(self, answers: dict[str, dict]):
        self.answers = answers
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                url = urlsplit(self.path)
                fake.requests.append(url.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = fake.answers.get(url.path)
                if body is not None and int(query.get("start") or 0) > 0:
                    body = {name: {**block, "data": []} for name, block in body.items()}
                data = json.dumps(body if body is not None else {"error": "not found"}).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def real_answers() -> dict[str, dict]:
    return {
        "/iss/calendars.json": OFF_DAYS,
        "/iss/calendars/stock/session.json": schedule(STOCK_COLUMNS, STOCK_ROWS),
        "/iss/calendars/futures/session.json": schedule(FUTURES_COLUMNS, FUTURES_ROWS),
        "/iss/calendars/currency/session.json": schedule(STOCK_COLUMNS, CURRENCY_ROWS),
    }


@pytest.fixture
def target(tmp_path) -> Path:
    path = tmp_path / "calendar.yml"
    path.write_text(calendar_text(comment="ours"), encoding="utf-8")
    return path


def _sync(answers: dict[str, dict], target: Path):
    fake = FakeCalendarIss(answers)
    try:
        with IssClient(IssConfig(base_url=fake.url, retries=0, timeout_seconds=5)) as client:
            return sync_calendar(client, str(target), FRI, MON), fake.requests
    finally:
        fake.close()


def hours(cal, market: str, day: date) -> list[tuple[str, str]]:
    return [(f"{s.start:%H:%M}", f"{s.end:%H:%M}") for s in cal.sessions(market, day)]


def test_weekend_session_gets_its_real_hours_from_session_schedule(target):
    result, requests = _sync(real_answers(), target)
    assert {"/iss/calendars/stock/session.json", "/iss/calendars/futures/session.json"} <= set(requests)
    cal = load_calendar(str(target))
    # §11: main-session rows of TQBR / RFUD only; auctions are not sessions; the futures
    # session is filed under the date of time_from (Saturday), not trade_session_date (Monday).
    assert hours(cal, "eq", SAT) == [("11:00", "15:30")]
    assert hours(cal, "fo", SAT) == [("11:00", "15:30")]
    assert hours(cal, "fx", SAT) == []
    assert cal.day_source(SAT) == "iss"
    # the ordinary days need no entry; Monday did not get Saturday's hours, Sunday stays closed
    assert [cal.day_source(d) for d in (FRI, SUN, MON)] == ["default"] * 3
    assert not cal.is_working_day(SUN)
    assert (result.added, result.updated) == (1, 0), result.changes
    assert result.hours == ["2027-03-13 Sat: eq 11:00-15:30 (ISS); fo 11:00-15:30 (ISS); fx closed"]


def test_per_market_off_days_routes(target):
    answers = real_answers()
    answers["/iss/calendars.json"] = {"off_days": {"columns": ["tradedate"], "data": [["2027-03-12"]]}}
    for iss, rows in MARKET_OFF_DAYS.items():
        answers[f"/iss/calendars/{iss}.json"] = {"off_days": {
            "columns": ["tradedate", "is_traded", "trade_session_date", "reason", "updatetime"], "data": rows}}
    _sync(answers, target)
    cal = load_calendar(str(target))
    assert hours(cal, "eq", SAT) == [("11:00", "15:30")] and hours(cal, "fx", SAT) == []


def test_schedule_without_our_board_keeps_template_hours(target):
    """A schedule that lists only other boards gives no hours (never SMAL's)."""
    answers = real_answers()
    answers["/iss/calendars/stock/session.json"] = schedule(STOCK_COLUMNS, [r for r in STOCK_ROWS if r[2] != "TQBR"])
    _sync(answers, target)
    cal = load_calendar(str(target))
    assert hours(cal, "eq", SAT) == [("10:00", "18:40"), ("19:05", "23:50")]   # the market's default
    assert hours(cal, "fo", SAT) == [("11:00", "15:30")]


def test_schedule_hours_rows():
    records = [dict(zip(STOCK_COLUMNS, row, strict=True)) for row in STOCK_ROWS]
    got = schedule_hours(records, "TQBR")
    assert got[FRI] == [["10:00", "18:40"], ["19:05", "23:50"]]    # 18:39:59 is the end of 18:39, i.e. 18:40
    assert got[SAT] == [["11:00", "15:30"]]
    futures = [dict(zip(FUTURES_COLUMNS, row, strict=True)) for row in FUTURES_ROWS]
    got = schedule_hours(futures, "RFUD")
    assert got[FRI] == [["09:00", "23:50"]]        # the clearing into Saturday is not a session
    assert got[SAT] == [["11:00", "15:30"]] and got[MON] == [["09:00", "23:50"]]
    # a main session running past midnight ends the calendar day at 23:59
    late = [{"trade_session_date": "2027-03-15", "boardid": "RFUD", "type": "main",
             "time_from": "2027-03-13 19:00:00", "time_till": "2027-03-14 01:00:00"}]
    assert schedule_hours(late, "RFUD") == {SAT: [["19:00", "23:59"]]}


def test_cli_dry_run_shows_the_hours_per_day(target, tmp_path):
    fake = FakeCalendarIss(real_answers())
    try:
        config = tmp_path / "config.yml"
        config.write_text(f"iss: {{base_url: '{fake.url}', auth: none, retries: 0}}\n"
                          f"calendar: {{file: {target.name}}}\n", encoding="utf-8")
        before = target.read_bytes()
        done = subprocess.run([sys.executable, "-m", "exporter", "calendar-sync", f"--config.file={config}",
                               "--from", FRI.isoformat(), "--till", MON.isoformat(), "--dry-run"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    finally:
        fake.close()
    assert done.returncode == 0, done.stderr
    assert "session hours of the special trading days" in done.stdout
    assert "  2027-03-13 Sat: eq 11:00-15:30 (ISS); fo 11:00-15:30 (ISS); fx closed" in done.stdout
    assert target.read_bytes() == before
