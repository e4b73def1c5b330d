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
import struct
import threading
import time
import zlib
from collections import Counter
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from exporter import datasets as registry
from exporter.calendar import CalendarStore
from exporter.clock import MSK, Clock, clock_from_env
from sandbox import isscalendar
from sandbox.faults import FaultError, Faults, PublishPlan
from sandbox.issdata import MARKETS, DataSource, columns_for, format_systime, systime_index

log = logging.getLogger("sandbox.iss")

PAGE_SIZE = 1000
MAX_RANGE_DAYS = 31
COOKIE_NAME = "MicexPassportCert"
CALENDAR_MARKETS = {"stock": "eq", "futures": "fo", "currency": "fx"}
LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>MOEX Passport</title></head><body>"
              b"<form method='post' action='/authenticate'><h1>\xd0\x92\xd1\x85\xd0\xbe\xd0\xb4</h1>"
              b"<input name='login'><input name='password' type='password'></form></body></html>")
# iss-api.md §11 "refusals": throttling is a 403 HTML page; a dataset outside the
# subscription is a 200 HTML page saying it is available only to subscribers.
THROTTLE_PAGE = (b"<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body>"
                 b"<h1>Too Many Requests</h1><p>Request rate limit exceeded. Try again later.</p></body></html>")
NO_SUBSCRIPTION_PAGE = ("<!DOCTYPE html><html><head><title>MOEX ISS</title></head><body>"
                        "<p>Данные доступны только подписчикам.</p>"
                        "<p>This data is available only to subscribers.</p></body></html>").encode()
FUTOI_ROW_CAP = 1000
BOMB_BLOCK = 1 << 20



def _template(path: str, markets: tuple[str, ...], name: str) -> re.Pattern:
    """A registry route template (`{market}`, `{dataset}`, `{secid}`) as a regex."""
    pattern = re.escape(path).replace(r"\{market\}", "(?P<market>" + "|".join(markets) + ")")
    pattern = pattern.replace(r"\{dataset\}", re.escape(name)).replace(r"\{secid\}", "(?P<secid>[^/]+)")
    return re.compile(f"^{pattern}$")


_ROUTES: dict[tuple, list] = {}


def dataset_routes() -> list[tuple[re.Pattern, str, registry.Dataset]]:
    """(regex, "day"|"secid", spec) for every dataset of the registry (exporter/datasets.py)."""
    key = tuple(registry.specs())
    if key not in _ROUTES:
        _ROUTES.clear()
        _ROUTES[key] = [(_template(path, spec.markets, spec.name), kind, spec) for spec in key
                        for kind, path in (("day", spec.day_path), ("secid", spec.path))]
    return _ROUTES[key]

