"""The configuration's model: frozen dataclasses with their defaults, and the shared constants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from exporter import __version__, datasets

from .listen import split_listen_address

MARKETS = ("eq", "fx", "fo")
# The datasets of the registry (exporter/datasets.py) at import; validation and the pair
# order read `datasets.names()` itself, so a dataset registered later is known too.
ENDPOINTS = datasets.names()

ENV_PASSPORT_LOGIN = "MOEX_PASSPORT_LOGIN"
ENV_PASSPORT_PASSWORD = "MOEX_PASSPORT_PASSWORD"
ENV_API_KEY = "MOEX_API_KEY"

DEFAULT_ISS_URL = "https://iss.moex.com"
DEFAULT_APIM_URL = "https://apim.moex.com"
ISS_HOST = "iss.moex.com"      # passport cookie (iss-api.md §1, §11 "hosts")
APIM_HOST = "apim.moex.com"    # API key as Bearer (iss-api.md §1, §11 "hosts")
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
AUTH_MODES = ("none", "passport", "apikey")


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
    # Ask `latest=1` for the incremental read of a dataset without a cursor (FUTOI, whose every
    # answer is otherwise the whole day). Whether ISS honours it there is unverified (§3); the
    # poller checks each answer for gaps and reads the day whole when it does not fit.
    latest_reads: bool = True
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
            pairs.extend((market, endpoint) for endpoint in datasets.names() if endpoint in mcfg.endpoints)
        return pairs

