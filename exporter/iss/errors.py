"""Failure reasons (`IssError`), and the text helpers that keep secrets out of messages and logs."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

ERROR_REASONS = ("http", "timeout", "auth", "parse", "throttled", "iss_error", "too_large", "redirect")
PASSPORT_COOKIE = "MicexPassportCert"
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


class _Retryable(IssError):
    """A timeout-type failure the retry loop may repeat."""


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