_CALENDARS = re.compile(r"^/iss/calendars(?:/(stock|futures|currency))?(/session)?\.json$")


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
        elif col.lower() in ("systime", "updatetime"):
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
        self.stopping = threading.Event()  # ends dripping answers on stop()
        self._bombs: dict[int, bytes] = {}
        self._bomb_lock = threading.Lock()

    # ----- lifecycle -----------------------------------------------------------------

    def start(self) -> SandboxIss:
        self.stopping.clear()
        handler = type("Handler", (_Handler,), {"iss": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-iss", daemon=True)
        self._thread.start()
        log.info("sandbox-iss listening on %s", self.url)
        return self

    def stop(self) -> None:
        self.stopping.set()
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

    def gzip_bomb(self, unpacked_bytes: int) -> bytes:
        """A gzip stream (~1 kB per MiB) that unpacks to `unpacked_bytes`: a JSON-looking
        prefix, then spaces. Built from one compressed 1 MiB block repeated (a full flush
        makes every block's deflate bytes identical), cached per size; never unpacked here."""
        with self._bomb_lock:
            cached = self._bombs.get(unpacked_bytes)
            if cached is None:
                cached = _gzip_bomb(unpacked_bytes)
                self._bombs = {unpacked_bytes: cached}  # keep one size only
            return cached

    # ----- data ----------------------------------------------------------------------

    def published_segments(self, market: str, dataset: str, day: date, now_ts: float,
                           secid: str | None = None) -> list[tuple[list[list], str | None]]:
        """[(rows, systime)] of the published buckets of one day, in tradetime order.

        systime None: the rows carry their own systime (bad_row knob)."""
        self.calendar  # noqa: B018 - triggers the mtime check
        frame = self.data.frame(market, dataset, day)
        plan: PublishPlan = self.faults.plan(market, dataset, day)
        spec = registry.get(dataset)
        per_ticker = spec.probe_setting != "probe"   # FUTOI: its own universe of tickers
        probe = self.data.probe(dataset if per_ticker else market)
        columns = frame.columns
        sec_col = columns.index(spec.secid_column)
        dropped: set[str] = set()
        if plan.drop_secids is not None and not per_ticker:
            candidates = [i.secid for i in self.data.universe(market) if i.secid != probe]
            dropped = set(candidates[-plan.drop_secids[0]:]) if plan.drop_secids[0] > 0 else set()
        expired = successor = None
        if plan.expire is not None and day >= plan.expire[2]:
            expired = plan.expire[0].upper()
            successor = plan.expire[1] or self.data.successor(plan.expire[0])
        picks: dict[int, list[int] | None] = {}
        rename = False
        if secid is None:
            picks = dict.fromkeys(range(len(frame.buckets)))
        else:
            wanted = secid.upper()
            if expired is not None and wanted == expired:
                positions = []
            elif successor is not None and wanted == successor.upper():
                positions, rename = frame.secid_positions(expired), True
            else:
                positions = frame.secid_positions(secid)
            for b_idx, r_idx in positions:
                picks.setdefault(b_idx, []).append(r_idx)  # type: ignore[union-attr]
        pattern = self.data.daypattern(market) if plan.daypattern else None
        segments: list[tuple[list[list], str | None]] = []
        positions_of: dict[int, int] = {}  # bucket index -> its segment's index
        for b_idx, r_indexes in picks.items():
            bucket = frame.buckets[b_idx]
            moment = plan.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms, bucket.base_publish_ts)
            if moment is None or moment > now_ts:
                continue
            drop = set(dropped) if plan.drop_secids and bucket.end_ts >= plan.drop_secids[1] else set()
            if bucket.tradetime[:5] in plan.drop_probe:
                drop.add(probe)
            if pattern is not None:
                drop |= pattern(bucket.tradetime)
            if r_indexes is None:
                rows = bucket.rows
                if expired is not None:
                    rows = _expire_rows(rows, bucket.secids, expired, successor, sec_col)
                    if drop:
                        rows = [row for row in rows if row[sec_col] not in drop]
                elif drop:
                    rows = [row for row, sec in zip(bucket.rows, bucket.secids, strict=True) if sec not in drop]
            else:
                rows = [bucket.rows[r] for r in r_indexes if bucket.secids[r] not in drop]
                if rename:
                    rows = [_with(row, sec_col, successor) for row in rows]
            if rows:
                positions_of[b_idx] = len(segments)
                segments.append((rows, format_systime(moment)))
        if plan.bad_rows:
            segments = self._with_bad_rows(frame, plan, segments, positions_of, day, now_ts, secid, probe,
                                           sec_col)
        return segments

    def _with_bad_rows(self, frame, plan: PublishPlan, segments: list, positions_of: dict[int, int], day: date,
                       now_ts: float, secid: str | None, probe: str, sec_col: int) -> list:
        """Insert the bad_row knobs' rows, each right after the bucket that was the newest
        published one when the knob was set (a fixed place: paging stays append-only)."""
        lower = [c.lower() for c in frame.columns]
        date_col, time_col, sys_col = lower.index("tradedate"), lower.index("tradetime"), lower.index("systime")
        inserts: list[tuple[int, list]] = []
        for kind, bad_secid, set_at in plan.bad_rows:
            bad_secid = (bad_secid or probe).upper()
            if datetime.fromtimestamp(set_at, MSK).date() != day or (secid is not None and secid.upper() != bad_secid):
                continue
            anchor = None
            for b_idx, bucket in enumerate(frame.buckets):
                moment = plan.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms, bucket.base_publish_ts)
                if moment is not None and moment <= set_at and b_idx in positions_of:
                    if any(sec.upper() == bad_secid for sec in bucket.secids):
                        anchor = b_idx
            if anchor is None:
                continue
            bucket = frame.buckets[anchor]
            r_idx = next(i for i, sec in enumerate(bucket.secids) if sec.upper() == bad_secid)
            row = list(bucket.rows[r_idx])
            row[sys_col] = segments[positions_of[anchor]][1]
            if kind == "empty_time":
                row[time_col] = ""
            elif kind == "null_time":
                row[time_col] = row[sys_col] = None
            elif kind == "other_day":
                row[date_col] = (day + timedelta(days=1)).isoformat()
            elif kind == "future_systime":
                row[sys_col] = format_systime(now_ts + 7200)
            elif kind == "off_grid":
                row[time_col] = (bucket.end + timedelta(seconds=150)).strftime("%H:%M:%S")
            inserts.append((positions_of[anchor], row))
        if not inserts:
            return segments
        out = list(segments)
        for position, row in sorted(inserts, key=lambda item: item[0], reverse=True):
            out.insert(position + 1, ([row], None))
        return out


