"""/status: per market whether a session runs (the calendar) and when the next one starts,
the age and lag of the newest data per dataset (Prometheus) and the active alerts
(Alertmanager). A backend that is down is named; the rest is still shown."""

from __future__ import annotations

import asyncio
from datetime import datetime

from telegram import Update

from bot import texts
from bot.context import BotContext, BotState
from bot.handlers.alerts import alert_line
from bot.handlers.calendar_file import calendar_or_problem
from bot.handlers.common import fmt_duration, fmt_moment, truncate_lines
from bot.ops import Alert, OpsError, Sample
from exporter.calendar import Calendar, market_now
from exporter.clock import MSK

LAG_QUERY = "algopack_lag_seconds"
SYSTIME_QUERY = "algopack_last_systime_timestamp_seconds"


def _series_map(samples: list[Sample]) -> dict[tuple[str, str], float]:
    return {(s.labels.get("market", ""), s.labels.get("endpoint", "")): s.value for s in samples}


def _market_head(cal: Calendar, market: str, now: datetime) -> str:
    state = market_now(cal, market, now)
    if state.session is not None:
        return texts.STATUS_IN_SESSION.format(end=f"{state.session.end:%H:%M}")
    upcoming = state.next_start
    return texts.STATUS_OUT_OF_SESSION + ", " + (
        texts.STATUS_NEXT.format(start=fmt_moment(upcoming, now)) if upcoming else texts.STATUS_NO_NEXT)


def _endpoint_lines(state: BotState, market: str, now: datetime, lag: dict, systime: dict) -> list[str]:
    endpoints = list(state.endpoints[market])
    endpoints += sorted({e for (m, e) in {**lag, **systime} if m == market} - set(endpoints))
    lines = []
    for endpoint in endpoints:
        last = systime.get((market, endpoint))
        if not last:
            age = texts.STATUS_NO_DATA
        else:
            lag_value = lag.get((market, endpoint))
            age = texts.STATUS_AGE.format(ago=fmt_duration(now.timestamp() - last),
                                          at=fmt_moment(datetime.fromtimestamp(last, MSK), now),
                                          lag=fmt_duration(lag_value) if lag_value is not None else "?")
        lines.append(texts.STATUS_ENDPOINT.format(endpoint=texts.esc(endpoint), age=age))
    return lines


def render_status(state: BotState, cal: Calendar, now: datetime, lag: dict | None, systime: dict | None,
                  prom_error: str | None, alerts: list[Alert] | None, am_error: str | None) -> str:
    lines = [texts.STATUS_TITLE.format(now=f"{now:%d.%m.%Y %H:%M}")]
    for market in state.markets:
        lines += ["", f"<b>{texts.MARKET_LABELS[market]}</b> — {_market_head(cal, market, now)}"]
        if prom_error is None:
            lines += _endpoint_lines(state, market, now, lag or {}, systime or {})
    lines.append("")
    if prom_error is not None:
        lines.append(texts.PROMETHEUS_DOWN.format(reason=texts.esc(prom_error)))
    if am_error is not None:
        lines.append(texts.ALERTMANAGER_DOWN.format(reason=texts.esc(am_error)))
    elif alerts:
        lines.append(texts.STATUS_ALERTS.format(n=len(alerts)))
        lines += [alert_line(i, a, state.clock, now) for i, a in enumerate(alerts, 1)]
    else:
        lines.append(texts.STATUS_NO_ALERTS)
    return truncate_lines(lines)


async def cmd_status(update: Update, context: BotContext) -> None:
    state = context.state
    now = state.clock.now()
    cal, problem = await calendar_or_problem(state)
    if cal is None:
        await update.effective_message.reply_text(texts.esc(problem))
        return
    lag = systime = None
    prom_error = am_error = None
    alerts = None
    try:
        lag = _series_map(await asyncio.to_thread(state.prometheus.query, LAG_QUERY))
        systime = _series_map(await asyncio.to_thread(state.prometheus.query, SYSTIME_QUERY))
    except OpsError as exc:
        prom_error = str(exc)
    try:
        alerts = await asyncio.to_thread(state.alertmanager.alerts)
    except OpsError as exc:
        am_error = str(exc)
    text = render_status(state, cal, now, lag, systime, prom_error, alerts, am_error)
    await update.effective_message.reply_text(text, disable_web_page_preview=True)
