"""ISS calendar routes of the sandbox, generated from a calendar file.

Pure functions (`calendar_answer`) that `sandbox/iss.py` can import, plus a tiny standalone
server for the calendar-sync tests:

    python -m sandbox.isscalendar --listen 127.0.0.1:0 --calendar FILE

Routes (iss-api.md §8; column names differ on purpose between routes, as they do live):

| route | block | columns |
|---|---|---|
| `/iss/calendars.json?from&till&show_all_days=1` | `off_days` | tradedate, stock_workday, futures_workday, currency_workday, stock_trade_session_date, ..., stock_reason, ... |
| `/iss/calendars/{stock,futures,currency}.json?from&till` | `off_days` | TRADEDATE, IS_TRADED, TRADE_SESSION_DATE, REASON, UPDATETIME (upper case) |
| `/iss/calendars/{stock,futures,currency}/session.json?from&till` | `sessions` | stock/currency: tradedate, tradingsession, time_from "HH:MM:SS", time_till; futures: trade_session_date, tradingsession, time_from/time_till "YYYY-MM-DD HH:MM:SS" |

Reasons: N normal day, W weekend (session or not), H holiday, T transferred day off (a
weekday that is a holiday in the file). Weekend and holiday sessions belong to the next
working day (`*_trade_session_date`). Workday flags and hours come from
`Calendar.sessions`. Paging: 100 rows a page with `<block>.cursor`.

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
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from exporter.calendar import Calendar, CalendarStore

ISS_MARKETS = {"stock": "eq", "futures": "fo", "currency": "fx"}
PAGE_SIZE = 100
UPDATETIME = "2026-01-01 00:00:00"

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
        market = ISS_MARKETS[iss_market]
        rows = []
        for day in days:
            for number, sess in enumerate(calendar.sessions(market, day)):
                if iss_market == "futures":
                    rows.append([(_session_date(calendar, market, day) or day).isoformat(), number,
                                 sess.start.strftime("%Y-%m-%d %H:%M:%S"), sess.end.strftime("%Y-%m-%d %H:%M:%S"),
                                 UPDATETIME])
                else:
                    rows.append([day.isoformat(), number, sess.start.strftime("%H:%M:%S"),
                                 sess.end.strftime("%H:%M:%S"), UPDATETIME])
        date_column = "trade_session_date" if iss_market == "futures" else "tradedate"
        return _table("sessions", [date_column, "tradingsession", "time_from", "time_till", "updatetime"],
                      rows, start)
    if iss_market is not None:
        market = ISS_MARKETS[iss_market]
        rows = []
        for day in days:
            traded = None if null_flags else int(calendar.is_working_day(day, market))
            session_date = _session_date(calendar, market, day)
            rows.append([day.isoformat(), traded, session_date.isoformat() if session_date else None,
                         _reason(calendar, market, day), UPDATETIME])
        return _table("off_days", ["TRADEDATE", "IS_TRADED", "TRADE_SESSION_DATE", "REASON", "UPDATETIME"],
                      rows, start)
    columns = ["tradedate"]
    columns += [f"{m}_workday" for m in ISS_MARKETS]
    columns += [f"{m}_trade_session_date" for m in ISS_MARKETS]
    columns += [f"{m}_reason" for m in ISS_MARKETS]
    rows = []
    for day in days:
        row: list = [day.isoformat()]
        row += [None if null_flags else int(calendar.is_working_day(day, m)) for m in ISS_MARKETS.values()]
        for m in ISS_MARKETS.values():
            session_date = _session_date(calendar, m, day)
            row.append(session_date.isoformat() if session_date else None)
        row += [_reason(calendar, m, day) for m in ISS_MARKETS.values()]
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
