"""The ISS client: one `requests.Session`, retries, auth modes, paging, block → plain rows (`Table`).

    client = IssClient(config.iss, stats)
    result = client.get_block("/iss/datashop/algopack/eq/tradestats/SBER.json",
                              {"from": "2026-11-25", "till": "2026-11-25"},
                              required_columns=("tradedate", "tradetime", "systime"))
    result.table      # a Table: lower-cased columns, the rows of every page (exporter/table.py)

No pandas here: a block is plain lists (`exporter.table.Table`), and `iter_pages` hands a
long paged read over page by page, so a whole day is never held at once.

Failures raise `IssError(reason, message)`; `reason` is the `reason` label of
`algopack_poll_errors_total`, one of ERROR_REASONS (the one list; state.py and the
collector import it):

- `http`: an HTTP status >= 400 that is none of the below, after the retries (5xx are
  retried `iss.retries` times with backoff; a 503's Retry-After up to 30 s is honoured).
- `timeout`: no complete answer — connect failure, connection refused or reset, DNS
  failure, or the whole-request deadline `iss.timeout_seconds` (connect + headers + body
  together: a trickling answer fails too) passed; retried like a 5xx. "ISS unreachable".
- `auth`: a real refusal: HTTP 401, a 403 that is not throttling, a non-JSON answer (ISS
  answers an HTML login page or the "available only to subscribers" page when it refuses),
  or the passport refused the login. In passport mode the client logs in again at most
  ONCE per refusal episode for the whole client (see "Passport" below).
- `parse`: invalid JSON, a missing block, a missing required column, rows that do not
  match the columns, an undecodable (e.g. broken gzip) body.
- `throttled`: ISS asks us to slow down — HTTP 429, or a 403 / non-JSON answer that says
  "Too Many Requests". Never a re-login. The whole client backs off (see below).
- `iss_error`: a JSON answer whose requested block has the single column ERROR_MESSAGE;
  the message carries ISS's own text (secrets masked, capped at 300 characters).
- `too_large`: the answer is larger than `iss.max_response_bytes` on the wire or after
  decompression (read as a stream in 64 KiB pieces, so memory stays bounded; a gzip bomb
  is cut off at the cap). The connection is closed.
- `redirect`: a redirect to another scheme, host or port (the target host is in the
  message and the log, never its query string), or more than 5 same-host redirects.
  Same-host redirects are followed.

Throttling back-off: every throttled answer sets one back-off moment shared by all pairs:
`Retry-After` (seconds or an HTTP date, at most 1 h) when ISS sends it, otherwise an
exponential back-off with jitter (5 s, 10 s, ... up to 300 s; reset by the next successful
answer). While it is in force a request is not sent at all and fails at once with
`throttled` — unless less than 1 s remains, then the request waits for it.

Passport: the MicexPassportCert value is sent per request, only to the base URL's scheme,
host and port (never with a redirect elsewhere). On an `auth` refusal the client logs in
again and retries once; concurrent refusals share that one login. If the fresh certificate
is refused as well, there is no other login until some request succeeds (the episode ends)
or REAUTH_COOLDOWN_SECONDS (5 min) pass. A refused login is not repeated for that cool-down
either; a login that got no answer or was throttled is tried again after 30 s.

Credentials: the Bearer key (apikey mode) and the passport cookie go only to the base URL's
origin; the passport's Basic auth only to the passport URL's origin. No message or log line
carries a secret: URLs are logged through `describe_url`, ISS texts through `mask_secrets`.

Connections: every request is registered with one watchdog thread per client (it ends after
5 s without requests), which shuts the socket down when the request's deadline passes (this also ends a header read that
trickles); a connection that failed or was cut is closed, never reused.
"""

from __future__ import annotations

import base64
import email.utils
import http.cookiejar
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from exporter.config import IssConfig
from exporter.table import Table

log = logging.getLogger("exporter.iss")