def _gzip_bomb(size: int) -> bytes:
    prefix = b'{"data": {"columns": ["tradedate"], "data": [["'[:size]
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = b" " * BOMB_BLOCK
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(size - len(prefix), BOMB_BLOCK)
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(block[:rest], crc)
    tail = compressor.compress(block[:rest]) + compressor.flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + head + segment * count + tail + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


def weekend_session(calendar, market: str, day: date) -> bool:
    """A weekend or holiday session of `market`: it trades on a Saturday/Sunday, or on a
    day whose calendar entry restricts the markets (a holiday with a weekend-style session).
    Same rule as sandbox/isscalendar.py's reasons W/H on a working day."""
    if not calendar.is_working_day(day, market):
        return False
    entry = calendar.override(day)
    return day.weekday() >= 5 or (entry is not None and entry.markets is not None)


def next_trading_day(calendar, market: str, day: date) -> date | None:
    """The next working day of `market` after `day` that is not a weekend session."""
    following = day + timedelta(days=1)
    for _ in range(30):
        if calendar.is_working_day(following, market) and not weekend_session(calendar, market, following):
            return following
        following += timedelta(days=1)
    return None


def weekend_days_filed_under(calendar, market: str, day: date) -> list[date]:
    """Weekend/holiday session days whose rows weekend_tradedate=next files under `day`."""
    out = []
    earlier = day - timedelta(days=1)
    for _ in range(14):
        if weekend_session(calendar, market, earlier):
            out.append(earlier)
        elif calendar.is_working_day(earlier, market):
            break
        earlier -= timedelta(days=1)
    return [d for d in reversed(out) if next_trading_day(calendar, market, d) == day]


def _with(row: list, index: int, value: object) -> list:
    copy = list(row)
    copy[index] = value
    return copy


def _expire_rows(rows: list[list], secids: list[str], expired: str, successor: str | None,
                 sec_col: int) -> list[list]:
    """Rows of one bucket after an expiry: the expired contract's rows are filed under the
    successor (which takes its liquidity and weight); the successor's own rows go."""
    moved = [_with(row, sec_col, successor) for row, sec in zip(rows, secids, strict=True)
             if sec.upper() == expired] if successor else []
    out: list[list] = []
    for row, sec in zip(rows, secids, strict=True):
        if sec.upper() == expired or sec == successor:
            continue
        if moved and sec > successor:  # type: ignore[operator]
            out.extend(moved)
            moved = []
        out.append(row)
    out.extend(moved)
    return out


