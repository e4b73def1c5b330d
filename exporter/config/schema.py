"""The schema engine: known keys, an error collector, and typed getters that fall back to defaults.

Every bad value becomes one "key.path: reason" line (naming the environment variable when the
value came from one); a value that may be a secret is never echoed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .model import ENV_API_KEY, ENV_PASSPORT_LOGIN, ENV_PASSPORT_PASSWORD

_MAX_ERROR_CHARS = 300

# Which environment variable holds the secret a misplaced YAML key looks like.
_SECRET_HINTS = (
    ("password", ENV_PASSPORT_PASSWORD),
    ("passwd", ENV_PASSPORT_PASSWORD),
    ("api_key", ENV_API_KEY),
    ("apikey", ENV_API_KEY),
    ("token", "TELEGRAM_BOT_TOKEN / TELEGRAM_BOT_TOKEN_BOT"),
    ("login", ENV_PASSPORT_LOGIN),
    ("secret", f"{ENV_API_KEY} / {ENV_PASSPORT_PASSWORD}"),
)

_SECID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.IGNORECASE)


_SCHEMA: dict[str, Any] = {
    "iss": {"base_url", "auth", "passport_url", "timeout_seconds", "max_response_bytes", "retries",
            "backoff_seconds", "user_agent", "latest_reads"},
    "calendar": {"file", "reload_interval_seconds", "sync"},
    "poll": {"interval_seconds", "publish_offset_seconds", "publish_grace_seconds", "missing_window_seconds",
             "max_workers"},
    "slo": {"target_ratio", "targets"},
    "delay_threshold_seconds": None,
    "markets": {"eq", "fx", "fo"},
    "web": {"listen_address"},
    "telegram": {"api_url", "allowed_chat_ids", "allowed_user_ids", "admin_user_ids", "report_time",
                 "report_chat_id"},
    "prometheus": {"url"},
    "alertmanager": {"url"},
    "grafana": {"url"},
    "deadman": {"enabled", "check_interval_seconds", "threshold_seconds", "reminder_hours"},
}
_SYNC_KEYS = {"enabled", "time", "days_ahead", "retry_minutes"}
# `url` may be a list of replicas (the bot tries them in order).
_LIST_URL_SECTIONS = ("prometheus", "alertmanager")
_MARKET_KEYS = {"enabled", "probe", "endpoints"}
_FO_MARKET_KEYS = _MARKET_KEYS | {"futoi_ticker"}


class _Checker:
    """Collects errors; knows which key paths were set from the environment."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.env_sources: dict[str, str] = {}

    def error(self, path: str, reason: str) -> None:
        source = self.env_sources.get(path)
        if len(path) > 120:  # a key path is built from the file's keys: bound it
            path = path[:117] + "..."
        where = f"{path} (env {source})" if source else path
        line = f"{where}: {reason}"
        self.errors.append(line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS - 3] + "...")


def _secret_env_for(key: str) -> str | None:
    lowered = key.lower()
    for needle, env in _SECRET_HINTS:
        if needle in lowered:
            return env
    return None


def _check_secret_keys(node: Any, prefix: str, checker: _Checker) -> None:
    """A secret-looking key anywhere in the file is an error (the value is never echoed)."""
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        env = _secret_env_for(str(key))
        if env is not None:
            checker.error(path, f"secrets come from the environment: set {env}")
        else:
            _check_secret_keys(value, path, checker)


def _is_secret_path(path: str) -> bool:
    return any(_secret_env_for(part) for part in path.split("."))


def _check_unknown(raw: Mapping[str, Any], checker: _Checker) -> None:
    for key in raw:
        if key not in _SCHEMA:
            if not _is_secret_path(str(key)):
                checker.error(str(key), f"unknown key (known: {', '.join(_SCHEMA)})")
            continue
        allowed = _SCHEMA[key]
        value = raw[key]
        if allowed is None:
            continue
        if value is None:
            continue
        if not isinstance(value, Mapping):
            checker.error(key, "must be a mapping")
            continue
        for sub in value:
            if sub not in allowed and not _is_secret_path(str(sub)):
                checker.error(f"{key}.{sub}", f"unknown key (known: {', '.join(sorted(allowed))})")


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _parse_duration(text: str, default_unit: str) -> float:
    """"10" (default unit), "600s", "10m", "1h" → seconds."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError("expected a number of minutes, or a value with a unit: 600s, 10m, 1h")
    number, unit = float(match.group(1)), (match.group(2) or default_unit).lower()
    return number * {"s": 1, "m": 60, "h": 3600}[unit]



class _Reader:
    """Typed getters over one section; every bad value becomes an error, a default is used."""

    def __init__(self, checker: _Checker, section: str, values: Mapping[str, Any]):
        self.checker, self.section, self.values = checker, section, values

    def path(self, key: str) -> str:
        return f"{self.section}.{key}" if self.section else key

    def number(self, key: str, default: float, *, minimum: float = 0.0, strict: bool = True,
               integer: bool = False) -> float:
        value = self.values.get(key, default)
        if value is None:
            value = default
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer and float(value) != int(value):
            ok = False
        if not ok:
            self.checker.error(self.path(key), f"must be {'an integer' if integer else 'a number'}")
            return default
        if (strict and value <= minimum) or (not strict and value < minimum):
            self.checker.error(self.path(key), f"must be {'>' if strict else '>='} {minimum:g}")
            return default
        return int(value) if integer else float(value)

    def string(self, key: str, default: str | None) -> str | None:
        value = self.values.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.checker.error(self.path(key), "must be a non-empty string")
            return default
        return value.strip()

    def url(self, key: str, default: str) -> str:
        value = self.string(key, default) or default
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.checker.error(self.path(key), "must be an http(s) URL with a host")
            return default
        if parts.username or parts.password:
            # never echo the value: it holds credentials
            self.checker.error(self.path(key), "must not contain credentials (secrets come from the environment)")
            return default
        return value.rstrip("/")

    def boolean(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.checker.error(self.path(key), "must be true or false")
            return default
        return value

    def int_list(self, key: str) -> tuple[int, ...]:
        value = self.values.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.checker.error(self.path(key), "must be a list of integer ids")
            return ()
        result = []
        for index, item in enumerate(value):
            parsed = _as_int(item)
            if parsed is None:
                self.checker.error(f"{self.path(key)}[{index}]", "must be an integer id")
            else:
                result.append(parsed)
        return tuple(dict.fromkeys(result))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None



def _ratio(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1

