"""One YAML configuration file for the exporter and the bot, plus the environment.

`load_config(path, environ)` turns the file (or nothing: all defaults) and the environment
into a frozen `Config`, or raises `ConfigError` listing every bad entry at once as
"key.path: reason". Environment overrides are applied before validation, so an error caused
by one names the variable ("poll.interval_seconds (env INTERVAL_REQUEST): ...").

Secrets (MOEX passport login/password, API key, Telegram tokens) come only from the
environment; their fields are `repr=False` and no error message ever contains a value of one.
The committed `config.example.yml` is the reference of every key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter import __version__
from exporter.yamlsafe import YamlBombError, check_expansion, short

MARKETS = ("eq", "fx", "fo")
ENDPOINTS = ("tradestats", "orderstats", "obstats", "hi2", "futoi")

ENV_PASSPORT_LOGIN = "MOEX_PASSPORT_LOGIN"
ENV_PASSPORT_PASSWORD = "MOEX_PASSPORT_PASSWORD"
ENV_API_KEY = "MOEX_API_KEY"

DEFAULT_ISS_URL = "https://iss.moex.com"
DEFAULT_APIM_URL = "https://apim.moex.com"
ISS_HOST = "iss.moex.com"      # passport cookie (iss-api.md §1, §11 "hosts")
APIM_HOST = "apim.moex.com"    # API key as Bearer (iss-api.md §1, §11 "hosts")
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_MAX_ERROR_CHARS = 300
AUTH_MODES = ("none", "passport", "apikey")

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


class ConfigError(ValueError):
    """The configuration is invalid; `.errors` lists every problem as "key.path: reason"."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"invalid configuration ({len(self.errors)} error(s)):\n{lines}")


@dataclass(frozen=True)
class IssConfig:
    base_url: str = DEFAULT_ISS_URL
    auth: str = "none"
    passport_url: str = "https://passport.moex.com/authenticate"
    timeout_seconds: float = 10.0  # the whole request: connect, headers and body together
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # per answer, on the wire and unpacked
    retries: int = 2
    backoff_seconds: float = 0.5
    user_agent: str = f"algopack-monitor/{__version__}"
    passport_login: str | None = field(default=None, repr=False)
    passport_password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)

    def check_secrets(self) -> list[str]:
        """Errors for secrets the chosen auth mode needs but the environment lacks."""
        missing: list[str] = []
        if self.auth == "passport":
            if not self.passport_login:
                missing.append(ENV_PASSPORT_LOGIN)
            if not self.passport_password:
                missing.append(ENV_PASSPORT_PASSWORD)
        elif self.auth == "apikey" and not self.api_key:
            missing.append(ENV_API_KEY)
        return [f"iss.auth={self.auth}: set {name} in the environment" for name in missing]


@dataclass(frozen=True)
class CalendarSyncConfig:
    """The exporter's daily merge of the ISS calendar into calendar.yml (off by default)."""

    enabled: bool = False
    time: str = "06:17"  # Moscow "HH:MM"; off the 5-minute marks, well before the sessions
    days_ahead: int = 366  # synced range: today .. today + days_ahead
    retry_minutes: float = 60.0  # after a failure, try again this soon (not a day later)


@dataclass(frozen=True)
class CalendarConfig:
    file: Path = Path("calendar.yml")
    reload_interval_seconds: float = 2.0
    sync: CalendarSyncConfig = field(default_factory=CalendarSyncConfig)


@dataclass(frozen=True)
class PollConfig:
    interval_seconds: float = 60.0
    publish_offset_seconds: float = 20.0
    publish_grace_seconds: float = 120.0
    # Holes whose grace ran out within this window alert; older ones stay counted in
    # algopack_missing_intervals but no longer hold the alert (so a later hole pages again).
    missing_window_seconds: float = 1800.0
    max_workers: int = 2


@dataclass(frozen=True)
class SloConfig:
    """Feed SLO: the share of expected buckets that must come on time (over 30 days)."""

    target_ratio: float = 0.995
    # Per pair: {(market, endpoint): ratio}; the others use target_ratio.
    targets: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def target(self, market: str, endpoint: str) -> float:
        return self.targets.get((market, endpoint), self.target_ratio)