PASSPORT_COOKIE = "MicexPassportCert"
RETRY_STATUSES = (500, 502, 503, 504)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
ERROR_REASONS = ("http", "timeout", "auth", "parse", "throttled", "iss_error", "too_large", "redirect")
# Longest Retry-After (on 503) we are willing to sleep inside one poll.
RETRY_AFTER_MAX_SECONDS = 30.0
# Throttling: the longest Retry-After honoured, and the exponential back-off without one.
THROTTLE_RETRY_AFTER_MAX_SECONDS = 3600.0
THROTTLE_BACKOFF_BASE_SECONDS = 5.0
THROTTLE_BACKOFF_MAX_SECONDS = 300.0
THROTTLE_WAIT_BELOW_SECONDS = 1.0  # a back-off with less left than this is waited out
REAUTH_COOLDOWN_SECONDS = 300.0
LOGIN_RETRY_SECONDS = 30.0  # after a passport login that got no answer
MAX_REDIRECTS = 5
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
WATCHDOG_IDLE_SECONDS = 5.0  # the deadline thread ends after this long without a request
ISS_PAGE_ROWS = 1000  # an answer without a cursor is capped at this many rows (FUTOI)
MAX_ERROR_TEXT = 300
_SECRET_PARAM_WORDS = ("key", "token", "password", "passwd", "login", "cert", "secret", "auth")
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(rf"(?i)({PASSPORT_COOKIE}\s*[=:]\s*)[^;\s&\"']+"), r"\1***"),
    (re.compile(r"(?i)\b([\w.-]*(?:key|token|password|passwd|secret|cert)[\w.-]*\s*[=:]\s*)[^\s&;,\"']+"),
     r"\1***"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


class IssError(Exception):
    """A failed ISS request; `reason` ∈ ERROR_REASONS, `message` is safe to log."""

    def __init__(self, reason: str, message: str, status: int | None = None):
        if reason not in ERROR_REASONS:
            raise ValueError(f"unknown IssError reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True)
class IssResult:
    table: Table  # every page's rows, lower-cased columns
    total: int | None  # TOTAL from the cursor block, when the server sent one
    pages: int
    bytes: int
    status: int  # HTTP status of the last page
    # stopped by max_pages before the last page, or an answer without a cursor that has
    # ISS_PAGE_ROWS rows (ISS's cap: there may be more rows than one answer can carry)
    truncated: bool = False


class IssStats:
    """Thread-safe counters of the load we put on ISS (every HTTP attempt, retries included;
    bytes are what was read from the wire, not the unpacked size)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._bytes = 0

    def record(self, status: int | str, nbytes: int = 0) -> None:
        key = str(status)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            self._bytes += nbytes

    def snapshot(self) -> dict[str, Any]:
        """{"requests": {"200": n, "503": n, "error": n}, "bytes": total}"""
        with self._lock:
            return {"requests": dict(self._requests), "bytes": self._bytes}


# --------------------------------------------------------------------------- text helpers


def describe_url(path: str, params: Mapping[str, Any] | None = None) -> str:
    """Path and query for logs: no host credentials, and secret-looking params masked."""
    parts = urlsplit(path)
    text = parts.path or "/"
    if params:
        shown = []
        for key, value in params.items():
            masked = any(word in str(key).lower() for word in _SECRET_PARAM_WORDS)
            shown.append((key, "***" if masked else value))
        text += "?" + urlencode(shown, safe=",/:")
    return text


def describe_origin(url: str) -> str:
    """scheme://host[:port] of a URL, for logs (never its path, query or userinfo)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme or '?'}://{host}" + (f":{port}" if port else "")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def mask_secrets(text: str, secrets: Iterable[str | None] = (), limit: int = MAX_ERROR_TEXT) -> str:
    """`text` as one safe log line: known secrets and secret-looking tokens replaced by ***,
    control and line-separator characters folded to a space, at most `limit` characters."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    text = _CONTROL_CHARS.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds from now (delta-seconds or an HTTP date); None when absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        if moment.tzinfo is None:  # an HTTP date is GMT
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _lower_columns(columns: Iterable[Any], block: str) -> list[str]:
    names = [str(name).lower() for name in columns]
    if len(set(names)) != len(names):
        raise IssError("parse", f"block {block!r} has duplicate column names")
    return names


def iss_error_text(payload: Any, block: str) -> str | None:
    """ISS's own error text when the answer is an ERROR_MESSAGE answer, else None.

    Such an answer is JSON whose requested block has the single column ERROR_MESSAGE (iss-api
    §11, "refusals"); when the requested block is absent, any block of that shape counts."""
    if not isinstance(payload, Mapping):
        return None

    def text_of(candidate: Any) -> str | None:
        if not isinstance(candidate, Mapping):
            return None
        columns = candidate.get("columns")
        if not (isinstance(columns, list) and len(columns) == 1 and str(columns[0]).upper() == "ERROR_MESSAGE"):
            return None
        rows = candidate.get("data")
        texts = [str(row[0]) for row in rows if isinstance(row, list) and row and row[0] is not None] \
            if isinstance(rows, list) else []
        return "; ".join(texts) or "(no text)"

    found = text_of(payload.get(block))
    if found is None and not isinstance(payload.get(block), Mapping):
        for candidate in payload.values():
            found = text_of(candidate)
            if found is not None:
                break
    return found


def parse_block(payload: Mapping[str, Any], block: str, required_columns: Iterable[str] = ()) -> Table:
    """One ISS JSON block → Table with lower-cased column names (pure; no I/O).

    Raises IssError("iss_error") for an ERROR_MESSAGE answer (ISS's text, masked and capped),
    IssError("parse") when the block is missing or malformed, a required column (compared
    case-insensitively) is absent, or a row does not match the columns."""
    if not isinstance(payload, Mapping):
        raise IssError("parse", "ISS answer is not a JSON object")
    error_text = iss_error_text(payload, block)
    if error_text is not None:
        raise IssError("iss_error", f"ISS: {mask_secrets(error_text)}")
    data_block = payload.get(block)
    if not isinstance(data_block, Mapping):
        raise IssError("parse", f"block {block!r} missing from ISS answer")
    columns = data_block.get("columns")
    rows = data_block.get("data")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise IssError("parse", f"block {block!r} lacks columns/data lists")
    names = _lower_columns(columns, block)
    missing = [name for name in (c.lower() for c in required_columns) if name not in names]
    if missing:
        raise IssError("parse", f"block {block!r} lacks required column(s): {', '.join(missing)}")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            raise IssError("parse", f"block {block!r} row {index} does not match its {len(names)} columns")
    return Table(names, rows)


def parse_cursor(payload: Mapping[str, Any], block: str) -> dict[str, int] | None:
    """`<block>.cursor` → {"index", "total", "pagesize"}, or None when absent."""
    cursor = payload.get(f"{block}.cursor") if isinstance(payload, Mapping) else None
    if cursor is None:
        return None
    try:
        table = parse_block(payload, f"{block}.cursor", ("index", "total", "pagesize"))
        if table.empty:
            return None
        row = table.records()[0]
        return {key: int(row[key]) for key in ("index", "total", "pagesize")}
    except (TypeError, ValueError) as exc:
        raise IssError("parse", f"block '{block}.cursor' has non-integer values") from exc


# --------------------------------------------------------------------------- deadline watchdog

_local = threading.local()  # .watch: the _Watch of the request this thread is making


class _DeadlinePassed(Exception):
    """Raised inside urllib3 when a request would start after its deadline (not retried there)."""


class _Watch:
    __slots__ = ("deadline", "seconds", "conn", "expired")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.conn: Any = None
        self.expired = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watchdog:
    """One thread per client: shuts down the socket of a request whose deadline passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, seconds: float) -> _Watch:
        watch = _Watch(seconds)
        with self._cond:
            self._watches.add(watch)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="iss-deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return watch

    def unwatch(self, watch: _Watch) -> None:
        with self._cond:
            self._watches.discard(watch)
            watch.conn = None

    def attach(self, conn: Any) -> None:
        """Called by the connection of the current thread's request (before it sends)."""
        watch = getattr(_local, "watch", None)
        if watch is None:
            return
        with self._cond:
            watch.conn = conn
            if watch.expired or watch.remaining() <= 0:
                watch.expired = True
                _shut(conn)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._watches:
                    # idle: wait a little for the next request, else end (started again lazily)
                    self._cond.wait(WATCHDOG_IDLE_SECONDS)
                    if not self._watches:
                        if self._thread is threading.current_thread():
                            self._thread = None
                        return
                now = time.monotonic()
                wait: float | None = None
                for watch in list(self._watches):
                    if watch.deadline <= now:
                        watch.expired = True
                        _shut(watch.conn)
                        self._watches.discard(watch)
                    else:
                        left = watch.deadline - now
                        wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)


def _attach_current(conn: Any) -> None:
    watchdog = getattr(_local, "watchdog", None)
    if watchdog is not None:
        watchdog.attach(conn)
        watch = getattr(_local, "watch", None)
        if watch is not None and watch.expired and getattr(conn, "sock", None) is None:
            raise _DeadlinePassed()


class _Watched:
    """Mixin for urllib3 connections: the socket of the current request is watched by the
    deadline watchdog from connect (new connection) or request (reused one) on."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach_current(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(HTTPAdapter):
    """No urllib3 retries or redirects (the client does both), watched connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connection class
            manager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}
        return manager


