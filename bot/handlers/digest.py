"""/digest [дата] [рынок] and the evening post: one message that sums up a trading day, from
Prometheus, followed by /report's PNGs; on the first working day of a month the post adds
last month's /slo.

```
📊 Итоги дня 25.11.2026
HI2: EQ ✅ · FX ❌ · FO ✅
Задержка публикации, с (макс / мин / средн / медиана):
EQ tradestats 41 / 5 / 9.8 / 8
Пропущенных интервалов: 3 (EQ 2 · FO 1) · Алертов за день: 3
```

The day is the Moscow midnight-to-midnight range of the shared clock, clipped to now and
converted to real time (Prometheus stores real time; the exporter may run a fast clock).
What each number is:

- HI2: `max_over_time(algopack_hi2_present[day])` per market: ✅ 1, ❌ 0, — no series.
- publish delay: exactly /report's per-bucket statistics (`bot.report.day_frame` +
  `bot.report.statistics`), so the digest and the attached PNG agree.
- missing intervals: per (market, endpoint) the peak of `algopack_missing_intervals` over
  the day, summed per market. The gauge counts the holes present at a moment, so a hole
  that was filled later still counts once; two holes that never coexisted on one endpoint
  count as one (the gauge carries counts, not identities).
- alerts of the day: distinct firing episodes that began that day. An episode is one
  (alert labels, activeAt) pair — Prometheus writes `ALERTS_FOR_STATE` with the value
  activeAt for every active alert at each evaluation, and a new activation gets a new
  activeAt — counted when `ALERTS{alertstate="firing"}` has a sample of that series at the
  same evaluation during the day and activeAt is on or after the day's start. Pending-only
  activations and alerts carried over from the previous day are not counted; alerts of
  markets outside the digest are left out, alerts without a `market` label always count.

The per-day gauges (hi2, missing) are read from 5 minutes after midnight: the exporter
resets them on the date change and the first scrapes after midnight can still carry the
previous day's values; nothing is published in those minutes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd
from telegram import Update
from telegram.constants import ChatAction

from bot import texts
from bot.context import BotContext, BotState
from bot.handlers.calendar_file import calendar_or_problem
from bot.handlers.common import LIMIT, fit_lines
from bot.handlers.report import (
    Report,
    day_frame,
    day_window,
    fmt_num,
    parse_report_args,
    report_from_frame,
    send_photo,
    statistics,
)
from bot.handlers.slo import first_working_day, previous_month, send_slo
from bot.ops import OpsError, Prometheus
from exporter.calendar import MARKETS, trading_markets
from exporter.clock import MSK, Clock

log = logging.getLogger("bot")

__all__ = ["Digest", "build_digest", "count_alert_starts", "digest_markets", "fit_lines", "render_digest"]

SETTLE = timedelta(minutes=5)


@dataclass(frozen=True)
class Digest:
    day: date
    markets: tuple[str, ...]
    hi2: dict[str, float] = field(default_factory=dict)               # market -> max of hi2_present
    delays: dict[str, pd.DataFrame] = field(default_factory=dict)     # market -> report.statistics
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)     # market -> report.day_frame (PNGs)
    missing: dict[str, float] = field(default_factory=dict)           # market -> summed peaks
    alerts: int | None = None
    error: str | None = None                                          # Prometheus could not answer


# --------------------------------------------------------------------- Prometheus

def _range(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def _at(prom: Prometheus, promql: str, at: float) -> dict[str, float]:
    """Instant query evaluated at `at` (a one-point range query), keyed by `market`."""
    result: dict[str, float] = {}
    for labels, values in prom.query_range(promql, at, at, 1):
        if values:
            result[labels.get("market", "")] = values[-1][1]
    return result


def _raw(prom: Prometheus, selector: str, start: float, end: float) -> list[tuple[dict[str, str], list[float]]]:
    """Raw samples of `selector` in (start, end]: a range selector evaluated at `end`."""
    data = prom.query_at(f"{selector}[{_range(end - start)}]", end)
    if data.get("resultType") != "matrix":
        raise OpsError(f"неожиданный тип {data.get('resultType')}")
    out = []
    for item in data["result"]:
        out.append((dict(item["metric"]), [(float(ts), float(value)) for ts, value in item["values"]]))
    return out


def _series_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "alertstate")))


def count_alert_starts(firing: list[tuple[dict[str, str], list[tuple[float, float]]]],
                       for_state: list[tuple[dict[str, str], list[tuple[float, float]]]],
                       day_start: float, markets: tuple[str, ...] | None = None) -> int:
    """Distinct (alert, activeAt) episodes that fired and became active at or after `day_start`.

    `firing`: raw samples of ALERTS{alertstate="firing"}; `for_state`: raw samples of
    ALERTS_FOR_STATE (value = activeAt, Unix seconds). Both are written at the same
    evaluation timestamps, which is how they are joined. With `markets`, alerts of other
    markets are left out (alerts without a market label always count)."""
    firing_at: dict[tuple, set[float]] = {}
    for labels, values in firing:
        market = labels.get("market")
        if markets is not None and market is not None and market not in markets:
            continue
        firing_at.setdefault(_series_key(labels), set()).update(round(ts, 3) for ts, _ in values)
    episodes: set[tuple[tuple, float]] = set()
    for labels, values in for_state:
        key = _series_key(labels)
        moments = firing_at.get(key, set())
        for ts, active_at in values:
            if round(ts, 3) in moments and active_at >= day_start - 0.001:
                episodes.add((key, active_at))
    return len(episodes)


def build_digest(prom: Prometheus, clock: Clock, markets: list[str], day: date) -> Digest:
    """Query everything for one day; Prometheus failures become `Digest.error`."""
    markets_t = tuple(m for m in MARKETS if m in markets)
    window = day_window(clock, day)
    if window is None:
        return Digest(day, markets_t)
    start, end = window
    settle = clock.to_real(datetime.combine(day, time(0, 0), MSK) + SETTLE).timestamp()
    try:
        frames = {m: day_frame(prom, clock, m, day) for m in markets_t}
        hi2: dict[str, float] = {}
        missing: dict[str, float] = {}
        if end > settle:
            span = _range(end - settle)
            hi2 = _at(prom, f"max by (market) (max_over_time(algopack_hi2_present[{span}]))", end)
            missing = _at(prom, f"sum by (market) (max_over_time(algopack_missing_intervals[{span}]))", end)
        firing = _raw(prom, 'ALERTS{alertstate="firing",alertname!="AlgopackWatchdog"}', start, end)
        for_state = _raw(prom, 'ALERTS_FOR_STATE{alertname!="AlgopackWatchdog"}', start, end)
    except OpsError as exc:
        return Digest(day, markets_t, error=str(exc))
    return Digest(
        day, markets_t,
        hi2={m: v for m, v in hi2.items() if m in markets_t},
        delays={m: statistics(frame) for m, frame in frames.items()},
        frames=frames,
        missing={m: v for m, v in missing.items() if m in markets_t},
        alerts=count_alert_starts(firing, for_state, start, markets_t),
    )


# --------------------------------------------------------------------- text

def _label(market: str) -> str:
    return texts.esc(market.upper())


def _hi2_mark(value: float | None) -> str:
    if value is None or math.isnan(value):
        return texts.DIGEST_HI2_NONE
    return texts.DIGEST_HI2_YES if value >= 1 else texts.DIGEST_HI2_NO


def _count(value: float) -> str:
    return str(int(round(value)))


def render_digest(digest: Digest, limit: int = LIMIT) -> str:
    """The digest as Telegram HTML (values escaped), at most `limit` characters."""
    head = [texts.DIGEST_TITLE.format(day=f"{digest.day:%d.%m.%Y}")]
    if digest.error is not None:
        return "\n".join(head + [texts.DIGEST_PROMETHEUS_DOWN.format(reason=texts.esc(digest.error))])
    if not digest.markets:
        return "\n".join(head + [texts.DIGEST_NO_MARKETS])
    head.append(texts.DIGEST_HI2.format(marks=" · ".join(
        f"{_label(m)} {_hi2_mark(digest.hi2.get(m))}" for m in digest.markets)))
    head.append(texts.DIGEST_DELAY_HEADER)
    body: list[str] = []
    for market in digest.markets:
        stats = digest.delays.get(market)
        if stats is None or stats.empty:
            body.append(texts.DIGEST_DELAY_NONE.format(market=_label(market)))
            continue
        for endpoint, row in stats.iterrows():
            body.append(texts.DIGEST_DELAY_LINE.format(
                market=_label(market), endpoint=texts.esc(endpoint), max=fmt_num(row["max"]),
                min=fmt_num(row["min"]), mean=fmt_num(row["mean"]), median=fmt_num(row["median"])))
    if digest.missing:
        total = _count(sum(digest.missing.values()))
        parts = [f"{_label(m)} {_count(v)}" for m, v in sorted(digest.missing.items(),
                                                               key=lambda kv: MARKETS.index(kv[0]))
                 if round(v) > 0]
        missing = total + (f" ({' · '.join(parts)})" if parts else "")
    else:
        missing = texts.DIGEST_UNKNOWN
    alerts = texts.DIGEST_UNKNOWN if digest.alerts is None else str(digest.alerts)
    tail = [texts.DIGEST_TOTALS.format(missing=missing, alerts=alerts)]
    return fit_lines(head, body, tail, limit)


def digest_markets(requested: list[str] | None, working: list[str], enabled: list[str]) -> list[str]:
    """Markets a digest covers: the ones asked for, else those trading that day, else all enabled."""
    return list(requested or working or enabled)


def png_reports(digest: Digest, clock: Clock) -> list[Report]:
    """/report's `Report`s for every market that has data (drawn from the same frames as the text)."""
    reports = []
    for market in digest.markets:
        frame = digest.frames.get(market)
        if frame is not None and not frame.empty:
            reports.append(report_from_frame(frame, clock, market, digest.day))
    return reports


