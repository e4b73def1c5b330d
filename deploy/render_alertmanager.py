"""Render the Alertmanager configuration from the environment.

Alertmanager 0.25 has no `bot_token_file`, so the Telegram token has to be inline in the
configuration it reads. The committed files are templates without secrets:
`alertmanager/alertmanager.yml.tmpl` and `alertmanager/templates/telegram.tmpl`; this
module fills them and writes, with mode 0600:

    OUT/alertmanager.yml
    OUT/templates/telegram.tmpl

Environment:
    TELEGRAM_BOT_TOKEN            required
    TELEGRAM_GROUP_CHATID         required, an integer (group ids are negative)
    TELEGRAM_API_URL              default https://api.telegram.org (a fake Bot API in tests)
    GRAFANA_URL                   default http://localhost:3000 (links in messages)
    ALERTMANAGER_GROUP_WAIT       default 30s
    ALERTMANAGER_GROUP_INTERVAL   default 1m
    ALERTMANAGER_REPEAT_INTERVAL  default 4h
    ALERTMANAGER_HEARTBEAT_URL    optional: the AlgopackWatchdog alert is POSTed there (a
                                  Healthchecks ping URL); unset: the watchdog goes nowhere
    ALERTMANAGER_HEARTBEAT_INTERVAL  default 5m, at most 5m: one ping per interval

`scaled_timings(speed)`: the production group_wait, group_interval and repeat_interval
divided by a fast clock's speed, as the environment above (the benchmark's time-scaled copy).

CLI: python -m deploy.render_alertmanager --out DIR
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import string
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_TEMPLATE = REPO_ROOT / "alertmanager" / "alertmanager.yml.tmpl"
TELEGRAM_TEMPLATE = REPO_ROOT / "alertmanager" / "templates" / "telegram.tmpl"
GRAFANA_PLACEHOLDER = "__GRAFANA_URL__"

DEFAULTS = {
    "TELEGRAM_API_URL": "https://api.telegram.org",
    "GRAFANA_URL": "http://localhost:3000",
    "ALERTMANAGER_GROUP_WAIT": "30s",
    "ALERTMANAGER_GROUP_INTERVAL": "1m",
    "ALERTMANAGER_REPEAT_INTERVAL": "4h",
    "ALERTMANAGER_HEARTBEAT_INTERVAL": "5m",
}
# A Healthchecks check is set up with a 5-minute period; a slower ping would page falsely.
MAX_HEARTBEAT_SECONDS = 300
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

# Prometheus/Alertmanager duration syntax, e.g. 30s, 1m30s, 4h.
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# Bot API tokens are "<digits>:<base64url>"; anything else would break the request path.
_TOKEN = re.compile(r"^[A-Za-z0-9:_-]+$")


class RenderError(ValueError):
    """A bad or missing setting; the message names the variable, never a secret value."""


def _url(environ: Mapping[str, str], name: str) -> str:
    value = (environ.get(name) or DEFAULTS[name]).strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s\"'<>\\{}]", value):
        raise RenderError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _duration(environ: Mapping[str, str], name: str) -> str:
    value = (environ.get(name) or DEFAULTS[name]).strip()
    if not _DURATION.match(value):
        raise RenderError(f"{name} must be a duration such as 30s, 5m or 4h, got {value!r}")
    return value


def _seconds(duration: str) -> float:
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(duration))


def scaled_timings(speed: float) -> dict[str, str]:
    """ALERTMANAGER_GROUP_WAIT/_GROUP_INTERVAL/_REPEAT_INTERVAL: the defaults divided by `speed`."""
    from deploy.render_prometheus import scaled_duration

    return {name: scaled_duration(DEFAULTS[name], speed) for name in
            ("ALERTMANAGER_GROUP_WAIT", "ALERTMANAGER_GROUP_INTERVAL", "ALERTMANAGER_REPEAT_INTERVAL")}


def _heartbeat(environ: Mapping[str, str]) -> dict[str, str]:
    """Timing of the watchdog route and the webhook block (empty without a URL).

    The group is checked 5 times per interval and repeats after 4 checks, so exactly one
    ping goes out per interval (see the template's comment)."""
    interval = _duration(environ, "ALERTMANAGER_HEARTBEAT_INTERVAL")
    seconds = _seconds(interval)
    if not 5 <= seconds <= MAX_HEARTBEAT_SECONDS:
        raise RenderError(f"ALERTMANAGER_HEARTBEAT_INTERVAL must be between 5s and 5m, got {interval!r}")
    check = max(1, int(seconds // 5))
    values = {"heartbeat_group_interval": f"{check}s", "heartbeat_repeat_interval": f"{4 * check}s",
              "heartbeat_webhook": ""}
    if (environ.get("ALERTMANAGER_HEARTBEAT_URL") or "").strip():
        try:
            url = _url(environ, "ALERTMANAGER_HEARTBEAT_URL")
        except RenderError:
            # A ping URL carries the check's secret id: never echo it.
            raise RenderError("ALERTMANAGER_HEARTBEAT_URL must be an http(s) URL") from None
        values["heartbeat_webhook"] = ("    webhook_configs:\n"
                                       f"      - url: {json.dumps(url)}\n"
                                       "        send_resolved: false\n"
                                       "        max_alerts: 1")
    return values


def _settings(environ: Mapping[str, str]) -> dict[str, str]:
    errors: list[str] = []
    token = (environ.get("TELEGRAM_BOT_TOKEN") or "").strip()
    if not token:
        errors.append("TELEGRAM_BOT_TOKEN is not set")
    elif not _TOKEN.match(token):
        errors.append("TELEGRAM_BOT_TOKEN has characters a Bot API token cannot have")
    chat_raw = (environ.get("TELEGRAM_GROUP_CHATID") or "").strip()
    chat_id = ""
    if not chat_raw:
        errors.append("TELEGRAM_GROUP_CHATID is not set")
    else:
        try:
            chat_id = str(int(chat_raw))
        except ValueError:
            errors.append(f"TELEGRAM_GROUP_CHATID must be an integer chat id, got {chat_raw!r}")
    values: dict[str, str] = {}
    for key, name, check in (
        ("api_url", "TELEGRAM_API_URL", _url),
        ("grafana_url", "GRAFANA_URL", _url),
        ("group_wait", "ALERTMANAGER_GROUP_WAIT", _duration),
        ("group_interval", "ALERTMANAGER_GROUP_INTERVAL", _duration),
        ("repeat_interval", "ALERTMANAGER_REPEAT_INTERVAL", _duration),
    ):
        try:
            values[key] = check(environ, name)
        except RenderError as exc:
            errors.append(str(exc))
    try:
        values.update(_heartbeat(environ))
    except RenderError as exc:
        errors.append(str(exc))
    if errors:
        raise RenderError("; ".join(errors))
    values.update(bot_token=token, chat_id=chat_id)
    return values


def _write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_config_text(settings: Mapping[str, str]) -> str:
    """alertmanager.yml text; strings are JSON-quoted, which YAML reads as double-quoted."""
    template = string.Template(CONFIG_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        api_url=json.dumps(settings["api_url"]),
        bot_token=json.dumps(settings["bot_token"]),
        chat_id=settings["chat_id"],  # unquoted: Alertmanager 0.25 wants an integer
        group_wait=settings["group_wait"],
        group_interval=settings["group_interval"],
        repeat_interval=settings["repeat_interval"],
        heartbeat_group_interval=settings["heartbeat_group_interval"],
        heartbeat_repeat_interval=settings["heartbeat_repeat_interval"],
        heartbeat_webhook=settings["heartbeat_webhook"],
    )


def render_telegram_template(grafana_url: str) -> str:
    text = TELEGRAM_TEMPLATE.read_text(encoding="utf-8")
    # The base URL lands inside href="..."; it was validated, escape it all the same.
    return text.replace(GRAFANA_PLACEHOLDER, html.escape(grafana_url, quote=True))


def render_alertmanager(out_dir: str | os.PathLike[str], environ: Mapping[str, str]) -> Path:
    """Write OUT/alertmanager.yml and OUT/templates/telegram.tmpl; return the config path."""
    settings = _settings(environ)
    out = Path(out_dir)
    config_path = out / "alertmanager.yml"
    _write_private(out / "templates" / "telegram.tmpl", render_telegram_template(settings["grafana_url"]))
    _write_private(config_path, render_config_text(settings))
    return config_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for alertmanager.yml and templates/")
    args = parser.parse_args(argv)
    try:
        path = render_alertmanager(args.out, os.environ)
    except RenderError as exc:
        print(f"render_alertmanager: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