def _page(segments: list[tuple], start: int, systime_index: int,
          size: int = PAGE_SIZE) -> tuple[list[list], int]:
    """One page of the concatenated segments: (rows, systime[, {column index: value}]).
    systime None keeps each row's own systime."""
    total = sum(len(seg[0]) for seg in segments)
    out: list[list] = []
    offset = 0
    end = start + size
    for segment in segments:
        rows, systime = segment[0], segment[1]
        overrides = segment[2] if len(segment) > 2 else None
        seg_end = offset + len(rows)
        if seg_end > start and offset < end:
            for row in rows[max(0, start - offset):min(len(rows), end - offset)]:
                copy = list(row)
                if systime is not None:
                    copy[systime_index] = systime
                if overrides:
                    for index, value in overrides.items():
                        copy[index] = value
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
    _drip: dict | None = None
    _stats_key: tuple | None = None  # set while an /iss request is answered; counted once
    server_version = "sandbox-iss"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("request %s", format % args)

    # ----- plumbing --------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8",
              headers: dict | None = None) -> int:
        if self._hang_seconds:
            delay, self._hang_seconds = self._hang_seconds, 0.0
            time.sleep(delay)
        if self._stats_key is not None:  # count before the answer goes out: a client that has
            self.iss._stats.record(*self._stats_key, status, len(body))  # read it sees it counted
            self._stats_key = None
        if self._drip:
            drip, self._drip = self._drip, None
            return self._send_dripping(drip, status, body, content_type, headers)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body)

    def _send_dripping(self, drip: dict, status: int, body: bytes, content_type: str,
                       headers: dict | None) -> int:
        """drip knob: status line and headers at once (or, headers=true, dripped too), then
        the body at bytes_per_second in small writes. Holds no lock; ends when the client
        goes away (the write fails) or the sandbox stops."""
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                 f"Server: {self.version_string()}", f"Date: {self.date_time_string()}",
                 f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.log_request(status)
        payload = body if self.command != "HEAD" else b""
        if drip["headers"]:
            payload = head + payload
        else:
            self.wfile.write(head)
        rate = float(drip["bytes_per_second"])
        chunk = max(1, int(rate / 20))  # about 20 writes a second, at least one byte each
        started = time.monotonic()
        sent = 0
        while sent < len(payload):
            due = started + sent / rate
            wait = due - time.monotonic()
            if wait > 0 and self.iss.stopping.wait(wait):
                raise ConnectionResetError("sandbox stopping")
            self.wfile.write(payload[sent:sent + chunk])
            sent += chunk
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
        self._drip = None
        self._stats_key = None
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
        for regex, kind, spec in dataset_routes():
            if m := regex.match(path):
                groups = m.groupdict()
                market = groups.get("market") or spec.markets[0]
                return kind, market, spec.name, ((groups["secid"],) if kind == "secid" else ())
        if m := _CALENDARS.match(path):
            return "calendar", CALENDAR_MARKETS.get(m.group(1) or ""), "calendar", (m.group(1), bool(m.group(2)))
        if path == "/authenticate":
            return "authenticate", None, "authenticate", ()
        return "other", None, None, ()

    def _iss(self, path: str, query: dict) -> None:
        kind, market, dataset, args = self._route(path)
        status, size = 500, 0
        self._stats_key = (kind, market, dataset)
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
            if self._stats_key is not None:  # not yet counted by _send
                self.iss._stats.record(kind, market, dataset, status, size)
            self._stats_key = None

    def _iss_answer(self, kind: str, market: str | None, dataset: str | None, args: tuple,
                    query: dict) -> tuple[int, int]:
        iss = self.iss
        faults = iss.faults
        if kind == "other":
            raise HttpError(404, "not found")
        hang = faults.take("hang", market, dataset)
        if hang:  # slept in _send, after every knob of this request was decided
            self._hang_seconds = hang["seconds"]
        drip = faults.take("drip", market, dataset)
        if drip:  # applied in _send to whatever the answer is
            self._drip = drip
        redirect = faults.take("redirect", market, dataset)
        if redirect:
            return redirect["status"], self._send(redirect["status"], b"moved\n", "text/plain; charset=utf-8",
                                                  {"Location": redirect["location"]})
        error = faults.take("http_error", market, dataset)
        if error:
            headers = {"Retry-After": str(error["retry_after"])} if error.get("retry_after") is not None else {}
            raise HttpError(error["status"], f"sandbox http_error {error['status']}", headers)
        if faults.take("throttle", market, dataset) is not None:
            return 403, self._send(403, THROTTLE_PAGE, "text/html; charset=utf-8")
        if kind == "authenticate":
            return self._authenticate()
        if not self._authorized():
            if iss.auth == "passport" and faults.peek("auth_html", market, dataset) is not None:
                return 200, self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")
            # apim answers 401 to a missing and to a wrong key alike (iss-api.md §11 "refusals")
            raise HttpError(401, "unauthorized: bad or missing API key" if iss.auth == "apikey" else "unauthorized")
        if faults.take("no_subscription", market, dataset) is not None:
            return 200, self._send(200, NO_SUBSCRIPTION_PAGE, "text/html; charset=utf-8")
        message = faults.take("error_message", market, dataset)
        if message is not None:
            block = self._block_name(kind, dataset, args)
            answer = {block: {"metadata": {"ERROR_MESSAGE": {"type": "string", "bytes": 765, "max_size": 0}},
                              "columns": ["ERROR_MESSAGE"], "data": [[message["text"]]]}}
            if query.get("iss.meta") == "off":
                answer[block].pop("metadata")
            return 200, self._json(200, answer)
        if faults.take("html", market, dataset) is not None:
            return 200, self._send(200, LOGIN_PAGE, "text/html; charset=utf-8")
        bomb = faults.take("gzip_bomb", market, dataset)
        if bomb is not None:
            return 200, self._send(200, iss.gzip_bomb(bomb["unpacked_bytes"]),
                                   headers={"Content-Encoding": "gzip"})
        start = self._int(query.get("start"), "start")
        if start > 0 and faults.take("break_paging", market, dataset) is not None:
            raise HttpError(500, "sandbox break_paging")
        if faults.take("malformed", market, dataset) is not None:
            return 200, self._send(200, b'{"data": {"metadata": {}, "columns": ["tradedate", "tradetime"')
        empty = faults.take("empty", market, dataset) is not None
        if kind == "calendar":
            blocks = self._calendar_blocks(query)
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
        columns = columns_for(market, dataset)
        spec = registry.get(dataset)
        segments: list[tuple] = []
        if not empty:
            weekend = iss.faults.peek("weekend_tradedate", market, dataset)
            next_mode = weekend is not None and weekend.get("mode") == "next"
            day = first
            while day <= last:
                segments.extend(self._day_segments(market, dataset, day, today, now_ts, secid, columns, next_mode))
                day += timedelta(days=1)
        latest = query.get("latest") in ("1", "true")
        if latest and kind != "day":
            # Unverified on per-instrument routes (iss-api.md §3): knob latest_per_instrument.
            mode = (iss.faults.peek("latest_per_instrument", market, dataset) or {}).get("mode", "honoured")
            if mode == "refused":
                raise HttpError(400, "latest is not supported on this route")
            latest = mode == "honoured"
        if latest and segments:
            # the newest bucket (with a bad_row row placed right after it, if any)
            newest = max((i for i, seg in enumerate(segments) if seg[1] is not None), default=len(segments) - 1)
            segments = segments[newest:]
        name = spec.block
        dates = {f"{name}.dates": {"metadata": {"from": {"type": "date", "bytes": 10, "max_size": 0},
                                                 "till": {"type": "date", "bytes": 10, "max_size": 0}},
                                    "columns": ["from", "till"], "data": [[first.isoformat(), last.isoformat()]]}}
        if spec.paging == "single":
            # Real FUTOI (iss-api.md §11 "FUTOI paging", "FUTOI order"): newest bucket first
            # (rows of one bucket stay together), `start` ignored, at most 1000 rows (the
            # newest ones), no cursor block. `reversed=1` is accepted: it is the default.
            ordered = list(reversed(segments)) if spec.newest_first else segments
            rows, _ = _page(ordered, 0, systime_index(columns), FUTOI_ROW_CAP)
            return {name: {"metadata": _metadata(columns, rows[0] if rows else None), "columns": list(columns),
                           "data": rows}, **dates}
        rows, total = _page(segments, start, systime_index(columns))
        return {
            name: {"metadata": _metadata(columns, rows[0] if rows else None), "columns": list(columns),
                   "data": rows},
            f"{name}.cursor": {"metadata": {"INDEX": {"type": "int64"}, "TOTAL": {"type": "int64"},
                                            "PAGESIZE": {"type": "int64"}},
                               "columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, total, PAGE_SIZE]]},
            **dates,
        }

    def _day_segments(self, market: str, dataset: str, day: date, today: date, now_ts: float,
                      secid: str | None, columns: list[str], next_mode: bool) -> list[tuple]:
        """Segments served for a query of `day`. weekend_tradedate mode next: a weekend (or
        holiday) session's rows are filed under the next trading day's tradedate and served
        for that day, never for their calendar date (iss-api.md §11 "weekend sessions")."""
        iss = self.iss
        cal_market = market
        if not next_mode:
            return iss.published_segments(market, dataset, day, now_ts, secid) if day <= today else []
        calendar = iss.calendar
        if weekend_session(calendar, cal_market, day):
            return []
        overrides = {columns.index("tradedate"): day.isoformat()}
        if "trade_session_date" in columns:
            overrides[columns.index("trade_session_date")] = day.isoformat()
        out: list[tuple] = []
        for earlier in weekend_days_filed_under(calendar, cal_market, day):
            if earlier <= today:
                out.extend((rows, systime, overrides)
                           for rows, systime in iss.published_segments(market, dataset, earlier, now_ts, secid))
        if day <= today:
            out.extend(iss.published_segments(market, dataset, day, now_ts, secid))
        return out

    def _calendar_blocks(self, query: dict) -> dict:
        """The ONE fake of the ISS calendar: sandbox/isscalendar.py (`calendar_answer`)."""
        try:
            answer = isscalendar.calendar_answer(self.iss.calendar, urlsplit(self.path).path, query,
                                                 self.iss.clock.now().date())
        except ValueError as exc:
            raise HttpError(400, f"bad calendar query: {exc}") from exc
        if answer is None:
            raise HttpError(404, "not found")
        return answer

    @staticmethod
    def _block_name(kind: str, dataset: str | None, args: tuple) -> str:
        """The block a request asks for (an ERROR_MESSAGE answer uses it)."""
        if kind == "calendar":
            return "session_schedule" if args[1] else "off_days"
        return registry.get(dataset).block if dataset in registry.REGISTRY else "data"


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