@dataclass(frozen=True)
class MarketConfig:
    name: str
    enabled: bool = True
    probe: str = "auto"
    endpoints: tuple[str, ...] = ()
    futoi_ticker: str | None = None  # fo only


@dataclass(frozen=True)
class WebConfig:
    listen_address: str = "127.0.0.1:9877"

    @property
    def host(self) -> str:
        return split_listen_address(self.listen_address)[0]

    @property
    def port(self) -> int:
        return split_listen_address(self.listen_address)[1]


@dataclass(frozen=True)
class TelegramConfig:
    api_url: str = "https://api.telegram.org"
    allowed_chat_ids: tuple[int, ...] = ()  # includes TELEGRAM_GROUP_CHATID when set
    allowed_user_ids: tuple[int, ...] = ()
    admin_user_ids: tuple[int, ...] = ()  # empty: every allowed user is an admin
    report_time: str | None = None
    report_chat_id: int | None = None  # default: group_chat_id
    group_chat_id: int | None = None  # TELEGRAM_GROUP_CHATID
    alert_token: str | None = field(default=None, repr=False)  # TELEGRAM_BOT_TOKEN (Alertmanager)
    bot_token: str | None = field(default=None, repr=False)  # TELEGRAM_BOT_TOKEN_BOT, else TELEGRAM_BOT_TOKEN

    def check_secrets(self) -> list[str]:
        """Errors for the bot process: it needs a token of its own."""
        if not self.bot_token:
            return ["telegram: set TELEGRAM_BOT_TOKEN_BOT (or TELEGRAM_BOT_TOKEN) in the environment"]
        return []


@dataclass(frozen=True)
class UrlConfig:
    url: str                          # the first (preferred) URL
    others: tuple[str, ...] = ()      # more replicas, tried in order when one is down

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.others)


@dataclass(frozen=True)
class DeadmanConfig:
    """The bot's check of the monitoring itself (bot/deadman.py); seconds on the bot's clock."""

    enabled: bool = True
    check_interval_seconds: float = 60.0
    threshold_seconds: float = 180.0
    reminder_hours: float = 4.0     # 0: never remind


def _default_markets() -> dict[str, MarketConfig]:
    return {
        "eq": MarketConfig("eq", True, "SBER", ("tradestats", "orderstats", "obstats", "hi2")),
        "fx": MarketConfig("fx", True, "CNYRUB_TOM", ("tradestats", "orderstats", "obstats", "hi2")),
        # fo orderstats is allowed but off: whether ISS serves it is unverified (iss-api.md §2).
        "fo": MarketConfig("fo", True, "auto", ("tradestats", "obstats", "hi2", "futoi"), futoi_ticker="RI"),
    }