@dataclass
class _Answer:
    url: str
    status: int
    content_type: str
    body: bytes | bytearray
    wire_bytes: int
    location: str | None
    retry_after: str | None
    cert: str | None  # MicexPassportCert set by this answer


class _Retryable(IssError):
    """A timeout-type failure the retry loop may repeat."""


class PageStream:
    """The pages of one block read (`IssClient.iter_pages`): iterate for one Table per page.

    A page is requested only when the previous one has been consumed, so a consumer that
    aggregates page by page holds one page at a time (a whole day of obstats is ~40
    pages at scale 1). Iterate once; the counters describe what has been read so far."""

    def __init__(self, client: IssClient, path: str, params: Mapping[str, Any] | None, block: str,
                 required_columns: Iterable[str], all_pages: bool, start: int, max_pages: int,
                 columns: Iterable[str] | None):
        self.client = client
        self.path = path
        self.block = block
        self.required = tuple(c.lower() for c in required_columns)
        wanted = [c.lower() for c in columns] if columns else None
        self.keep = list(dict.fromkeys([*wanted, *self.required])) if wanted else None
        self.params: dict[str, Any] = dict(params or {})
        self.params["iss.meta"] = "off"
        self.params["iss.only"] = f"{block},{block}.cursor"
        if self.keep:
            self.params[f"{block}.columns"] = ",".join(self.keep)
        self.all_pages = all_pages
        self.start = start
        self.max_pages = max_pages
        self.total: int | None = None
        self.pages = self.bytes = self.status = 0
        self.rows = 0
        self.truncated = False

    def __iter__(self) -> Iterator[Table]:
        client, path, block = self.client, self.path, self.block
        offset = self.start
        while True:
            page_params = {**self.params, "start": offset}
            payload, self.status, size = client._get_json(path, page_params)
            self.bytes += size
            self.pages += 1
            error_text = iss_error_text(payload, block)
            if error_text is not None:
                shown = mask_secrets(error_text, client._secrets())
                log.warning("iss_error_message path=%s text=%s", describe_url(path, page_params), shown)
                raise IssError("iss_error", f"GET {describe_url(path)}: ISS: {shown}", self.status)
            table = parse_block(payload, block, self.required)
            cursor = parse_cursor(payload, block)
            del payload
            rows = len(table)
            offset += rows
            self.rows += rows
            last = True
            if cursor is None:
                if rows >= ISS_PAGE_ROWS:
                    self.truncated = True
                    client._log_truncation_once(path, rows)
            else:
                self.total, page_size = cursor["total"], cursor["pagesize"] or None
                last = (not self.all_pages or rows == 0 or (page_size is not None and rows < page_size)
                        or offset >= self.total)
                if not last and self.pages >= self.max_pages:
                    self.truncated = True
                    last = True
                    log.warning("iss_paging_truncated path=%s pages=%d rows=%d", describe_url(path), self.pages,
                                offset - self.start)
            yield table.select(self.keep) if self.keep else table
            if last:
                return


