"""Readers of the sections that need more than the typed getters: iss, calendar.sync, slo, markets,
telegram and the replica URL lists."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from exporter import datasets
from exporter.yamlsafe import short

from .model import (
    APIM_HOST,
    AUTH_MODES,
    DEFAULT_APIM_URL,
    DEFAULT_ISS_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    ENV_API_KEY,
    ENV_PASSPORT_LOGIN,
    ENV_PASSPORT_PASSWORD,
    ISS_HOST,
    MARKETS,
    CalendarSyncConfig,
    IssConfig,
    MarketConfig,
    SloConfig,
    TelegramConfig,
    UrlConfig,
    _default_markets,
)
from .schema import (
    _FO_MARKET_KEYS,
    _HHMM_RE,
    _MARKET_KEYS,
    _SECID_RE,
    _SYNC_KEYS,
    _as_int,
    _Checker,
    _is_secret_path,
    _ratio,
    _Reader,
    _section,
)


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
        latest_reads=r.boolean("latest_reads", IssConfig.latest_reads),
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
            if endpoint not in datasets.names() or not datasets.get(endpoint).intraday:
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
    known = datasets.names()
    if not isinstance(items, list):
        checker.error(f"{path}.endpoints", f"must be a list of {', '.join(known)}")
        return default
    result: list[str] = []
    for index, item in enumerate(items):
        where = f"{path}.endpoints[{index}]"
        if item not in known:
            checker.error(where, f"{short(item)} is not one of {', '.join(known)}")
        elif market not in datasets.get(item).markets:
            checker.error(where, f"{item} exists only for the {'/'.join(datasets.get(item).markets)} market")
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

