"""One logical GET of the client: retries with backoff, the shared throttling back-off, same-origin
redirects, and one HTTP exchange under the deadline and the size cap (streamed, gzip-bomb safe)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3

from .errors import (
    PASSPORT_COOKIE,
    IssError,
    _origin,
    _Retryable,
    describe_origin,
    describe_url,
    parse_retry_after,
)
from .watch import _DeadlinePassed, _local, _Watch

log = logging.getLogger("exporter.iss")  # one logger for the whole client

RETRY_STATUSES = (500, 502, 503, 504)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Longest Retry-After (on 503) we are willing to sleep inside one poll.
RETRY_AFTER_MAX_SECONDS = 30.0
# Throttling: the longest Retry-After honoured, and the exponential back-off without one.
THROTTLE_RETRY_AFTER_MAX_SECONDS = 3600.0
THROTTLE_BACKOFF_BASE_SECONDS = 5.0
THROTTLE_BACKOFF_MAX_SECONDS = 300.0
THROTTLE_WAIT_BELOW_SECONDS = 1.0  # a back-off with less left than this is waited out
MAX_REDIRECTS = 5
READ_CHUNK_BYTES = 64 * 1024


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


class _Transport:
    """`IssClient`'s HTTP side (a mixin: it uses the client's cfg, session, stats, watchdog and
    throttling state)."""

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
