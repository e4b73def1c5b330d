"""`IssClient`: one `requests.Session` for all polls, the public API (`get_block`, `iter_pages`),
credentials per origin; the HTTP side is `transport`, the passport login `passport`."""

from __future__ import annotations

import http.cookiejar
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from exporter.config import IssConfig
from exporter.table import Table

from .blocks import ISS_PAGE_ROWS, IssResult, PageStream
from .errors import PASSPORT_COOKIE, IssError, _origin, describe_url
from .passport import REAUTH_COOLDOWN_SECONDS, _Passport
from .transport import THROTTLE_BACKOFF_BASE_SECONDS, THROTTLE_BACKOFF_MAX_SECONDS, _Transport
from .watch import _Adapter, _Watchdog

log = logging.getLogger("exporter.iss")  # one logger for the whole client

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


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


class IssClient(_Passport, _Transport):
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
        self._untrimmed: set[str] = set()  # paths whose `<block>.columns` ISS answered without a needed column
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

    def _trimming_refused(self, path: str) -> bool:
        return describe_url(path) in self._untrimmed

    def _refuse_trimming(self, path: str) -> None:
        if len(self._untrimmed) < 256:
            self._untrimmed.add(describe_url(path))

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