# --------------------------------------------------------------------- the command and the daily post

async def send_digest(bot: Any, state: BotState, chat_id: int, markets: list[str], day: date) -> None:
    """The digest text, then /report's PNG of every market that had data that day."""
    digest = await asyncio.to_thread(build_digest, state.prometheus, state.clock, markets, day)
    await bot.send_message(chat_id, render_digest(digest))
    if digest.error is not None:
        log.warning("event=digest_failed day=%s error=%r", day, digest.error)
        return
    for report in await asyncio.to_thread(png_reports, digest, state.clock):
        await send_photo(bot, chat_id, report)


async def cmd_digest(update: Update, context: BotContext) -> None:
    """`/digest [date] [market…]`: the evening digest on demand."""
    state = context.state
    args = context.args or []
    parsed = parse_report_args(args, state.markets, state.clock.today())
    if parsed is None:
        await update.effective_message.reply_text(texts.DIGEST_BAD_ARGS)
        return
    markets, day = parsed
    requested = markets if any(arg.strip().lower() in state.markets for arg in args) else None
    cal, problem = await calendar_or_problem(state)
    if cal is None:
        await update.effective_message.reply_text(texts.esc(problem))
        return
    working = trading_markets(cal, day, state.markets)
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.UPLOAD_PHOTO)
    await send_digest(context.bot, state, update.effective_chat.id,
                      digest_markets(requested, working, state.markets), day)


async def daily_report_job(context: BotContext) -> None:
    """Runs every few (real) seconds; once per virtual day after report_time posts the digest
    of the markets trading that day followed by their /report PNGs (nothing on a day off),
    and on the first working day of a month last month's /slo."""
    state = context.state
    try:
        await _daily_report(context.bot, state)
    finally:
        state.daily_checks += 1


async def _daily_report(bot: Any, state: BotState) -> None:
    now = state.clock.now()
    if state.report_time is None or state.report_chat_id is None or now.time() < state.report_time:
        return
    if state.last_report_day == now.date():
        return
    state.last_report_day = now.date()
    state.last_report_check = state.daily_checks
    cal = await asyncio.to_thread(state.calendar)
    markets = trading_markets(cal, now.date(), state.markets)
    log.info("event=daily_report day=%s markets=%s", now.date(), ",".join(markets) or "-")
    if markets:
        await send_digest(bot, state, state.report_chat_id, markets, now.date())
    if first_working_day(cal, now.date(), state.markets):
        year, month = previous_month(now.date())
        log.info("event=monthly_slo month=%04d-%02d", year, month)
        await send_slo(bot, state, state.report_chat_id, year, month)
