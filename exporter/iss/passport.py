"""Passport mode: the MicexPassportCert login, at most one re-login per refusal episode, cool-downs.

The certificate is kept by the client and sent per request (Cookie header, base origin only),
never kept in a cookie jar (the session's jar accepts nothing)."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any
from urllib.parse import urljoin

from .errors import PASSPORT_COOKIE, IssError, _origin, _Retryable, describe_origin, describe_url
from .transport import MAX_REDIRECTS, REDIRECT_STATUSES, _Answer

log = logging.getLogger("exporter.iss")  # one logger for the whole client

REAUTH_COOLDOWN_SECONDS = 300.0
LOGIN_RETRY_SECONDS = 30.0  # after a passport login that got no answer


class _Passport:
    """`IssClient`'s passport login (a mixin: the client holds the lock and the certificate)."""

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