@dataclass(frozen=True)
class Config:
    iss: IssConfig = field(default_factory=IssConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    delay_threshold_seconds: float = 600.0
    markets: Mapping[str, MarketConfig] = field(default_factory=_default_markets)
    web: WebConfig = field(default_factory=WebConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    prometheus: UrlConfig = field(default_factory=lambda: UrlConfig("http://127.0.0.1:9090"))
    alertmanager: UrlConfig = field(default_factory=lambda: UrlConfig("http://127.0.0.1:9093"))
    grafana: UrlConfig = field(default_factory=lambda: UrlConfig("http://127.0.0.1:3000"))
    deadman: DeadmanConfig = field(default_factory=DeadmanConfig)
    path: Path | None = None  # the file this came from (None: defaults only)

    def enabled_pairs(self) -> list[tuple[str, str]]:
        """(market, endpoint) pairs to poll, in a stable order (markets, then endpoints)."""
        pairs = []
        for market in MARKETS:
            mcfg = self.markets.get(market)
            if mcfg is None or not mcfg.enabled:
                continue
            pairs.extend((market, endpoint) for endpoint in ENDPOINTS if endpoint in mcfg.endpoints)
        return pairs


def split_listen_address(address: str) -> tuple[str, int]:
    """"host:port" / "[::1]:port" / ":port" → (host, port); raises ValueError."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("must be host:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError("port must be 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


# --------------------------------------------------------------------------- loading


_SCHEMA: dict[str, Any] = {
    "iss": {"base_url", "auth", "passport_url", "timeout_seconds", "max_response_bytes", "retries",
            "backoff_seconds", "user_agent"},
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


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str], checker: _Checker) -> None:
    """Older `.env` names override the file (they are how the previous tool was run)."""

    def env(name: str) -> str | None:
        value = environ.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    def put(section: str | None, key: str, value: Any, name: str) -> None:
        if section is None:
            raw[key] = value
            checker.env_sources[key] = name
        else:
            target = raw.get(section)
            if not isinstance(target, Mapping):
                target = {}
            target = dict(target)
            target[key] = value
            raw[section] = target
            checker.env_sources[f"{section}.{key}"] = name

    for name, section, key in (("DELAY", None, "delay_threshold_seconds"),
                               ("INTERVAL_REQUEST", "poll", "interval_seconds")):
        text = env(name)
        if text is None:
            continue
        path = key if section is None else f"{section}.{key}"
        try:
            put(section, key, _parse_duration(text, "m"), name)
        except ValueError as exc:
            checker.errors.append(f"{path} (env {name}): {short(text)}: {exc}")
    for name, section in (("TELEGRAM_API_URL", "telegram"), ("PROMETHEUS_URL", "prometheus"),
                          ("ALERTMANAGER_URL", "alertmanager"), ("GRAFANA_URL", "grafana")):
        text = env(name)
        if text is not None:
            if section in _LIST_URL_SECTIONS and "," in text:
                # PROMETHEUS_URL=http://a:9090,http://b:9090 (an HA pair)
                put(section, "url", [part.strip() for part in text.split(",")], name)
            else:
                put(section, "api_url" if section == "telegram" else "url", text, name)


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


def _read_iss(raw: Mapping[str, Any], environ: Mapping[str, str], checker: _Checker) -> IssConfig:
    r = _Reader(checker, "iss", _section(raw, "iss"))
    auth = r.values.get("auth", "none")
    if auth not in AUTH_MODES:
        checker.error("iss.auth", f"must be one of {', '.join(AUTH_MODES)} (got {short(auth)})")
        auth = "none"
    # The host follows the auth mode unless base_url is set (iss-api.md §11 "hosts").
    default_base = DEFAULT_APIM_URL if auth == "apikey" else DEFAULT_ISS_URL
    secrets = {name: (environ.get(name) or "").strip() or None
               for name in (ENV_PASSPORT_LOGIN, ENV_PASSPORT_PASSWORD, ENV_API_KEY)}
    base_url = r.url("base_url", default_base)
    host = (urlsplit(base_url).hostname or "").lower()
    if auth == "apikey" and host == ISS_HOST:
        checker.error("iss.base_url", f"iss.auth=apikey sends the API key to {ISS_HOST}, which takes only the "
                      f"passport cookie: use base_url {DEFAULT_APIM_URL} (or leave iss.base_url unset), "
                      "or iss.auth=passport")
    elif auth == "passport" and host == APIM_HOST:
        checker.error("iss.base_url", f"iss.auth=passport sends the passport cookie to {APIM_HOST}, which takes "
                      f"only the API key: use base_url {DEFAULT_ISS_URL} (or leave iss.base_url unset), "
                      "or iss.auth=apikey")
    max_bytes = int(r.number("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, integer=True))
    return IssConfig(
        base_url=base_url,
        auth=auth,
        passport_url=r.url("passport_url", IssConfig.passport_url),
        timeout_seconds=r.number("timeout_seconds", IssConfig.timeout_seconds),
        max_response_bytes=max_bytes,
        retries=int(r.number("retries", IssConfig.retries, strict=False, integer=True)),
        backoff_seconds=r.number("backoff_seconds", IssConfig.backoff_seconds, strict=False),
        user_agent=r.string("user_agent", IssConfig.user_agent) or IssConfig.user_agent,
        passport_login=secrets[ENV_PASSPORT_LOGIN],
        passport_password=secrets[ENV_PASSPORT_PASSWORD],
        api_key=secrets[ENV_API_KEY],
    )


def _read_calendar_sync(values: Any, checker: _Checker) -> CalendarSyncConfig:
    path = "calendar.sync"
    if values is None:
        return CalendarSyncConfig()
    if not isinstance(values, Mapping):
        checker.error(path, "must be a mapping")
        return CalendarSyncConfig()
    for key in values:
        if key not in _SYNC_KEYS:
            checker.error(f"{path}.{key}", f"unknown key (known: {', '.join(sorted(_SYNC_KEYS))})")
    r = _Reader(checker, path, values)
    base = CalendarSyncConfig()
    at = values.get("time", base.time)
    if isinstance(at, int) and not isinstance(at, bool) and 0 <= at < 24 * 60:
        at = f"{at // 60:02d}:{at % 60:02d}"  # YAML 1.1 reads an unquoted 06:17 as base-60 377
    if not isinstance(at, str) or not _HHMM_RE.match(at.strip()):
        checker.error(f"{path}.time", 'must be "HH:MM" (quoted), Moscow time')
        at = base.time
    days_ahead = int(r.number("days_ahead", base.days_ahead, integer=True))
    if days_ahead > 731:
        checker.error(f"{path}.days_ahead", "must be <= 731 (two years)")
        days_ahead = base.days_ahead
    return CalendarSyncConfig(enabled=r.boolean("enabled", base.enabled), time=at.strip(), days_ahead=days_ahead,
                              retry_minutes=r.number("retry_minutes", base.retry_minutes))


def _ratio(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1


def _read_slo(raw: Mapping[str, Any], checker: _Checker) -> SloConfig:
    """slo: {target_ratio: 0.995, targets: {eq: {tradestats: 0.999}}}"""
    section = _section(raw, "slo")
    target = section.get("target_ratio", SloConfig.target_ratio)
    if not _ratio(target):
        checker.error("slo.target_ratio", "must be a ratio between 0 and 1 (e.g. 0.995)")
        target = SloConfig.target_ratio
    targets: dict[tuple[str, str], float] = {}
    per_market = section.get("targets") or {}
    if not isinstance(per_market, Mapping):
        checker.error("slo.targets", "must be a mapping market -> {endpoint: ratio}")
        per_market = {}
    for market, endpoints in per_market.items():
        if market not in MARKETS or not isinstance(endpoints, Mapping):
            checker.error(f"slo.targets.{market}", f"must be one of {', '.join(MARKETS)} with {{endpoint: ratio}}")
            continue
        for endpoint, ratio in endpoints.items():
            if endpoint not in ENDPOINTS or endpoint == "hi2":
                checker.error(f"slo.targets.{market}.{endpoint}", "must be an intraday endpoint")
            elif not _ratio(ratio):
                checker.error(f"slo.targets.{market}.{endpoint}", "must be a ratio between 0 and 1")
            else:
                targets[(market, endpoint)] = float(ratio)
    return SloConfig(float(target), MappingProxyType(targets))


def _read_markets(raw: Mapping[str, Any], checker: _Checker) -> dict[str, MarketConfig]:
    defaults = _default_markets()
    section = _section(raw, "markets")
    markets: dict[str, MarketConfig] = {}
    for name in MARKETS:
        base = defaults[name]
        values = section.get(name)
        if values is None:
            markets[name] = base
            continue
        path = f"markets.{name}"
        if not isinstance(values, Mapping):
            checker.error(path, "must be a mapping")
            markets[name] = base
            continue
        allowed = _FO_MARKET_KEYS if name == "fo" else _MARKET_KEYS
        for key in values:
            if key not in allowed and not _is_secret_path(str(key)):
                reason = ("only the fo market has futoi_ticker" if key == "futoi_ticker"
                          else f"unknown key (known: {', '.join(sorted(allowed))})")
                checker.error(f"{path}.{key}", reason)
        r = _Reader(checker, path, values)
        enabled = r.boolean("enabled", base.enabled)
        probe = values.get("probe", base.probe)
        if not isinstance(probe, str) or not probe.strip():
            checker.error(f"{path}.probe", "must be a non-empty secid or auto")
            probe = base.probe
        elif probe.strip() == "auto":
            if name != "fo":
                checker.error(f"{path}.probe", "auto is only supported for fo; name a secid (e.g. SBER)")
                probe = base.probe
        elif not _SECID_RE.match(probe.strip()):
            checker.error(f"{path}.probe", "must be a secid (letters, digits, _ . -) or auto")
            probe = base.probe
        probe = probe.strip()
        endpoints = _read_endpoints(values, name, path, base.endpoints, checker)
        if enabled and values.get("endpoints") == []:
            checker.error(f"{path}.endpoints", "must list at least one endpoint (or set enabled: false)")
        futoi_ticker = None
        if name == "fo":
            futoi_ticker = values.get("futoi_ticker", base.futoi_ticker)
            if not isinstance(futoi_ticker, str) or not _SECID_RE.match(futoi_ticker.strip()):
                checker.error(f"{path}.futoi_ticker", "must be a FUTOI ticker such as RI or Si")
                futoi_ticker = base.futoi_ticker
            futoi_ticker = futoi_ticker.strip()
        markets[name] = MarketConfig(name, enabled, probe, endpoints, futoi_ticker)
    return markets


def _read_endpoints(values: Mapping[str, Any], market: str, path: str, default: tuple[str, ...],
                    checker: _Checker) -> tuple[str, ...]:
    if "endpoints" not in values:
        return default
    items = values["endpoints"]
    if not isinstance(items, list):
        checker.error(f"{path}.endpoints", f"must be a list of {', '.join(ENDPOINTS)}")
        return default
    result: list[str] = []
    for index, item in enumerate(items):
        where = f"{path}.endpoints[{index}]"
        if item not in ENDPOINTS:
            checker.error(where, f"{short(item)} is not one of {', '.join(ENDPOINTS)}")
        elif item == "futoi" and market != "fo":
            checker.error(where, "futoi exists only for the fo market")
        elif item in result:
            checker.error(where, f"{item} is listed twice")
        else:
            result.append(item)
    return tuple(result)


def _read_telegram(raw: Mapping[str, Any], environ: Mapping[str, str], checker: _Checker) -> TelegramConfig:
    r = _Reader(checker, "telegram", _section(raw, "telegram"))
    api_url = r.url("api_url", TelegramConfig.api_url)
    chats = r.int_list("allowed_chat_ids")
    users = r.int_list("allowed_user_ids")
    admins = r.int_list("admin_user_ids")

    group_text = (environ.get("TELEGRAM_GROUP_CHATID") or "").strip()
    group_chat_id = None
    if group_text:
        group_chat_id = _as_int(group_text)
        if group_chat_id is None:
            checker.errors.append("TELEGRAM_GROUP_CHATID (env): must be an integer chat id")
        elif group_chat_id not in chats:
            chats = (group_chat_id, *chats)

    report_time = r.values.get("report_time")
    if isinstance(report_time, int) and not isinstance(report_time, bool) and 0 <= report_time < 24 * 60:
        # YAML 1.1 reads an unquoted 10:01 as the base-60 integer 601
        report_time = f"{report_time // 60:02d}:{report_time % 60:02d}"
    if report_time is not None:
        match = _HHMM_RE.match(report_time) if isinstance(report_time, str) else None
        if not match:
            checker.error("telegram.report_time", 'must be "HH:MM" (quoted) or null')
            report_time = None
        elif int(match.group(2)) % 5 == 0:
            # alert checks run on 5-minute marks; the digest must not race them
            checker.error("telegram.report_time", "must not be on a minute divisible by 5 (e.g. 19:07)")
            report_time = None

    report_chat_id = r.values.get("report_chat_id")
    if report_chat_id is not None:
        parsed = _as_int(report_chat_id)
        if parsed is None:
            checker.error("telegram.report_chat_id", "must be an integer chat id or null")
        report_chat_id = parsed
    if report_chat_id is None:
        report_chat_id = group_chat_id

    alert_token = (environ.get("TELEGRAM_BOT_TOKEN") or "").strip() or None
    bot_token = (environ.get("TELEGRAM_BOT_TOKEN_BOT") or "").strip() or alert_token
    return TelegramConfig(api_url=api_url, allowed_chat_ids=chats, allowed_user_ids=users,
                          admin_user_ids=admins, report_time=report_time, report_chat_id=report_chat_id,
                          group_chat_id=group_chat_id, alert_token=alert_token, bot_token=bot_token)


def _read_urls(r: _Reader, default: str, many: bool) -> UrlConfig:
    """`url: http://a` or, where `many`, `url: [http://a, http://b]` (replicas, in order)."""
    value = r.values.get("url")
    if not (many and isinstance(value, list)):
        return UrlConfig(r.url("url", default))
    if not value:
        r.checker.error(r.path("url"), "must be an http(s) URL or a non-empty list of them")
        return UrlConfig(default)
    urls = []
    for index, item in enumerate(value):
        one = _Reader(r.checker, r.section, {f"url[{index}]": item})
        urls.append(one.url(f"url[{index}]", default))
    urls = list(dict.fromkeys(urls))
    return UrlConfig(urls[0], tuple(urls[1:]))


def _read_file(path: Path, checker: _Checker) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        checker.errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        checker.errors.append(f"{path}: not UTF-8 text (line {line}, byte {exc.start}: {exc.reason}); "
                              "save the file as UTF-8")
        return {}
    try:
        check_expansion(text, str(path))  # a 'billion laughs' file is refused before it is built
    except YamlBombError as exc:
        checker.errors.append(str(exc))
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc)[:200]
        checker.errors.append(f"{path}: not valid YAML{where}: {problem}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        checker.errors.append(f"{path}: the top level must be a mapping")
        return {}
    return dict(data)


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge with defaults and the environment, validate. Raises `ConfigError`."""
    import os

    environ = os.environ if environ is None else environ
    checker = _Checker()
    config_path = Path(path).resolve() if path is not None else None
    raw = _read_file(config_path, checker) if config_path is not None else {}
    if checker.errors:
        raise ConfigError(checker.errors)

    _check_secret_keys(raw, "", checker)
    _check_unknown(raw, checker)
    _apply_env(raw, environ, checker)

    iss = _read_iss(raw, environ, checker)

    base_dir = config_path.parent if config_path is not None else Path.cwd()
    cal = _Reader(checker, "calendar", _section(raw, "calendar"))
    cal_file = cal.string("file", "calendar.yml") or "calendar.yml"
    calendar = CalendarConfig(
        file=(base_dir / Path(cal_file).expanduser()).resolve(),
        reload_interval_seconds=cal.number("reload_interval_seconds", CalendarConfig.reload_interval_seconds),
        sync=_read_calendar_sync(cal.values.get("sync"), checker),
    )

    p = _Reader(checker, "poll", _section(raw, "poll"))
    poll = PollConfig(
        interval_seconds=p.number("interval_seconds", PollConfig.interval_seconds),
        publish_offset_seconds=p.number("publish_offset_seconds", PollConfig.publish_offset_seconds,
                                        strict=False),
        publish_grace_seconds=p.number("publish_grace_seconds", PollConfig.publish_grace_seconds),
        missing_window_seconds=p.number("missing_window_seconds", PollConfig.missing_window_seconds),
        max_workers=int(p.number("max_workers", PollConfig.max_workers, integer=True)),
    )
    delay = _Reader(checker, "", raw).number("delay_threshold_seconds", Config.delay_threshold_seconds)
    markets = _read_markets(raw, checker)
    slo = _read_slo(raw, checker)

    w = _Reader(checker, "web", _section(raw, "web"))
    listen = w.string("listen_address", WebConfig.listen_address) or WebConfig.listen_address
    try:
        split_listen_address(listen)
    except ValueError as exc:
        checker.error("web.listen_address", f"{exc} (e.g. 127.0.0.1:9877)")
        listen = WebConfig.listen_address

    telegram = _read_telegram(raw, environ, checker)
    urls = {}
    for name, default in (("prometheus", "http://127.0.0.1:9090"), ("alertmanager", "http://127.0.0.1:9093"),
                          ("grafana", "http://127.0.0.1:3000")):
        urls[name] = _read_urls(_Reader(checker, name, _section(raw, name)), default, name in _LIST_URL_SECTIONS)

    d = _Reader(checker, "deadman", _section(raw, "deadman"))
    deadman = DeadmanConfig(
        enabled=d.boolean("enabled", DeadmanConfig.enabled),
        check_interval_seconds=d.number("check_interval_seconds", DeadmanConfig.check_interval_seconds),
        threshold_seconds=d.number("threshold_seconds", DeadmanConfig.threshold_seconds),
        reminder_hours=d.number("reminder_hours", DeadmanConfig.reminder_hours, strict=False),
    )

    if checker.errors:
        raise ConfigError(checker.errors)
    return Config(deadman=deadman, iss=iss, calendar=calendar, poll=poll, slo=slo, delay_threshold_seconds=delay,
                  markets=markets,
                  web=WebConfig(listen), telegram=telegram, path=config_path, **urls)
