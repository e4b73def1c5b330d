"""The ISS client: one `requests.Session`, retries, auth modes, paging, block → DataFrame.

    client = IssClient(config.iss, stats)
    result = client.get_block("/iss/datashop/algopack/eq/tradestats/SBER.json",
                              {"from": "2026-11-25", "till": "2026-11-25"},
                              required_columns=("tradedate", "tradetime", "systime"))
    result.frame      # lower-cased columns, every page concatenated

Failures raise `IssError(reason, message)`; `reason` is the `reason` label of
`algopack_poll_errors_total`:

- `timeout`: no HTTP answer at all — connect/read timeout, connection refused or reset,
  DNS failure (after the configured retries). "ISS unreachable".
- `auth`: HTTP 401/403, or a non-JSON answer (ISS answers an HTML login page when it refuses),
  or the passport refused the login; in passport mode only after one re-authentication.
- `http`: any other HTTP status >= 400 after retries (429 included: never retried blindly).
- `parse`: invalid JSON, a missing block, a missing required column, rows that do not
  match the columns.

No message or log line carries a secret: the API key travels in a header, the passport
login/password only in the Basic auth of the passport request, and URLs are logged through
`describe_url`, which never includes credentials.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from exporter.config import IssConfig

log = logging.getLogger("exporter.iss")

PASSPORT_COOKIE = "MicexPassportCert"
RETRY_STATUSES = (500, 502, 503, 504)
ERROR_REASONS = ("http", "timeout", "auth", "parse")
# Longest Retry-After (on 503) we are willing to sleep inside one poll.
RETRY_AFTER_MAX_SECONDS = 30.0
_SECRET_PARAM_WORDS = ("key", "token", "password", "passwd", "login", "cert", "secret", "auth")


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
    frame: pd.DataFrame
    total: int | None  # TOTAL from the cursor block, when the server sent one
    pages: int
    bytes: int
    status: int  # HTTP status of the last page
    truncated: bool = False  # stopped by max_pages before the last page


class IssStats:
    """Thread-safe counters of the load we put on ISS (every HTTP attempt, retries included)."""

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


class _IssRetry(Retry):
    """Retry that counts the attempts it retries (the final one is counted by the client)
    and honours Retry-After only on 503: a 429 must surface, not stall a worker."""

    RETRY_AFTER_STATUS_CODES = frozenset([503])
    stats: IssStats | None = None

    def new(self, **kw: Any) -> _IssRetry:
        retry = super().new(**kw)
        retry.stats = self.stats
        return retry

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        # only reached when another attempt follows; exhausted attempts raise above
        if self.stats is not None:
            self.stats.record(response.status if response is not None else "error")
        log.debug("iss_retry url=%s status=%s error=%s", _safe_url(url),
                  response.status if response is not None else "-", type(error).__name__ if error else "-")
        return new


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


def _safe_url(url: str | None) -> str:
    if not url:
        return "-"
    parts = urlsplit(url)
    return describe_url(parts.path) + ("?" + parts.query if parts.query else "")


def _lower_columns(columns: Iterable[Any], block: str) -> list[str]:
    names = [str(name).lower() for name in columns]
    if len(set(names)) != len(names):
        raise IssError("parse", f"block {block!r} has duplicate column names")
    return names


def parse_block(payload: Mapping[str, Any], block: str, required_columns: Iterable[str] = ()) -> pd.DataFrame:
    """One ISS JSON block → DataFrame with lower-cased column names (pure; no I/O).

    Raises IssError("parse") when the block is missing or malformed, a required column
    (compared case-insensitively) is absent, or a row does not match the columns."""
    if not isinstance(payload, Mapping):
        raise IssError("parse", "ISS answer is not a JSON object")
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
    return pd.DataFrame(rows, columns=names) if rows else pd.DataFrame({name: [] for name in names})


def parse_cursor(payload: Mapping[str, Any], block: str) -> dict[str, int] | None:
    """`<block>.cursor` → {"index", "total", "pagesize"}, or None when absent."""
    cursor = payload.get(f"{block}.cursor") if isinstance(payload, Mapping) else None
    if cursor is None:
        return None
    try:
        frame = parse_block(payload, f"{block}.cursor", ("index", "total", "pagesize"))
        if frame.empty:
            return None
        row = frame.iloc[0]
        return {key: int(row[key]) for key in ("index", "total", "pagesize")}
    except (TypeError, ValueError) as exc:
        raise IssError("parse", f"block '{block}.cursor' has non-integer values") from exc


class IssClient:
    """One session for all polls; safe to share between worker threads."""

    def __init__(self, cfg: IssConfig, stats: IssStats | None = None):
        self.cfg = cfg
        self.stats = stats if stats is not None else IssStats()
        self._base = cfg.base_url.rstrip("/")
        self._auth_lock = threading.Lock()
        self._auth_generation = 0  # bumped on each successful passport login
        self._cert: str | None = None  # MicexPassportCert value (passport mode)
        self._timeout = (min(cfg.timeout_seconds, 5.0), cfg.timeout_seconds)

        retry = _IssRetry(
            total=cfg.retries, connect=cfg.retries, read=cfg.retries, status=cfg.retries,
            other=0, redirect=False,
            backoff_factor=cfg.backoff_seconds, backoff_jitter=cfg.backoff_seconds / 4,
            status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True, retry_after_max=RETRY_AFTER_MAX_SECONDS,
            raise_on_status=False,
        )
        retry.stats = self.stats
        self._adapter = HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=4)
        self.session = requests.Session()
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)
        self.session.headers.update({
            "User-Agent": cfg.user_agent,
            "Cache-Control": "no-cache",
            "Accept": "application/json",
        })
        if cfg.auth == "apikey" and cfg.api_key:
            self.session.headers["Authorization"] = f"Bearer {cfg.api_key}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> IssClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public API

    def get_block(self, path: str, params: Mapping[str, Any] | None = None, block: str = "data",
                  required_columns: Iterable[str] = (), all_pages: bool = True, start: int = 0,
                  max_pages: int = 100, columns: Iterable[str] | None = None) -> IssResult:
        """Rows of one block, paging with `start` across `<block>.cursor` (or until a short page).

        `columns` asks ISS to trim the block (`<block>.columns=`); the frame is trimmed to
        the requested columns that came back, so it looks the same if ISS ignores it."""
        required = tuple(c.lower() for c in required_columns)
        wanted = [c.lower() for c in columns] if columns else None
        base_params: dict[str, Any] = dict(params or {})
        base_params["iss.meta"] = "off"
        base_params["iss.only"] = f"{block},{block}.cursor"
        if wanted:
            base_params[f"{block}.columns"] = ",".join(dict.fromkeys([*wanted, *required]))

        frames: list[pd.DataFrame] = []
        total: int | None = None
        page_size: int | None = None
        pages = nbytes = status = 0
        offset = start
        truncated = False
        while True:
            page_params = {**base_params, "start": offset}
            payload, status, size = self._get_json(path, page_params)
            nbytes += size
            pages += 1
            frame = parse_block(payload, block, required)
            cursor = parse_cursor(payload, block)
            if cursor is not None:
                total, page_size = cursor["total"], cursor["pagesize"] or None
            elif page_size is None and len(frame):
                page_size = len(frame)  # no cursor: the first page tells the server's page size
            frames.append(frame)
            rows = len(frame)
            offset += rows
            if not all_pages or rows == 0:
                break
            if page_size is not None and rows < page_size:
                break
            if total is not None and offset >= total:
                break
            if pages >= max_pages:
                truncated = True
                log.warning("iss_paging_truncated path=%s pages=%d rows=%d", describe_url(path), pages,
                            offset - start)
                break

        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if wanted:
            keep = [c for c in dict.fromkeys([*wanted, *required]) if c in frame.columns]
            frame = frame[keep]
        return IssResult(frame=frame, total=total, pages=pages, bytes=nbytes, status=status,
                         truncated=truncated)

    # ------------------------------------------------------------------ internals

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._base}/{path.lstrip('/')}"

    def _get_json(self, path: str, params: Mapping[str, Any]) -> tuple[Any, int, int]:
        """GET → (payload, status, bytes). Passport mode: one re-authentication on refusal."""
        if self.cfg.auth == "passport":
            generation, cert = self._ensure_passport()
            try:
                return self._attempt(path, params, {PASSPORT_COOKIE: cert})
            except IssError as exc:
                if exc.reason != "auth":
                    raise
                log.info("iss_reauth path=%s cause=%r", describe_url(path), exc.message)
                cert = self._reauthenticate(generation)
                return self._attempt(path, params, {PASSPORT_COOKIE: cert})
        return self._attempt(path, params)

    def _attempt(self, path: str, params: Mapping[str, Any],
                 cookies: Mapping[str, str] | None = None) -> tuple[Any, int, int]:
        where = describe_url(path, params)
        started = time.monotonic()
        try:
            response = self.session.get(self._url(path), params=params, cookies=cookies, timeout=self._timeout)
        except requests.exceptions.RetryError as exc:
            self.stats.record("error")
            raise IssError("http", f"GET {where}: retries exhausted") from exc
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as exc:
            self.stats.record("error")
            log.warning("iss_request path=%s status=error error=%s duration=%.3f", where,
                        type(exc).__name__, time.monotonic() - started)
            raise IssError("timeout", f"GET {where}: no answer ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:
            self.stats.record("error")
            raise IssError("http", f"GET {where}: {type(exc).__name__}") from exc

        for earlier in response.history:
            self.stats.record(earlier.status_code, len(earlier.content or b""))
        body = response.content or b""
        self.stats.record(response.status_code, len(body))
        status = response.status_code
        log.debug("iss_request path=%s status=%d bytes=%d duration=%.3f", where, status, len(body),
                  time.monotonic() - started)

        content_type = response.headers.get("Content-Type", "").lower()
        if status in (401, 403):
            raise IssError("auth", f"GET {where}: HTTP {status}", status)
        if status >= 400:
            raise IssError("http", f"GET {where}: HTTP {status}", status)
        if "json" not in content_type:
            shown = content_type.split(";")[0] or "no content type"
            raise IssError("auth", f"GET {where}: answer is {shown}, not JSON (login page or refusal)", status)
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise IssError("parse", f"GET {where}: invalid JSON ({exc.__class__.__name__})", status) from exc
        return payload, status, len(body)

    # passport --------------------------------------------------------------
    # The certificate is kept here and sent per request, not in the session's cookie jar:
    # the jar is shared by the worker threads and replacing a cookie in it is not atomic.
    # The passport request uses its own session so the passport host's Set-Cookie never
    # lands in the ISS session either.

    def _ensure_passport(self) -> tuple[int, str]:
        with self._auth_lock:
            if self._cert is None:
                self._login()
            assert self._cert is not None
            return self._auth_generation, self._cert

    def _reauthenticate(self, failed_generation: int) -> str:
        with self._auth_lock:
            # another thread may already have logged in again after the same refusal
            if self._auth_generation == failed_generation or self._cert is None:
                self._login()
            assert self._cert is not None
            return self._cert

    def _login(self) -> None:
        """GET passport_url with HTTP Basic; keep the MicexPassportCert value. Lock held."""
        login, password = self.cfg.passport_login, self.cfg.passport_password
        if not login or not password:
            raise IssError("auth", "passport auth needs MOEX_PASSPORT_LOGIN and MOEX_PASSPORT_PASSWORD")
        where = describe_url(self.cfg.passport_url)
        with requests.Session() as passport:
            passport.mount("http://", self._adapter)
            passport.mount("https://", self._adapter)
            passport.headers.update({"User-Agent": self.cfg.user_agent, "Cache-Control": "no-cache"})
            try:
                response = passport.get(self.cfg.passport_url, auth=(login, password), timeout=self._timeout)
            except requests.exceptions.RequestException as exc:
                self.stats.record("error")
                raise IssError("timeout", f"passport GET {where}: no answer ({type(exc).__name__})") from exc
            cookies = [resp.cookies.get(PASSPORT_COOKIE) for resp in (response, *response.history)]
        self.stats.record(response.status_code, len(response.content or b""))
        if response.status_code in (401, 403):
            raise IssError("auth", f"passport GET {where}: login refused (HTTP {response.status_code})",
                           response.status_code)
        if response.status_code >= 400:
            raise IssError("http", f"passport GET {where}: HTTP {response.status_code}", response.status_code)
        value = next((cookie for cookie in cookies if cookie), None)
        if not value:
            raise IssError("auth", f"passport GET {where}: no {PASSPORT_COOKIE} cookie in the answer")
        self._cert = value
        self._auth_generation += 1
        log.info("iss_passport_login ok generation=%d", self._auth_generation)
