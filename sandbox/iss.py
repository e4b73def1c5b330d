"""Sandbox ISS: a fake MOEX ISS serving ALGOPACK routes from generated data.

    python -m sandbox.iss --listen 127.0.0.1:PORT --calendar calendar.yml --clock SPEC \
        --auth none|passport|apikey --scale 1 --seed 1 [--publish-delay 5:15]

In-process: `SandboxIss(calendar_path, clock, ...)`, `.start()`, `.url`, `.faults`,
`.stats()`, `.stop()`. Routes, knobs and counters: sandbox/README.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import re
import secrets
import signal
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from exporter.calendar import CalendarStore
from exporter.clock import MSK, Clock, clock_from_env
from sandbox.faults import FaultError, Faults, PublishPlan
from sandbox.issdata import COLUMNS, MARKETS, DataSource, format_systime

log = logging.getLogger("sandbox.iss")

PAGE_SIZE = 1000
MAX_RANGE_DAYS = 31
COOKIE_NAME = "MicexPassportCert"
CALENDAR_MARKETS = {"stock": "eq", "futures": "fo", "currency": "fx"}
LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>MOEX Passport</title></head><body>"
              b"<form method='post' action='/authenticate'><h1>\xd0\x92\xd1\x85\xd0\xbe\xd0\xb4</h1>"
              b"<input name='login'><input name='password' type='password'></form></body></html>")

_DAY_ROUTE = re.compile(r"^/iss/datashop/algopack/(eq|fx|fo)/(tradestats|orderstats|obstats|hi2)\.json$")
_SECID_ROUTE = re.compile(r"^/iss/datashop/algopack/(eq|fx|fo)/(tradestats|orderstats|obstats|hi2)/([^/]+)\.json$")
_FUTOI_DAY = re.compile(r"^/iss/analyticalproducts/futoi/securities\.json$")
_FUTOI_TICKER = re.compile(r"^/iss/analyticalproducts/futoi/securities/([^/]+)\.json$")
_CALENDARS = re.compile(r"^/iss/calendars(?:/(stock|futures|currency))?\.json$")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class Stats:
    """Per (route kind, market, dataset) requests, response bytes and status codes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple, dict] = {}

    def record(self, kind: str, market: str | None, dataset: str | None, status: int, size: int) -> None:
        with self._lock:
            row = self._rows.setdefault((kind, market, dataset), {"requests": 0, "bytes": 0, "status": Counter()})
            row["requests"] += 1
            row["bytes"] += size
            row["status"][str(status)] += 1

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()

    def snapshot(self) -> dict:
        with self._lock:
            routes = []
            total = {"requests": 0, "bytes": 0, "status": Counter()}
            for (kind, market, dataset), row in sorted(self._rows.items(), key=lambda kv: str(kv[0])):
                routes.append({"kind": kind, "market": market, "dataset": dataset, "requests": row["requests"],
                               "bytes": row["bytes"], "status": dict(row["status"])})
                total["requests"] += row["requests"]
                total["bytes"] += row["bytes"]
                total["status"].update(row["status"])
            total["status"] = dict(total["status"])
            return {"routes": routes, "total": total}


def _metadata(columns: list[str], sample: list | None) -> dict:
    meta = {}
    for idx, col in enumerate(columns):
        value = sample[idx] if sample is not None else None
        if col in ("tradedate", "trade_session_date"):
            meta[col] = {"type": "date", "bytes": 10, "max_size": 0}
        elif col == "tradetime":
            meta[col] = {"type": "time", "bytes": 10, "max_size": 0}
        elif col in ("systime", "updatetime"):
            meta[col] = {"type": "datetime", "bytes": 19, "max_size": 0}
        elif isinstance(value, bool) or isinstance(value, int):
            meta[col] = {"type": "int64"}
        elif isinstance(value, float):
            meta[col] = {"type": "double"}
        else:
            meta[col] = {"type": "string", "bytes": 36, "max_size": 0}
    return meta


def _parse_date(value: str | None, default: date, name: str) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise HttpError(400, f"bad {name}: {value!r}") from exc


