"""The bot's dead-man check: is the monitoring itself alive?

Every `deadman.check_interval_seconds` the bot probes what can fail on its own host:
each Prometheus answers, the exporter target is up (`up{job="algopack"}`), each
Alertmanager answers and holds the always-firing `AlgopackWatchdog` (so Prometheus
evaluates rules and delivers alerts), and — when the bot knows it and it is not its own —
Telegram still accepts Alertmanager's token (`getMe`; a revoked token answers 401). A problem that lasts `deadman.threshold_seconds`
posts one message to the group ("⚠️ Мониторинг не работает: …", what and since when);
its recovery posts one "✅" message; nothing in between, except a reminder every
`deadman.reminder_hours` (0: never).

`probe()` is the blocking I/O; `DeadMan.observe()` is the pure state machine (tested
with a manual clock). Times are the bot's clock (virtual in the sandbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from telegram.error import TelegramError
from telegram.ext import CallbackContext

from bot import texts
from bot.ops import Alertmanager, OpsError, Prometheus
from exporter.clock import MSK, Clock

log = logging.getLogger("bot")

EXPORTER_UP_QUERY = 'max(up{job="algopack"})'


@dataclass(frozen=True)
class Problem:
    """Something broken now: `key` identifies it between checks, `text` says what it is."""

    key: str
    text: str       # HTML-escaped Russian, e.g. "Prometheus http://… не отвечает (нет соединения)"
    back: str       # what its recovery means: "Prometheus http://… отвечает"


class TelegramTokenCheck:
    """`getMe` with Alertmanager's token: the reason when Telegram refuses the token
    (401/404), None when it is accepted or Telegram cannot be reached (then nobody can
    post, and the external heartbeat is what tells)."""

    def __init__(self, api_url: str, token: str, timeout: float = 5.0):
        self._url = f"{api_url.rstrip('/')}/bot{token}/getMe"   # never logged: it holds the token
        self._timeout = timeout
        self._session = requests.Session()

    def __call__(self) -> str | None:
        try:
            response = self._session.get(self._url, timeout=self._timeout)
        except requests.RequestException:
            return None
        if response.status_code in (401, 403, 404):
            return f"HTTP {response.status_code}"
        return None


def probe(prometheus: Prometheus, alertmanager: Alertmanager,
          alert_token_check: Callable[[], str | None] | None = None) -> list[Problem]:
    """One round of checks (blocking). A check that depends on a component that does not
    answer is skipped: a dead Prometheus is reported once, not also as a missing watchdog."""
    problems: list[Problem] = []
    exporter_up: bool | None = None
    for index, url in enumerate(prometheus.base_urls):
        try:
            samples = prometheus.only(index).query(EXPORTER_UP_QUERY)
        except OpsError as exc:
            problems.append(Problem(f"prometheus {url}", texts.DEADMAN_PROMETHEUS.format(
                url=texts.esc(url), reason=texts.esc(exc)), texts.DEADMAN_PROMETHEUS_UP.format(url=texts.esc(url))))
            continue
        # Replicas scrape the same exporter: one that sees it up is enough.
        exporter_up = bool(exporter_up) or any(sample.value == 1 for sample in samples)
    if exporter_up is False:
        problems.append(Problem("exporter", texts.DEADMAN_EXPORTER, texts.DEADMAN_EXPORTER_UP))
    for index, url in enumerate(alertmanager.base_urls):
        try:
            watchdog = alertmanager.only(index).watchdog_active()
        except OpsError as exc:
            problems.append(Problem(f"alertmanager {url}", texts.DEADMAN_ALERTMANAGER.format(
                url=texts.esc(url), reason=texts.esc(exc)), texts.DEADMAN_ALERTMANAGER_UP.format(url=texts.esc(url))))
            continue
        if not watchdog and exporter_up is not None:
            problems.append(Problem(f"watchdog {url}", texts.DEADMAN_WATCHDOG.format(url=texts.esc(url)),
                                    texts.DEADMAN_WATCHDOG_UP.format(url=texts.esc(url))))
    refused = alert_token_check() if alert_token_check is not None else None
    if refused:
        problems.append(Problem("alert token", texts.DEADMAN_ALERT_TOKEN.format(reason=texts.esc(refused)),
                                texts.DEADMAN_ALERT_TOKEN_UP))
    return problems


def _duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 1:
        return "меньше минуты"
    if minutes < 60:
        return f"{minutes} мин"
    return f"{minutes // 60} ч {minutes % 60} мин"


@dataclass
class _Tracked:
    problem: Problem
    since: datetime
    reported_at: datetime | None = None     # last ⚠️ message that named it


@dataclass
class DeadMan:
    threshold: timedelta
    reminder: timedelta | None              # None: never remind
    tracked: dict[str, _Tracked] = field(default_factory=dict)

    def observe(self, problems: list[Problem], now: datetime) -> list[str]:
        """Messages to post after a check at `now` that found `problems` (often none)."""
        messages: list[str] = []
        current = {p.key: p for p in problems}
        for key in list(self.tracked):
            if key not in current:
                gone = self.tracked.pop(key)
                if gone.reported_at is not None:
                    messages.append(texts.DEADMAN_UP.format(what=gone.problem.back,
                                                            duration=_duration(now - gone.since)))
        for key, problem in current.items():
            entry = self.tracked.setdefault(key, _Tracked(problem, now))
            entry.problem = problem
        due = [t for t in self.tracked.values() if t.reported_at is None and now - t.since >= self.threshold]
        remind = [t for t in self.tracked.values() if t.reported_at is not None and self.reminder is not None
                  and now - t.reported_at >= self.reminder]
        if due or remind:
            # One message names everything broken long enough, the new problems first.
            shown = due + [t for t in self.tracked.values() if t not in due
                           and t.reported_at is not None]
            title = texts.DEADMAN_DOWN if due else texts.DEADMAN_STILL_DOWN
            lines = [title.format(what=(due or remind)[0].problem.text)]
            lines += [texts.DEADMAN_LINE.format(problem=t.problem.text, since=_since(t.since, now),
                                                duration=_duration(now - t.since)) for t in shown]
            lines.append(texts.DEADMAN_FOOTER)
            messages.append("\n".join(lines))
            for entry in shown:
                entry.reported_at = now
        return messages


def _since(moment: datetime, now: datetime) -> str:
    local = moment.astimezone(MSK)
    return f"{local:%H:%M}" if local.date() == now.astimezone(MSK).date() else f"{local:%d.%m %H:%M}"



@dataclass
class DeadManCheck:
    """What the repeating job needs (its `job.data`): the state machine and where to post."""

    deadman: DeadMan
    chat_id: int
    prometheus: Prometheus
    alertmanager: Alertmanager
    clock: Clock
    alert_token_check: Callable[[], str | None] | None = None


async def deadman_job(context: CallbackContext) -> None:
    """Every check interval: probe Prometheus, the exporter target, Alertmanager and the
    watchdog; post what `DeadMan.observe` decides (usually nothing)."""
    check: DeadManCheck = context.job.data
    problems = await asyncio.to_thread(probe, check.prometheus, check.alertmanager, check.alert_token_check)
    for message in check.deadman.observe(problems, check.clock.now()):
        log.warning("event=deadman_message problems=%s", ",".join(p.key for p in problems) or "-")
        try:
            await context.bot.send_message(check.chat_id, message)
        except TelegramError as exc:
            # A revoked token or no network: nothing to post to; the external heartbeat covers it.
            log.error("event=deadman_send_failed error=%r", str(exc))
