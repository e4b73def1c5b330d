"""ISS calendar routes of the sandbox, generated from a calendar file.

Pure functions (`calendar_answer`, the ONE fake of the ISS calendar: `sandbox/iss.py`
serves /iss/calendars*.json through it) plus a tiny standalone server for the
calendar-sync tests:

    python -m sandbox.isscalendar --listen 127.0.0.1:0 --calendar FILE

What each answer models, and the fact of shared iss-api.md it follows (§11 wins over §8):

| route / behaviour | what the sandbox answers | fact |
|---|---|---|
| `/iss/calendars.json?from&till&show_all_days=1` | block `off_days`, columns grouped per market: tradedate, stock_workday, stock_trade_session_date, stock_reason, futures_workday, futures_trade_session_date, futures_reason, currency_workday, currency_trade_session_date, currency_reason (the order differs from §8's) | §11 "off days" |
| `/iss/calendars/{stock,futures,currency}.json?from&till` | block `off_days`: tradedate, is_traded, trade_session_date, reason, updatetime | §11 "off days", §8 |
| workday flags | 1/0 (null with the `null_flags` fault: "unknown") | §8 |
| reasons | N normal day, W weekend (session or not), H holiday, T transferred day off (unused) | §8 |
| weekend/holiday sessions | `*_trade_session_date` = the NEXT working day of that market | §7, §11 "weekend sessions" |
| `/iss/calendars/{stock,currency}/session.json?from&till` | block `session_schedule` (+ `session_schedule.types`): tradedate, tradingsession, boardid, secid, type, time_from, time_till, updatetime; times "HH:MM:SS" | §11 "session schedule" |
| `/iss/calendars/futures/session.json?from&till` | block `session_schedule` (+ `.types`): trade_session_date, boardid, secid, type, time_from, time_till, updatetime; times "YYYY-MM-DD HH:MM:SS"; a weekend session's trade_session_date is the next working day | §11 "session schedule", §8 |
| schedule rows | per session of the calendar file: an `opening_auction` row (10 min before), the `main` row (the session's own hours), a `closing_auction` row for stock/currency (10 min after); futures also a `clearing` row 23:50-00:30 that crosses midnight on days trading to 23:50 | §11 "session schedule", §7 |
| boards | stock TQBR, currency CETS, futures RFUD; plus rows of another board (SMAL / CNGD / ROPD) with other hours that a reader must filter out | §2, §11 "session schedule" |
| stock `tradingsession` | 0 morning (starts before 10:00), 1 main, 2 evening (a later session), 5 weekend/holiday session | §8 |
| paging | 100 rows a page with `<block>.cursor` (INDEX, TOTAL, PAGESIZE) | §8 "page with start", §11 (aiomoex convention) |
| range | at most one year per request (400 otherwise) | §8 |

Workday flags and hours come from `Calendar.sessions` of the file.

Standalone server control (no auth): `POST /sandbox/calendar-fault` with
`{"mode": "html"|"malformed"|"null_flags"|"none"}`; `GET /sandbox/health`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from exporter.calendar import Calendar, CalendarStore

ISS_MARKETS = {"stock": "eq", "futures": "fo", "currency": "fx"}
BOARDS = {"stock": "TQBR", "currency": "CETS", "futures": "RFUD"}   # iss-api.md §2
OTHER_BOARDS = {"stock": "SMAL", "currency": "CNGD", "futures": "ROPD"}  # rows a reader must drop
OTHER_BOARD_HOURS = (time(6, 0), time(23, 59))
PAGE_SIZE = 100
UPDATETIME = "2026-01-01 00:00:00"
AUCTION = timedelta(minutes=10)
SCHEDULE_TYPES = [
    ["opening_auction", "Аукцион открытия"],
    ["main", "Основная торговая сессия"],
    ["closing_auction", "Аукцион закрытия"],
    ["clearing", "Клиринг"],
]

_ROUTE = re.compile(r"^/iss/calendars(?:/(stock|futures|currency))?(/session)?\.json$")


def _range(calendar: Calendar, query: Mapping[str, str], today: date) -> list[date]:
    start = date.fromisoformat(query.get("from") or today.isoformat())
    till = date.fromisoformat(query.get("till") or (start + timedelta(days=30)).isoformat())
    if (till - start).days > 366:
        raise ValueError("range longer than one year")
    return [start + timedelta(days=i) for i in range((till - start).days + 1)]


def _reason(calendar: Calendar, market: str, day: date) -> str:
    if day.weekday() >= 5:
        return "W"
    if calendar.day_status(day) == "holiday" or (calendar.override(day) is not None
                                                 and calendar.override(day).markets is not None):
        return "H"
    return "N"


def _session_date(calendar: Calendar, market: str, day: date) -> date | None:
    if not calendar.is_working_day(day, market):
        return None
    if _reason(calendar, market, day) == "N":
        return day
    following = day + timedelta(days=1)
    for _ in range(30):  # the next ordinary working day of that market
        if following.weekday() < 5 and calendar.is_working_day(following, market):
            return following
        following += timedelta(days=1)
    return None


def _table(block: str, columns: list[str], rows: list[list], start: int) -> dict:
    page = rows[start:start + PAGE_SIZE]
    return {
        block: {"metadata": {c: {"type": "string"} for c in columns}, "columns": columns, "data": page},
        f"{block}.cursor": {"columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, len(rows), PAGE_SIZE]]},
    }


def _stock_session_number(calendar: Calendar, market: str, day: date, index: int, start: time) -> int:
    if _reason(calendar, market, day) != "N":
        return 5
    if start < time(10, 0):
        return 0
    earlier_main = any(time(10, 0) <= s.start.time() for s in calendar.sessions(market, day)[:index])
    return 2 if earlier_main else 1


def _schedule_rows(calendar: Calendar, iss_market: str, day: date) -> list[list]:
    """session_schedule rows of one calendar day (iss-api.md §11 "session schedule")."""
    market = ISS_MARKETS[iss_market]
    futures = iss_market == "futures"
    sessions = calendar.sessions(market, day)
    if not sessions:
        return []
    trade_date = (_session_date(calendar, market, day) or day) if futures else day
    spans: list[tuple[int, str, datetime, datetime, str]] = []  # (tradingsession, type, from, till, board)
    for index, sess in enumerate(sessions):
        start, end = sess.start.replace(tzinfo=None), sess.end.replace(tzinfo=None)
        number = _stock_session_number(calendar, market, day, index, start.time())
        spans.append((number, "opening_auction", start - AUCTION, start, BOARDS[iss_market]))
        spans.append((number, "main", start, end, BOARDS[iss_market]))
        if not futures and end + AUCTION < datetime.combine(day, time(23, 59)):
            spans.append((number, "closing_auction", end, end + AUCTION, BOARDS[iss_market]))
    if futures and sessions[-1].end.time() >= time(23, 50):
        clearing = datetime.combine(day, time(23, 50))
        spans.append((0, "clearing", clearing, clearing + timedelta(minutes=40), BOARDS[iss_market]))
    other_from, other_till = (datetime.combine(day, t) for t in OTHER_BOARD_HOURS)
    spans.append((1, "main", other_from, other_till, OTHER_BOARDS[iss_market]))
    rows = []
    for number, kind, moment_from, moment_till, board in spans:
        if futures:
            rows.append([trade_date.isoformat(), board, None, kind, moment_from.strftime("%Y-%m-%d %H:%M:%S"),
                         moment_till.strftime("%Y-%m-%d %H:%M:%S"), UPDATETIME])
        else:
            rows.append([day.isoformat(), number, board, None, kind, moment_from.strftime("%H:%M:%S"),
                         moment_till.strftime("%H:%M:%S"), UPDATETIME])
    return rows


STOCK_SCHEDULE_COLUMNS = ["tradedate", "tradingsession", "boardid", "secid", "type", "time_from", "time_till",
                          "updatetime"]
FUTURES_SCHEDULE_COLUMNS = ["trade_session_date", "boardid", "secid", "type", "time_from", "time_till",
                            "updatetime"]
MARKET_OFF_DAYS_COLUMNS = ["tradedate", "is_traded", "trade_session_date", "reason", "updatetime"]


def calendar_answer(calendar: Calendar, path: str, query: Mapping[str, str], today: date,
                    null_flags: bool = False) -> dict | None:
    """ISS JSON for a calendar route, or None when `path` is not one."""
    match = _ROUTE.match(path)
    if not match:
        return None
    iss_market, session = match.group(1), match.group(2)
    days = _range(calendar, query, today)
    start = int(query.get("start") or 0)
    if session:
        if iss_market is None:
            return None
        rows = [row for day in days for row in _schedule_rows(calendar, iss_market, day)]
        columns = FUTURES_SCHEDULE_COLUMNS if iss_market == "futures" else STOCK_SCHEDULE_COLUMNS
        answer = _table("session_schedule", columns, rows, start)
        answer["session_schedule.types"] = {
            "metadata": {"type": {"type": "string"}, "title": {"type": "string"}},
            "columns": ["type", "title"], "data": [list(t) for t in SCHEDULE_TYPES]}
        return answer
    if iss_market is not None:
        market = ISS_MARKETS[iss_market]
        rows = []
        for day in days:
            traded = None if null_flags else int(calendar.is_working_day(day, market))
            session_date = _session_date(calendar, market, day)
            rows.append([day.isoformat(), traded, session_date.isoformat() if session_date else None,
                         _reason(calendar, market, day), UPDATETIME])
        return _table("off_days", list(MARKET_OFF_DAYS_COLUMNS), rows, start)
    columns = ["tradedate"]
    for iss in ISS_MARKETS:
        columns += [f"{iss}_workday", f"{iss}_trade_session_date", f"{iss}_reason"]
    rows = []
    for day in days:
        row: list = [day.isoformat()]
        for m in ISS_MARKETS.values():
            session_date = _session_date(calendar, m, day)
            row += [None if null_flags else int(calendar.is_working_day(day, m)),
                    session_date.isoformat() if session_date else None, _reason(calendar, m, day)]
        rows.append(row)
    return _table("off_days", columns, rows, start)


HTML_PAGE = b"<html><head><title>MOEX Passport</title></head><body>Please log in</body></html>"


class CalendarServer:
    """Standalone calendar-only ISS (tests of calendar-sync)."""

    def __init__(self, calendar_path: str, host: str = "127.0.0.1", port: int = 0):
        self.store = CalendarStore(calendar_path)
        self.fault = "none"
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                url = urlsplit(self.path)
                if url.path == "/sandbox/health":
                    return self._send(200, b'{"status": "ok"}')
                server.requests += 1
                server.store.check()
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if server.fault == "html":
                    return self._send(200, HTML_PAGE, "text/html; charset=utf-8")
                if server.fault == "malformed":
                    return self._send(200, b'{"off_days": {"columns": ["tradedate"], "data": [[')
                try:
                    answer = calendar_answer(server.store.current, url.path, query, date.today(),
                                             null_flags=server.fault == "null_flags")
                except ValueError as exc:
                    return self._send(400, json.dumps({"error": str(exc)}).encode())
                if answer is None:
                    return self._send(404, b'{"error": "not found"}')
                return self._send(200, json.dumps(answer).encode())

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                if urlsplit(self.path).path != "/sandbox/calendar-fault":
                    return self._send(404, b"{}")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    mode = json.loads(self.rfile.read(length) or b"{}").get("mode", "none")
                except (ValueError, AttributeError):
                    return self._send(400, b'{"error": "body must be JSON {\\"mode\\": ...}"}')
                if mode not in ("none", "html", "malformed", "null_flags"):
                    return self._send(400, b'{"error": "unknown mode"}')
                server.fault = mode
                return self._send(200, json.dumps({"mode": mode}).encode())

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="iss-calendar")
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.isscalendar")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--calendar", required=True)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = CalendarServer(args.calendar, host or "127.0.0.1", int(port))
    print(f"sandbox-iss-calendar listening on {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