class SandboxIss:
    """The fake ISS. `clock` is any exporter.clock.Clock."""

    def __init__(self, calendar_path: str, clock: Clock, auth: str = "none", scale: float = 1.0, seed: int = 1,
                 host: str = "127.0.0.1", port: int = 0, publish_delay: tuple[float, float] = (5.0, 15.0),
                 hi2_times: dict[str, str] | None = None, passport_login: str | None = None,
                 passport_password: str | None = None, api_key: str | None = None):
        if auth not in ("none", "passport", "apikey"):
            raise ValueError(f"auth must be none, passport or apikey (got {auth!r})")
        self.clock = clock
        self.auth = auth
        self.host, self.port = host, port
        self.calendar_path = calendar_path
        self._calendar_store = CalendarStore(calendar_path)
        self._calendar_checked = 0.0
        self._calendar_lock = threading.Lock()
        self.data = DataSource(lambda: self._calendar_store.current, scale=scale, seed=seed, hi2_times=hi2_times)
        self.faults = Faults(clock, default_delay=(float(publish_delay[0]), float(publish_delay[1])))
        self._stats = Stats()
        self.passport_login = passport_login or os.environ.get("SANDBOX_PASSPORT_LOGIN") or "demo"
        self.passport_password = passport_password or os.environ.get("SANDBOX_PASSPORT_PASSWORD") or "demo"
        self.api_key = api_key or os.environ.get("SANDBOX_API_KEY") or "demo-key"
        self._cookies: dict[str, tuple[float, int]] = {}  # token -> (issued sandbox ts, generation)
        self._cookie_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -----------------------------------------------------------------

    def start(self) -> SandboxIss:
        handler = type("Handler", (_Handler,), {"iss": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-iss", daemon=True)
        self._thread.start()
        log.info("sandbox-iss listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxIss:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stats(self) -> dict:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    @property
    def calendar(self):
        """The current calendar, re-read when the file changed (checked at most every 0.5 s)."""
        real_now = time.monotonic()
        if real_now - self._calendar_checked > 0.5:
            with self._calendar_lock:
                if real_now - self._calendar_checked > 0.5:
                    self._calendar_checked = real_now
                    if self._calendar_store.check():
                        self.data.invalidate()
        return self._calendar_store.current

    # ----- auth ----------------------------------------------------------------------

    def issue_cookie(self) -> str:
        token = secrets.token_hex(24)
        with self._cookie_lock:
            self._cookies[token] = (self.clock.now().timestamp(), self.faults.auth_generation)
        return token

    def cookie_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._cookie_lock:
            entry = self._cookies.get(token)
        if entry is None or entry[1] != self.faults.auth_generation:
            return False
        ttl = self.faults.peek("cookie_ttl")
        return ttl is None or self.clock.now().timestamp() - entry[0] <= ttl["seconds"]

    # ----- data ----------------------------------------------------------------------

    def published_segments(self, market: str, dataset: str, day: date, now_ts: float,
                           secid: str | None = None) -> list[tuple[list[list], str]]:
        """[(rows, systime)] of the published buckets of one day, in tradetime order."""
        self.calendar  # noqa: B018 - triggers the mtime check
        frame = self.data.frame(market, dataset, day)
        plan: PublishPlan = self.faults.plan(market, dataset, day)
        probe = self.data.probe("futoi" if dataset == "futoi" else market)
        dropped: set[str] = set()
        if plan.drop_secids is not None and dataset != "futoi":
            candidates = [i.secid for i in self.data.universe(market) if i.secid != probe]
            dropped = set(candidates[-plan.drop_secids[0]:]) if plan.drop_secids[0] > 0 else set()
        picks: dict[int, list[int] | None] = {}
        if secid is None:
            picks = dict.fromkeys(range(len(frame.buckets)))
        else:
            for b_idx, r_idx in frame.secid_positions(secid):
                picks.setdefault(b_idx, []).append(r_idx)  # type: ignore[union-attr]
        segments: list[tuple[list[list], str]] = []
        for b_idx, r_indexes in picks.items():
            bucket = frame.buckets[b_idx]
            moment = plan.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms, bucket.base_publish_ts)
            if moment is None or moment > now_ts:
                continue
            drop = set(dropped) if plan.drop_secids and bucket.end_ts >= plan.drop_secids[1] else set()
            if bucket.tradetime[:5] in plan.drop_probe:
                drop.add(probe)
            if r_indexes is None:
                rows = bucket.rows
                if drop:
                    rows = [row for row, sec in zip(bucket.rows, bucket.secids, strict=True) if sec not in drop]
            else:
                rows = [bucket.rows[r] for r in r_indexes if bucket.secids[r] not in drop]
            if rows:
                segments.append((rows, format_systime(moment)))
        return segments


def _page(segments: list[tuple[list[list], str]], start: int, systime_index: int) -> tuple[list[list], int]:
    total = sum(len(rows) for rows, _ in segments)
    out: list[list] = []
    offset = 0
    end = start + PAGE_SIZE
    for rows, systime in segments:
        seg_end = offset + len(rows)
        if seg_end > start and offset < end:
            for row in rows[max(0, start - offset):min(len(rows), end - offset)]:
                copy = list(row)
                copy[systime_index] = systime
                out.append(copy)
        offset = seg_end
        if offset >= end:
            break
    return out, total


class _Handler(BaseHTTPRequestHandler):
    iss: SandboxIss
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    _hang_seconds = 0.0
    server_version = "sandbox-iss"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("request %s", format % args)

    # ----- plumbing --------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8",
              headers: dict | None = None) -> int:
        if self._hang_seconds:
            delay, self._hang_seconds = self._hang_seconds, 0.0
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body)

    def _json(self, status: int, obj: object, headers: dict | None = None) -> int:
        return self._send(status, json.dumps(obj, ensure_ascii=False).encode(), headers=headers)

    def _body(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HttpError(400, f"invalid JSON body: {exc}") from exc

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        self._hang_seconds = 0.0
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path
        try:
            if path.startswith("/sandbox/"):
                self._control(path, query)
                return
        except HttpError as exc:
            self._json(exc.status, {"error": str(exc)})
            return
        except FaultError as exc:
            self._json(400, {"error": str(exc)})
            return
        self._iss(path, query)

    # ----- control API -----------------------------------------------------------------

    def _control(self, path: str, query: dict) -> None:
        iss = self.iss
        method = self.command
        if path == "/sandbox/health":
            self._json(200, {"status": "ok"})
        elif path == "/sandbox/clock":
            self._json(200, {"now": iss.clock.now().isoformat(), "spec": iss.clock.spec()})
        elif path == "/sandbox/stats" and method in ("GET", "HEAD"):
            self._json(200, iss.stats())
        elif path == "/sandbox/stats/reset" and method == "POST":
            iss.reset_stats()
            self._json(200, {"status": "ok"})
        elif path == "/sandbox/faults" and method in ("GET", "HEAD"):
            self._json(200, iss.faults.state())
        elif path == "/sandbox/faults" and method == "POST":
            iss.faults.update(self._body())
            self._json(200, iss.faults.state())
        elif path == "/sandbox/faults" and method == "DELETE":
            if query.get("history") in ("1", "true", "yes"):
                iss.faults.reset()
            else:
                iss.faults.clear()
            self._json(200, iss.faults.state())
        elif path.startswith("/sandbox/faults/") and method == "DELETE":
            name = path.rsplit("/", 1)[1]
            scoped = "market" in query or "dataset" in query
            iss.faults.clear(name, query.get("market") or None, query.get("dataset") or None, scoped=scoped)
            self._json(200, iss.faults.state())
        else:
            raise HttpError(404, f"no control route {method} {path}")

    # ----- ISS -------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str | None, str | None, tuple]:
        if m := _DAY_ROUTE.match(path):
            return "day", m.group(1), m.group(2), ()
        if m := _SECID_ROUTE.match(path):
            return "secid", m.group(1), m.group(2), (m.group(3),)
        if _FUTOI_DAY.match(path):
            return "day", "fo", "futoi", ()
        if m := _FUTOI_TICKER.match(path):
            return "secid", "fo", "futoi", (m.group(1),)
        if m := _CALENDARS.match(path):
            return "calendar", CALENDAR_MARKETS.get(m.group(1) or ""), "calendar", (m.group(1),)
        if path == "/authenticate":
            return "authenticate", None, "authenticate", ()
        return "other", None, None, ()

    def _iss(self, path: str, query: dict) -> None:
        kind, market, dataset, args = self._route(path)
        status, size = 500, 0
        try:
            status, size = self._iss_answer(kind, market, dataset, args, query)
        except HttpError as exc:
            status = exc.status
            size = self._send(exc.status, (str(exc) + "\n").encode(), "text/plain; charset=utf-8", exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
        except Exception:  # a bug must show up as a 500, not a hung client
            log.exception("sandbox-iss error path=%s", path)
            status = 500
            size = self._send(500, b"internal error\n", "text/plain; charset=utf-8")
        finally:
            self.iss._stats.record(kind, market, dataset, status, size)

    def _iss_answer(self, kind: str, market: str | None, dataset: str | None, args: tuple,
                    query: dict) -> tuple[int, int]:
        iss = self.iss
        faults = iss.faults
        if kind == "other":
            raise HttpError(404, "not found")
        hang = faults.take("hang", market, dataset)
        if hang:  # slept in _send, after every knob of this request was decided
            self._hang_seconds = hang["seconds"]
        error = faults.take("http_error", market, dataset)
        if error:
            headers = {"Retry-After": str(error["retry_after"])} if error.get("retry_after") is not None else {}
            raise HttpError(error["status"], f"sandbox http_error {error['status']}", headers)
        if kind == "authenticate":
            return self._authenticate()
        if not self._authorized():
            if iss.auth == "passport" and faults.peek("auth_html", market, dataset) is not None:
                return 200, self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")
            if iss.auth == "apikey" and self.headers.get("Authorization"):
                raise HttpError(403, "forbidden: bad API key")
            raise HttpError(401, "unauthorized")
        if faults.take("html", market, dataset) is not None:
            return 200, self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")
        start = self._int(query.get("start"), "start")
        if start > 0 and faults.take("break_paging", market, dataset) is not None:
            raise HttpError(500, "sandbox break_paging")
        if faults.take("malformed", market, dataset) is not None:
            return 200, self._send(200, b'{"data": {"metadata": {}, "columns": ["tradedate", "tradetime"')
        empty = faults.take("empty", market, dataset) is not None
        if kind == "calendar":
            blocks = self._calendar_blocks(args[0], query)
        else:
            blocks = self._data_blocks(kind, market, dataset, args, query, start, empty)
        missing = faults.take("missing_columns", market, dataset)
        if missing:
            for name, block in blocks.items():
                if "." not in name:
                    keep = [i for i, c in enumerate(block["columns"]) if c.lower() not in missing["columns"]]
                    _keep_columns(block, keep)
        blocks = _apply_iss_options(blocks, query)
        return 200, self._json(200, blocks)

    @staticmethod
    def _int(value: str | None, name: str) -> int:
        if value in (None, ""):
            return 0
        try:
            number = int(value)
        except ValueError as exc:
            raise HttpError(400, f"bad {name}: {value!r}") from exc
        if number < 0:
            raise HttpError(400, f"bad {name}: {value!r}")
        return number

    def _authorized(self) -> bool:
        iss = self.iss
        if iss.auth == "none":
            return True
        if iss.auth == "apikey":
            header = self.headers.get("Authorization") or ""
            return header.startswith("Bearer ") and secrets.compare_digest(header[7:].strip(), iss.api_key)
        token = None
        for part in (self.headers.get("Cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == COOKIE_NAME:
                token = value
        return iss.cookie_valid(token)

    def _authenticate(self) -> tuple[int, int]:
        iss = self.iss
        if iss.auth != "passport":
            return 200, self._send(200, b"passport not required\n", "text/plain; charset=utf-8")
        header = self.headers.get("Authorization") or ""
        ok = False
        if header.startswith("Basic "):
            try:
                login, _, password = base64.b64decode(header[6:]).decode().partition(":")
                ok = (secrets.compare_digest(login, iss.passport_login)
                      and secrets.compare_digest(password, iss.passport_password))
            except (binascii.Error, UnicodeDecodeError):
                ok = False
        if not ok:
            raise HttpError(401, "bad credentials", {"WWW-Authenticate": 'Basic realm="passport"'})
        token = iss.issue_cookie()
        return 200, self._send(200, b"OK\n", "text/plain; charset=utf-8",
                               {"Set-Cookie": f"{COOKIE_NAME}={token}; Path=/; HttpOnly"})

    def _data_blocks(self, kind: str, market: str, dataset: str, args: tuple, query: dict,
                     start: int, empty: bool) -> dict:
        iss = self.iss
        now = iss.clock.now()
        today = now.date()
        now_ts = now.timestamp()
        if kind == "day":
            first = last = _parse_date(query.get("date"), today, "date")
            secid = None
        else:
            secid = args[0]
            first = _parse_date(query.get("from"), today, "from")
            last = _parse_date(query.get("till"), max(today, first), "till")
            if last < first:
                raise HttpError(400, "till before from")
            first = max(first, last - timedelta(days=MAX_RANGE_DAYS - 1))
        segments: list[tuple[list[list], str]] = []
        if not empty:
            day = first
            while day <= last:
                if day <= today:
                    segments.extend(iss.published_segments(market, dataset, day, now_ts, secid))
                day += timedelta(days=1)
        if query.get("latest") in ("1", "true") and segments:
            segments = segments[-1:]
        if dataset == "futoi" and query.get("reversed") in ("1", "true"):
            segments = [(list(reversed(rows)), systime) for rows, systime in reversed(segments)]
        columns = COLUMNS[(market, dataset)]
        rows, total = _page(segments, start, columns.index("systime"))
        name = "futoi" if dataset == "futoi" else "data"
        return {
            name: {"metadata": _metadata(columns, rows[0] if rows else None), "columns": list(columns),
                   "data": rows},
            f"{name}.cursor": {"metadata": {"INDEX": {"type": "int64"}, "TOTAL": {"type": "int64"},
                                            "PAGESIZE": {"type": "int64"}},
                               "columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, total, PAGE_SIZE]]},
            f"{name}.dates": {"metadata": {"from": {"type": "date", "bytes": 10, "max_size": 0},
                                           "till": {"type": "date", "bytes": 10, "max_size": 0}},
                              "columns": ["from", "till"], "data": [[first.isoformat(), last.isoformat()]]},
        }

    def _calendar_blocks(self, iss_market: str | None, query: dict) -> dict:
        calendar = self.iss.calendar
        today = self.iss.clock.now().date()
        if query.get("from") or query.get("till") or query.get("show_all_days") in ("1", "true"):
            first = _parse_date(query.get("from"), date(today.year, 1, 1), "from")
            last = _parse_date(query.get("till"), min(first + timedelta(days=365), date(first.year, 12, 31)), "till")
            last = min(last, first + timedelta(days=366))
            if query.get("show_all_days") in ("1", "true"):
                days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
            else:
                days = sorted(d for d in calendar.days if first <= d <= last)
        else:
            days = sorted(calendar.days)

        def flag(day: date, market: str) -> int:
            return 1 if calendar.is_working_day(day, market) else 0

        def reason(day: date, market: str) -> str:
            working = calendar.is_working_day(day, market)
            if not working:
                return "H"
            if day.weekday() >= 5:
                return "W"
            return "T" if calendar.override(day) is not None else "N"

        if iss_market is None:
            columns = ["tradedate", "stock_workday", "futures_workday", "currency_workday",
                       "stock_reason", "futures_reason", "currency_reason"]
            rows = [[d.isoformat(), flag(d, "eq"), flag(d, "fo"), flag(d, "fx"),
                     reason(d, "eq"), reason(d, "fo"), reason(d, "fx")] for d in days]
        else:
            market = CALENDAR_MARKETS[iss_market]
            columns = ["tradedate", "is_traded", "trade_session_date", "reason", "updatetime"]
            try:
                updated = datetime.fromtimestamp(os.stat(self.iss.calendar_path).st_mtime, MSK)
            except OSError:
                updated = self.iss.clock.now()
            rows = [[d.isoformat(), flag(d, market), d.isoformat(), reason(d, market),
                     updated.strftime("%Y-%m-%d %H:%M:%S")] for d in days]
        start = self._int(query.get("start"), "start")
        page = rows[start:start + PAGE_SIZE]
        return {
            "off_days": {"metadata": _metadata(columns, page[0] if page else None), "columns": columns,
                         "data": page},
            "off_days.cursor": {"metadata": {"INDEX": {"type": "int64"}, "TOTAL": {"type": "int64"},
                                             "PAGESIZE": {"type": "int64"}},
                                "columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, len(rows), PAGE_SIZE]]},
        }


def _keep_columns(block: dict, keep: list[int]) -> None:
    block["columns"] = [block["columns"][i] for i in keep]
    if "metadata" in block:
        block["metadata"] = {c: block["metadata"][c] for c in block["columns"] if c in block["metadata"]}
    block["data"] = [[row[i] for i in keep] for row in block["data"]]


def _apply_iss_options(blocks: dict, query: dict) -> dict:
    only = query.get("iss.only")
    if only:
        wanted = {name.strip() for name in only.split(",") if name.strip()}
        blocks = {name: block for name, block in blocks.items() if name in wanted}
    for name, block in blocks.items():
        columns_param = query.get(f"{name}.columns")
        if columns_param:
            wanted_cols = [c.strip().lower() for c in columns_param.split(",") if c.strip()]
            lower = [c.lower() for c in block["columns"]]
            _keep_columns(block, [lower.index(c) for c in wanted_cols if c in lower])
    if query.get("iss.meta") == "off":
        for block in blocks.values():
            block.pop("metadata", None)
    return blocks


def _parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT (got {value!r})")
    return host, int(port)


def _parse_delay(value: str) -> tuple[float, float]:
    low, _, high = value.partition(":")
    try:
        pair = (float(low), float(high or low))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--publish-delay must be LO:HI seconds (got {value!r})") from exc
    if pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError("--publish-delay needs 0 <= LO <= HI")
    return pair


def _parse_hi2(value: str) -> dict[str, str]:
    out = {}
    for item in value.split(","):
        market, _, moment = item.partition("=")
        if market not in MARKETS or not re.match(r"^\d\d:\d\d(:\d\d)?$", moment):
            raise argparse.ArgumentTypeError(f"--hi2-time items are market=HH:MM[:SS] (got {item!r})")
        out[market] = moment
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.iss", description="Sandbox MOEX ISS (ALGOPACK)")
    parser.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0))
    parser.add_argument("--calendar", required=True, help="calendar.yml")
    parser.add_argument("--clock", default=None, help="clock spec (default: env ALGOPACK_CLOCK)")
    parser.add_argument("--auth", choices=("none", "passport", "apikey"), default="none")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--publish-delay", type=_parse_delay, default=(5.0, 15.0))
    parser.add_argument("--hi2-time", type=_parse_hi2, default=None)
    parser.add_argument("--passport-login", default=None)
    parser.add_argument("--passport-password", default=None)
    parser.add_argument("--log.level", dest="log_level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        clock = clock_from_env(args.clock)
    except ValueError as exc:
        parser.error(f"--clock: {exc}")
    iss = SandboxIss(args.calendar, clock, auth=args.auth, scale=args.scale, seed=args.seed,
                     host=args.listen[0], port=args.listen[1], publish_delay=args.publish_delay,
                     hi2_times=args.hi2_time, passport_login=args.passport_login,
                     passport_password=args.passport_password)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    iss.start()
    stopping.wait()
    iss.stop()
    return 0


__all__ = ["SandboxIss", "Stats", "PAGE_SIZE", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