# --------------------------------------------------------------------------- the client


class IssClient:
    """One session for all polls; safe to share between worker threads."""

    def __init__(self, cfg: IssConfig, stats: IssStats | None = None):
        self.cfg = cfg
        self.stats = stats if stats is not None else IssStats()
        self._base = cfg.base_url.rstrip("/")
        self._base_origin = _origin(self._base)
        self.max_response_bytes = int(getattr(cfg, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
                                      or DEFAULT_MAX_RESPONSE_BYTES)
        self.throttle_backoff_base = THROTTLE_BACKOFF_BASE_SECONDS
        self.throttle_backoff_max = THROTTLE_BACKOFF_MAX_SECONDS
        self.reauth_cooldown = REAUTH_COOLDOWN_SECONDS
        self._auth_lock = threading.Lock()
        self._auth_generation = 0  # bumped on each successful passport login
        self._cert: str | None = None  # MicexPassportCert value (passport mode)
        self._episode_login_at: float | None = None  # re-login of the open refusal episode
        self._login_error: IssError | None = None
        self._login_retry_at = 0.0
        self._throttle_lock = threading.Lock()
        self._backoff_until = 0.0  # monotonic; no request is sent before it
        self._throttle_streak = 0
        self._truncation_logged: set[str] = set()
        self._watchdog = _Watchdog()

        # pool_maxsize >= the pairs polled at once (one worker per pair, scheduler.py): a
        # smaller pool warns "Connection pool is full" on every round of simultaneous polls.
        self._adapter = _Adapter(max_retries=0, pool_connections=2, pool_maxsize=16)
        self.session = requests.Session()
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)
        # no cookie jar: the passport cookie is sent per request, only to the base origin
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.session.headers.update({
            "User-Agent": cfg.user_agent,
            "Cache-Control": "no-cache",
            "Accept": "application/json",
        })

    def close(self) -> None:
        self.session.close()
        self._watchdog.close()

    def __enter__(self) -> IssClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public API

    def get_block(self, path: str, params: Mapping[str, Any] | None = None, block: str = "data",
                  required_columns: Iterable[str] = (), all_pages: bool = True, start: int = 0,
                  max_pages: int = 100, columns: Iterable[str] | None = None) -> IssResult:
        """Rows of one block, paging with `start` ONLY across `<block>.cursor`.

        An answer without a cursor block is the whole result (FUTOI ignores `start`: paging
        it would fetch the same rows again); if it has ISS_PAGE_ROWS rows it is marked
        `truncated` (logged once per path). `columns` asks ISS to trim the block
        (`<block>.columns=`); the table is trimmed to the requested columns that came back,
        so it looks the same if ISS ignores it."""
        pages = self.iter_pages(path, params, block, required_columns, all_pages, start, max_pages, columns)
        table: Table | None = None
        for page in pages:
            if table is None:
                table = page
            else:
                table.extend(page)
        assert table is not None  # at least one page, or an IssError
        return IssResult(table=table, total=pages.total, pages=pages.pages, bytes=pages.bytes, status=pages.status,
                         truncated=pages.truncated)

    def iter_pages(self, path: str, params: Mapping[str, Any] | None = None, block: str = "data",
                   required_columns: Iterable[str] = (), all_pages: bool = True, start: int = 0,
                   max_pages: int = 100, columns: Iterable[str] | None = None) -> PageStream:
        """Like `get_block`, one page at a time: iterate the result for each page's Table
        (only one page is held; a page is requested when the previous one was consumed).
        `total`, `pages`, `bytes`, `status`, `truncated` of the stream are set as it goes."""
        return PageStream(self, path, params, block, required_columns, all_pages, start, max_pages, columns)

    def throttle_remaining(self) -> float:
        """Seconds left of the shared throttling back-off (0 when none)."""
        with self._throttle_lock:
            return max(0.0, self._backoff_until - time.monotonic())

    # ------------------------------------------------------------------ internals

    def _log_truncation_once(self, path: str, rows: int) -> None:
        key = describe_url(path)
        if key in self._truncation_logged or len(self._truncation_logged) >= 256:
            return
        self._truncation_logged.add(key)
        log.warning("iss_answer_truncated path=%s rows=%d: an answer without a cursor holds at most %d rows;"
                    " later rows may be missing (logged once per path)", key, rows, ISS_PAGE_ROWS)

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._base}/{path.lstrip('/')}"

    def _secrets(self) -> tuple[str | None, ...]:
        return (self.cfg.api_key, self.cfg.passport_password, self.cfg.passport_login, self._cert)

    def _get_json(self, path: str, params: Mapping[str, Any]) -> tuple[Any, int, int]:
        """GET → (payload, status, bytes). Passport mode: at most one re-login per refusal episode."""
        if self.cfg.auth != "passport":
            return self._request(path, params, None)
        generation, cert = self._ensure_passport()
        try:
            result = self._request(path, params, cert)
        except IssError as exc:
            if exc.reason != "auth":
                raise
            cert = self._reauthenticate(generation, exc, path)
            result = self._request(path, params, cert)
        if self._episode_login_at is not None:
            with self._auth_lock:
                self._episode_login_at = None  # a request succeeded: the refusal episode is over
        return result

    def _credentials_for(self, url: str, cert: str | None) -> dict[str, str]:
        """Auth headers for `url`: only for the base URL's scheme, host and port."""
        if _origin(url) != self._base_origin:
            return {}
        if self.cfg.auth == "apikey" and self.cfg.api_key:
            return {"Authorization": f"Bearer {self.cfg.api_key}"}
        if self.cfg.auth == "passport" and cert:
            return {"Cookie": f"{PASSPORT_COOKIE}={cert}"}
        return {}

    def _request(self, path: str, params: Mapping[str, Any], cert: str | None) -> tuple[Any, int, int]:
        """One logical GET with retries (5xx, timeouts), the throttling back-off and redirects."""
        where = describe_url(path, params)
        attempt = 0
        while True:
            self._wait_for_backoff(where)
            try:
                answer, size = self._follow(self._url(path), params, where, lambda url: self._credentials_for(url, cert))
            except _Retryable as exc:
                if attempt >= self.cfg.retries:
                    raise IssError(exc.reason, exc.message, exc.status) from None
                attempt += 1
                self._sleep_before_retry(attempt, None, where, "error")
                continue
            status = answer.status
            if status in RETRY_STATUSES and attempt < self.cfg.retries:
                attempt += 1
                retry_after = parse_retry_after(answer.retry_after) if status == 503 else None
                self._sleep_before_retry(attempt, retry_after, where, status)
                continue
            payload = self._judge(answer, where)
            self._throttle_ok()
            return payload, status, size

    def _sleep_before_retry(self, attempt: int, retry_after: float | None, where: str, status: object) -> None:
        if retry_after is not None and retry_after <= RETRY_AFTER_MAX_SECONDS:
            delay = retry_after
        else:
            backoff = max(0.0, self.cfg.backoff_seconds)
            delay = backoff * (2 ** (attempt - 1)) + random.uniform(0, backoff / 4)
        log.debug("iss_retry path=%s status=%s attempt=%d sleep=%.2f", where, status, attempt, delay)
        if delay > 0:
            time.sleep(delay)

    def _judge(self, answer: _Answer, where: str) -> Any:
        """An HTTP answer (no redirect, no retry left) → payload, or IssError by reason."""
        status = answer.status
        content_type = answer.content_type
        is_json = "json" in content_type
        says_throttled = b"too many requests" in answer.body[:65536].lower()
        if status == 429 or (says_throttled and (status == 403 or not is_json)):
            delay = self._throttled(answer.retry_after)
            log.warning("iss_throttled path=%s status=%d backoff=%.1fs", where, status, delay)
            raise IssError("throttled", f"GET {where}: HTTP {status} Too Many Requests"
                                        f" (all requests paused for {delay:.0f} s)", status)
        if status in (401, 403):
            raise IssError("auth", f"GET {where}: HTTP {status}", status)
        if status >= 400:
            raise IssError("http", f"GET {where}: HTTP {status}", status)
        if 300 <= status < 400:
            raise IssError("http", f"GET {where}: HTTP {status} without a usable Location", status)
        if not is_json:
            shown = content_type.split(";")[0] or "no content type"
            text = answer.body[:65536].decode("utf-8", "replace").lower()
            if "subscri" in text or "подписчик" in text:
                raise IssError("auth", f"GET {where}: ISS says the data is available only to subscribers"
                                       f" ({shown}; no entitlement or no valid login)", status)
            raise IssError("auth", f"GET {where}: answer is {shown}, not JSON (login page or refusal)", status)
        try:
            return json.loads(answer.body)
        except ValueError as exc:
            raise IssError("parse", f"GET {where}: invalid JSON ({exc.__class__.__name__})", status) from exc

    # throttling -----------------------------------------------------------

    def _wait_for_backoff(self, where: str) -> None:
        with self._throttle_lock:
            remaining = self._backoff_until - time.monotonic()
        if remaining <= 0:
            return
        if remaining < THROTTLE_WAIT_BELOW_SECONDS:
            time.sleep(remaining)
            return
        raise IssError("throttled", f"GET {where}: not sent, ISS throttling back-off for another {remaining:.0f} s")

    def _throttled(self, retry_after_header: str | None) -> float:
        retry_after = parse_retry_after(retry_after_header)
        with self._throttle_lock:
            self._throttle_streak += 1
            if retry_after is not None:
                delay = min(retry_after, THROTTLE_RETRY_AFTER_MAX_SECONDS)
            else:
                delay = min(self.throttle_backoff_base * 2 ** (self._throttle_streak - 1), self.throttle_backoff_max)
                delay *= random.uniform(0.75, 1.0)
            self._backoff_until = max(self._backoff_until, time.monotonic() + delay)
            return self._backoff_until - time.monotonic()

    def _throttle_ok(self) -> None:
        if self._throttle_streak:
            with self._throttle_lock:
                self._throttle_streak = 0

    # HTTP exchange ----------------------------------------------------------

    def _follow(self, url: str, params: Mapping[str, Any] | None, where: str,
                credentials: Any) -> tuple[_Answer, int]:
        """GET url following same-origin redirects (at most MAX_REDIRECTS) → (last answer, wire bytes)."""
        origin = _origin(url)
        total = 0
        for _hop in range(MAX_REDIRECTS + 1):
            answer = self._exchange(url, params, where, credentials(url))
            total += answer.wire_bytes
            if answer.status not in REDIRECT_STATUSES or not answer.location:
                return answer, total
            target = urljoin(url, answer.location)
            if _origin(target) != origin:
                shown = describe_origin(target)
                log.warning("iss_redirect_refused path=%s status=%d target_host=%s", where, answer.status, shown)
                raise IssError("redirect", f"GET {where}: HTTP {answer.status} redirect to another host"
                                           f" ({shown}) not followed", answer.status)
            log.debug("iss_redirect path=%s status=%d to=%s", where, answer.status, describe_url(target))
            url, params = target, None
        raise IssError("redirect", f"GET {where}: more than {MAX_REDIRECTS} redirects")

    def _exchange(self, url: str, params: Mapping[str, Any] | None, where: str,
                  headers: Mapping[str, str]) -> _Answer:
        """One HTTP request/answer under the whole-request deadline and the size cap."""
        seconds = float(self.cfg.timeout_seconds)
        watch = self._watchdog.watch(seconds)
        _local.watch, _local.watchdog = watch, self._watchdog
        started = time.monotonic()
        response = None
        ok = False
        try:
            try:
                response = self.session.get(url, params=params, headers=dict(headers), stream=True,
                                            allow_redirects=False,
                                            timeout=(max(0.01, min(5.0, watch.remaining())), max(0.01, seconds)))
            except _DeadlinePassed:
                self.stats.record("error")
                raise _Retryable("timeout", f"GET {where}: no answer within {seconds:g} s") from None
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                    requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError, OSError) as exc:
                self.stats.record("error")
                cause = "deadline passed" if watch.expired else type(exc).__name__
                log.warning("iss_request path=%s status=error error=%s duration=%.3f", where, cause,
                            time.monotonic() - started)
                raise _Retryable("timeout", f"GET {where}: no answer within {seconds:g} s" if watch.expired
                                 else f"GET {where}: no answer ({type(exc).__name__})") from None
            except requests.exceptions.RequestException as exc:
                self.stats.record("error")
                raise IssError("http", f"GET {where}: {type(exc).__name__}") from None
            body = self._read_body(response, watch, where)
            ok = True
        finally:
            _local.watch = None
            self._watchdog.unwatch(watch)
            if response is not None:
                if ok:
                    response.raw.release_conn()
                else:
                    response.raw.close()  # never reuse a connection cut mid-answer
                    response.close()
        wire = response.raw.tell()
        status = response.status_code
        self.stats.record(status, wire)
        log.debug("iss_request path=%s status=%d bytes=%d duration=%.3f", where, status, wire,
                  time.monotonic() - started)
        return _Answer(url=url, status=status, content_type=response.headers.get("Content-Type", "").lower(),
                       body=body, wire_bytes=wire, location=response.headers.get("Location"),
                       retry_after=response.headers.get("Retry-After"),
                       cert=response.cookies.get(PASSPORT_COOKIE))

    def _read_body(self, response: requests.Response, watch: _Watch, where: str) -> bytearray:
        """The body as a stream of small pieces: deadline checked between pieces, size capped
        on the wire and unpacked."""
        raw = response.raw
        cap = self.max_response_bytes
        status = response.status_code
        try:
            declared = int(response.headers.get("Content-Length", "-1"))
        except ValueError:
            declared = -1
        if declared > cap:
            self.stats.record(status, 0)
            log.warning("iss_answer_too_large path=%s declared=%d cap=%d", where, declared, cap)
            raise IssError("too_large", f"GET {where}: answer of {declared} bytes is over the"
                                        f" {cap}-byte cap (iss.max_response_bytes)", status)
        body = bytearray()
        try:
            while True:
                if watch.expired or watch.remaining() <= 0:
                    watch.expired = True
                    raise _Retryable("timeout", f"GET {where}: answer not complete within {watch.seconds:g} s")
                piece = raw.read(READ_CHUNK_BYTES, decode_content=True)
                if not piece:
                    if watch.expired:
                        raise _Retryable("timeout", f"GET {where}: answer not complete within {watch.seconds:g} s")
                    break
                if len(body) + len(piece) > cap or raw.tell() > cap:
                    log.warning("iss_answer_too_large path=%s wire=%d unpacked>%d cap=%d", where, raw.tell(),
                                len(body), cap)
                    raise IssError("too_large", f"GET {where}: answer over the {cap}-byte cap"
                                                " (iss.max_response_bytes, on the wire or unpacked)", status)
                body += piece
        except IssError:
            self.stats.record(status if not watch.expired else "error", raw.tell())
            raise
        except urllib3.exceptions.DecodeError:
            self.stats.record(status, raw.tell())
            raise IssError("parse", f"GET {where}: body cannot be decoded"
                                    f" ({response.headers.get('Content-Encoding', '-')})", status) from None
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            self.stats.record("error", raw.tell())
            message = (f"GET {where}: answer not complete within {watch.seconds:g} s" if watch.expired
                       else f"GET {where}: answer cut off ({type(exc).__name__})")
            raise _Retryable("timeout", message) from None
        return body  # no copy: json.loads takes a bytearray

    # passport --------------------------------------------------------------
    # The certificate is kept here and sent per request (Cookie header, base origin only),
    # never kept in a cookie jar (the session's jar accepts nothing).

    def _ensure_passport(self) -> tuple[int, str]:
        with self._auth_lock:
            if self._cert is None:
                now = time.monotonic()
                if self._login_error is not None and now < self._login_retry_at:
                    error = self._login_error
                    raise IssError(error.reason, f"{error.message} (no new login for another"
                                                 f" {self._login_retry_at - now:.0f} s)", error.status)
                try:
                    self._login()
                except IssError as exc:
                    self._login_error = exc
                    pause = self.reauth_cooldown if exc.reason == "auth" else LOGIN_RETRY_SECONDS
                    self._login_retry_at = now + pause
                    raise
            assert self._cert is not None
            return self._auth_generation, self._cert

    def _reauthenticate(self, failed_generation: int, refusal: IssError, path: str) -> str:
        with self._auth_lock:
            # another thread already logged in again after the same refusal
            if self._auth_generation != failed_generation and self._cert is not None:
                return self._cert
            now = time.monotonic()
            if self._episode_login_at is not None and now - self._episode_login_at < self.reauth_cooldown:
                left = self.reauth_cooldown - (now - self._episode_login_at)
                raise IssError("auth", f"{refusal.message}; no re-login: the login of this refusal episode"
                                       f" was refused too (next one in {left:.0f} s or after a success)",
                               refusal.status)
            self._episode_login_at = now
            log.info("iss_reauth path=%s cause=%r", describe_url(path), refusal.message)
            try:
                self._login()
            except IssError as exc:
                if exc.reason != "auth":  # passport unreachable or throttled: try again sooner
                    self._episode_login_at = now - self.reauth_cooldown + LOGIN_RETRY_SECONDS
                raise
            assert self._cert is not None
            return self._cert

    def _login(self) -> None:
        """GET passport_url with HTTP Basic; keep the MicexPassportCert value. Lock held.

        Redirects are followed only within the passport URL's own origin, and the Basic auth
        goes only there."""
        login, password = self.cfg.passport_login, self.cfg.passport_password
        if not login or not password:
            raise IssError("auth", "passport auth needs MOEX_PASSPORT_LOGIN and MOEX_PASSPORT_PASSWORD")
        url = self.cfg.passport_url
        where = describe_url(url)
        origin = _origin(url)
        basic = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()

        def credentials(target: str) -> dict[str, str]:
            return {"Authorization": basic} if _origin(target) == origin else {}

        try:
            answer, _ = self._follow_login(url, where, credentials)
        except _Retryable as exc:
            raise IssError("timeout", f"passport {exc.message}") from None
        status = answer.status
        if status == 429 or (status >= 400 and b"too many requests" in answer.body[:65536].lower()):
            raise IssError("throttled", f"passport GET {where}: HTTP {status} Too Many Requests", status)
        if status in (401, 403):
            raise IssError("auth", f"passport GET {where}: login refused (HTTP {status})", status)
        if status >= 400:
            raise IssError("http", f"passport GET {where}: HTTP {status}", status)
        if not answer.cert:
            raise IssError("auth", f"passport GET {where}: no {PASSPORT_COOKIE} cookie in the answer")
        self._cert = answer.cert
        self._auth_generation += 1
        self._login_error = None
        log.info("iss_passport_login ok generation=%d", self._auth_generation)

    def _follow_login(self, url: str, where: str, credentials: Any) -> tuple[_Answer, int]:
        """Like _follow, remembering a certificate set by any hop."""
        origin = _origin(url)
        cert = None
        total = 0
        for _hop in range(MAX_REDIRECTS + 1):
            answer = self._exchange(url, None, f"passport {where}", credentials(url))
            total += answer.wire_bytes
            cert = answer.cert or cert
            if answer.status not in REDIRECT_STATUSES or not answer.location:
                answer.cert = cert
                return answer, total
            target = urljoin(url, answer.location)
            if _origin(target) != origin:
                shown = describe_origin(target)
                log.warning("iss_redirect_refused path=passport status=%d target_host=%s", answer.status, shown)
                raise IssError("redirect", f"passport GET {where}: redirect to another host ({shown}) not followed",
                               answer.status)
            url = target
        raise IssError("redirect", f"passport GET {where}: more than {MAX_REDIRECTS} redirects")
