"""/slo [YYYY-MM]: the month's feed SLO per market and endpoint, from Prometheus, in one message.

```
📈 SLO за ноябрь 2026 (цель 99.5 % вовремя)
EQ tradestats: 99.38 % · опозд. 13 · пропущ. 3 · p50/p95/p99 9/31/118 с · бюджет −24 %
```

Every number comes from the exporter's per-bucket counters over the Moscow month (of the shared
clock, clipped to now, converted to real time: Prometheus stores real time):
- on time, late, missing: `increase(algopack_buckets_total[month])` per outcome (rounded: the
  counters count whole buckets; increase() extrapolates by a fraction at the window's edges);
- p50/p95/p99: `histogram_quantile` over `algopack_bucket_publish_delay_seconds` of the month
  (interpolated within the histogram's bands 5 … 1800 s);
- budget left: 1 − (late + missing) / ((1 − target) × all judged buckets), the target being
  `algopack_slo_target_ratio` (99.5 % by default). ≤ 0: the month broke the SLO.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from telegram import Update

from bot import texts
from bot.context import BotContext, BotState
from bot.handlers.common import LIMIT, fit_lines
from bot.ops import OpsError, Prometheus
from exporter import datasets
from exporter.calendar import MARKETS, Calendar, trading_markets
from exporter.clock import MSK, Clock

log = logging.getLogger("bot")

QUANTILES = (0.5, 0.95, 0.99)
Pair = tuple[str, str]
ENDPOINT_ORDER = datasets.names()  # rows in the registry's order


@dataclass(frozen=True)
class PairSlo:
    on_time: int
    late: int
    missing: int
    target: float | None
    quantiles: tuple[float | None, ...]

    @property
    def total(self) -> int:
        return self.on_time + self.late + self.missing

    @property
    def ratio(self) -> float | None:
        return self.on_time / self.total if self.total else None

    @property
    def budget_left(self) -> float | None:
        if not self.total or self.target is None or self.target >= 1:
            return None
        return round(1 - (self.late + self.missing) / ((1 - self.target) * self.total), 9)


@dataclass(frozen=True)
class SloReport:
    year: int
    month: int
    pairs: dict[Pair, PairSlo] = field(default_factory=dict)
    error: str | None = None
    future: bool = False


def parse_month(args: list[str], today: date) -> tuple[int, int] | None:
    """`[]` → the current month; `["2026-11"]` → (2026, 11); anything else → None."""
    if not args:
        return today.year, today.month
    if len(args) != 1:
        return None
    match = re.fullmatch(r"(\d{4})-(\d{1,2})", args[0].strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        return None
    return int(match.group(1)), int(match.group(2))


def previous_month(day: date) -> tuple[int, int]:
    return (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)


def first_working_day(calendar: Calendar, day: date, markets: list[str]) -> bool:
    """`day` is a working day of some market and no earlier day of its month is."""
    def working(d: date) -> bool:
        return bool(trading_markets(calendar, d, markets))
    return working(day) and not any(working(day.replace(day=n)) for n in range(1, day.day))


def month_window(clock: Clock, year: int, month: int) -> tuple[float, float] | None:
    """Real Unix start/end of the virtual Moscow month, clipped to now; None if in the future."""
    start = datetime.combine(date(year, month, 1), time(0, 0), MSK)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    end = min(datetime.combine(following, time(0, 0), MSK), clock.now())
    if end <= start:
        return None
    return clock.to_real(start).timestamp(), clock.to_real(end).timestamp()


def _vector(prom: Prometheus, promql: str, at: float) -> dict[tuple, float]:
    data = prom.query_at(promql, at)
    if data.get("resultType") != "vector":
        raise OpsError(f"неожиданный тип {data.get('resultType')}")
    out = {}
    for item in data["result"]:
        labels = item["metric"]
        out[(labels.get("market", ""), labels.get("endpoint", ""), labels.get("outcome", ""))] = \
            float(item["value"][1])
    return out


def build_slo(prom: Prometheus, clock: Clock, year: int, month: int) -> SloReport:
    window = month_window(clock, year, month)
    if window is None:
        return SloReport(year, month, future=True)
    start, end = window
    span = f"{max(1, math.ceil(end - start))}s"
    try:
        counts = _vector(prom, f"sum by (market, endpoint, outcome) (increase(algopack_buckets_total[{span}]))", end)
        targets = _vector(prom, f"max by (market, endpoint) (max_over_time(algopack_slo_target_ratio[{span}]))", end)
        quantiles = [_vector(prom, f"histogram_quantile({q}, sum by (market, endpoint, le) "
                                   f"(increase(algopack_bucket_publish_delay_seconds_bucket[{span}])))", end)
                     for q in QUANTILES]
    except OpsError as exc:
        return SloReport(year, month, error=str(exc))
    pairs: dict[Pair, PairSlo] = {}
    for market, endpoint in sorted({(m, e) for m, e, _ in counts}):
        def count(outcome: str, m: str = market, e: str = endpoint) -> int:
            value = counts.get((m, e, outcome), 0.0)
            return 0 if math.isnan(value) else int(round(value))
        qs = tuple(None if (v := q.get((market, endpoint, ""))) is None or math.isnan(v) else v for q in quantiles)
        slo = PairSlo(count("on_time"), count("late"), count("missing"), targets.get((market, endpoint, "")), qs)
        if slo.total:
            pairs[(market, endpoint)] = slo
    return SloReport(year, month, pairs=pairs)


def _pct(value: float) -> str:
    text = f"{value * 100:.2f}".rstrip("0").rstrip(".")
    return text.replace("-", "−")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def _order(pair: Pair) -> tuple[int, int]:
    market, endpoint = pair
    return (MARKETS.index(market) if market in MARKETS else 9,
            ENDPOINT_ORDER.index(endpoint) if endpoint in ENDPOINT_ORDER else 9)


def render_slo(report: SloReport, limit: int = LIMIT) -> str:
    month = f"{texts.MONTHS_IN[report.month - 1]} {report.year}"
    targets = {s.target for s in report.pairs.values() if s.target is not None}
    head = [texts.SLO_TITLE.format(month=month)
            + (texts.SLO_TARGET.format(target=_pct(targets.pop())) if len(targets) == 1 else "")]
    if report.future:
        return "\n".join(head + [texts.SLO_FUTURE])
    if report.error is not None:
        return "\n".join(head + [texts.SLO_PROMETHEUS_DOWN.format(reason=texts.esc(report.error))])
    if not report.pairs:
        return "\n".join(head + [texts.SLO_NO_DATA])
    head.append(texts.SLO_HEADER)
    body = []
    for pair in sorted(report.pairs, key=_order):
        slo = report.pairs[pair]
        left = slo.budget_left
        body.append(texts.SLO_LINE.format(
            market=texts.esc(pair[0].upper()), endpoint=texts.esc(pair[1]),
            ratio=_pct(slo.ratio) if slo.ratio is not None else "—", late=slo.late, missing=slo.missing,
            p50=_seconds(slo.quantiles[0]), p95=_seconds(slo.quantiles[1]), p99=_seconds(slo.quantiles[2]),
            budget=(texts.SLO_BUDGET_GONE if left <= 0 else _pct(left) + " %") if left is not None else "—",
            mark="" if left is None or left > 0 else " ❗"))
    return fit_lines(head, body, [texts.SLO_FOOTER], limit)


# --------------------------------------------------------------------- the command and the monthly post

async def send_slo(bot: Any, state: BotState, chat_id: int, year: int, month: int) -> None:
    report = await asyncio.to_thread(build_slo, state.prometheus, state.clock, year, month)
    if report.error is not None:
        log.warning("event=slo_failed month=%04d-%02d error=%r", year, month, report.error)
    await bot.send_message(chat_id, render_slo(report))


async def cmd_slo(update: Update, context: BotContext) -> None:
    """`/slo [YYYY-MM]`: the month's feed SLO (the current month so far by default)."""
    state = context.state
    parsed = parse_month(context.args or [], state.clock.today())
    if parsed is None:
        await update.effective_message.reply_text(texts.SLO_BAD_ARGS)
        return
    await send_slo(context.bot, state, update.effective_chat.id, *parsed)
