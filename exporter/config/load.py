"""`load_config`: the file (UTF-8, no YAML bombs), then the environment, then every section."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from exporter.yamlsafe import YamlBombError, check_expansion, short

from .listen import split_listen_address
from .model import (
    CalendarConfig,
    Config,
    ConfigError,
    DeadmanConfig,
    PollConfig,
    WebConfig,
)
from .schema import (
    _LIST_URL_SECTIONS,
    _check_secret_keys,
    _check_unknown,
    _Checker,
    _parse_duration,
    _Reader,
    _section,
)
from .sections import _read_calendar_sync, _read_iss, _read_markets, _read_slo, _read_telegram, _read_urls


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
