"""One YAML configuration file for the exporter and the bot, plus the environment.

`load_config(path, environ)` turns the file (or nothing: all defaults) and the environment
into a frozen `Config`, or raises `ConfigError` listing every bad entry at once as
"key.path: reason". Environment overrides are applied before validation, so an error caused
by one names the variable ("poll.interval_seconds (env INTERVAL_REQUEST): ...").

Secrets (MOEX passport login/password, API key, Telegram tokens) come only from the
environment; their fields are `repr=False` and no error message ever contains a value of one.
The committed `config.example.yml` is the reference of every key.

Layout: `model` (dataclasses, constants), `listen` (listen addresses), `schema` (the key schema,
error collector and typed getters), `sections` (section readers), `load` (file, environment,
`load_config`).
"""

from __future__ import annotations

from .listen import split_listen_address
from .load import load_config
from .model import (
    APIM_HOST,
    AUTH_MODES,
    DEFAULT_APIM_URL,
    DEFAULT_ISS_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    ENDPOINTS,
    ENV_API_KEY,
    ENV_PASSPORT_LOGIN,
    ENV_PASSPORT_PASSWORD,
    ISS_HOST,
    MARKETS,
    CalendarConfig,
    CalendarSyncConfig,
    Config,
    ConfigError,
    DeadmanConfig,
    IssConfig,
    MarketConfig,
    PollConfig,
    SloConfig,
    TelegramConfig,
    UrlConfig,
    WebConfig,
)

__all__ = [
    "APIM_HOST", "AUTH_MODES", "DEFAULT_APIM_URL", "DEFAULT_ISS_URL", "DEFAULT_MAX_RESPONSE_BYTES", "ENDPOINTS",
    "ENV_API_KEY", "ENV_PASSPORT_LOGIN", "ENV_PASSPORT_PASSWORD", "ISS_HOST", "MARKETS",
    "CalendarConfig", "CalendarSyncConfig", "Config", "ConfigError", "DeadmanConfig", "IssConfig",
    "MarketConfig", "PollConfig", "SloConfig", "TelegramConfig", "UrlConfig", "WebConfig",
    "load_config", "split_listen_address",
]
