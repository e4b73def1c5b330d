"""/report [рынок] [дата]: the old daily plot on demand.

Publish delay (`algopack_publish_delay_seconds`: newest row's SYSTIME − its tradetime) per
endpoint of one market over one Moscow day, from Prometheus `query_range`, drawn as a PNG
(matplotlib, Agg backend) plus a max/min/mean/median table (pandas) for the caption.

The gauge is sampled at every step, so the same bucket shows up many times; samples are
joined with `algopack_last_tradetime_timestamp_seconds` and reduced to one delay per
bucket (its first sighting), which is what the older tool's per-row statistics measured.
Prometheus stores real time while the exporter may run a fast virtual clock: the window is
converted with the clock, and the x axis shows virtual Moscow time.
"""

from __future__ import annotations

import asyncio
import io
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd
from telegram import Update
from telegram.constants import ChatAction

from bot import texts
from bot.context import BotContext, BotState
from bot.ops import OpsError, Prometheus
from exporter.clock import MSK, Clock

MAX_POINTS = 1500


@dataclass(frozen=True)
class Report:
    market: str
    day: date
    png: bytes | None          # None: no data
    stats: pd.DataFrame        # index endpoint; columns max, min, mean, median
    caption: str               # HTML


def day_window(clock: Clock, day: date) -> tuple[float, float] | None:
    """Real Unix start/end of the virtual Moscow day, clipped to now; None if in the future."""
    start = datetime.combine(day, time(0, 0), MSK)
    end = min(start + timedelta(days=1), clock.now())
    if end <= start:
        return None
    return clock.to_real(start).timestamp(), clock.to_real(end).timestamp()


def delay_frame(prom: Prometheus, market: str, start: float, end: float) -> pd.DataFrame:
    """One row per (endpoint, bucket): columns endpoint, at (virtual time), delay."""
    step = float(max(1, math.ceil((end - start) / MAX_POINTS)))
    # Align the grid on `end`, so the newest samples are always evaluated.
    start = end - math.ceil((end - start) / step) * step
    selector = f'{{market="{market}"}}'
    delays = prom.query_range(f"algopack_publish_delay_seconds{selector}", start, end, step)
    buckets = {labels.get("endpoint", "?"): dict(values) for labels, values in
               prom.query_range(f"algopack_last_tradetime_timestamp_seconds{selector}", start, end, step)}
    rows = []
    for labels, values in delays:
        endpoint = labels.get("endpoint", "?")
        tradetimes = buckets.get(endpoint, {})
        for ts, delay in values:
            rows.append({"endpoint": endpoint, "real_ts": ts, "delay": delay, "bucket": tradetimes.get(ts, ts)})
    frame = pd.DataFrame(rows, columns=["endpoint", "real_ts", "delay", "bucket"])
    if frame.empty:
        return frame
    frame = frame.sort_values("real_ts").drop_duplicates(["endpoint", "bucket"], keep="first")
    return frame


def statistics(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=["max", "min", "mean", "median"])
    return frame.groupby("endpoint")["delay"].agg(["max", "min", "mean", "median"]).sort_index()


def fmt_num(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def caption(market: str, day: date, stats: pd.DataFrame) -> str:
    lines = [texts.REPORT_CAPTION_TITLE.format(market=texts.MARKET_LABELS.get(market, market),
                                               day=f"{day:%d.%m.%Y}"), texts.REPORT_TABLE_HEADER]
    for endpoint, row in stats.iterrows():
        lines.append(texts.REPORT_TABLE_LINE.format(endpoint=texts.esc(endpoint), max=fmt_num(row["max"]),
                                                    min=fmt_num(row["min"]), mean=fmt_num(row["mean"]),
                                                    median=fmt_num(row["median"])))
    head, table = lines[0], "\n".join(lines[1:])
    return f"{head}\n<pre>{table}</pre>"


def plot(frame: pd.DataFrame, clock: Clock, market: str, day: date) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        for endpoint, group in frame.groupby("endpoint"):
            moments = [clock.to_virtual(datetime.fromtimestamp(ts, MSK)) for ts in group["real_ts"]]
            axes.plot(moments, group["delay"].to_numpy(), marker=".", linewidth=1, label=str(endpoint))
        axes.set_title(texts.REPORT_PLOT_TITLE.format(market=texts.MARKET_LABELS.get(market, market),
                                                      day=f"{day:%d.%m.%Y}"))
        axes.set_ylabel(texts.REPORT_PLOT_Y)
        axes.set_xlabel(texts.REPORT_PLOT_X)
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=MSK))
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def day_frame(prom: Prometheus, clock: Clock, market: str, day: date) -> pd.DataFrame:
    """Per-bucket publish delays of one market over the Moscow day (empty: none, or a future day).
    Raises bot.ops.OpsError when Prometheus cannot answer."""
    window = day_window(clock, day)
    return delay_frame(prom, market, *window) if window else pd.DataFrame()


def report_from_frame(frame: pd.DataFrame, clock: Clock, market: str, day: date) -> Report:
    """Statistics, caption and PNG from a `day_frame` (shared by /report and the digest)."""
    stats = statistics(frame)
    if frame.empty:
        return Report(market, day, None, stats, texts.REPORT_NO_DATA.format(
            market=texts.MARKET_LABELS.get(market, market), day=f"{day:%d.%m.%Y}"))
    return Report(market, day, plot(frame, clock, market, day), stats, caption(market, day, stats))


def build_report(prom: Prometheus, clock: Clock, market: str, day: date) -> Report:
    """Query, reduce, draw. Raises bot.ops.OpsError when Prometheus cannot answer."""
    return report_from_frame(day_frame(prom, clock, market, day), clock, market, day)


# --------------------------------------------------------------------- the command

def parse_report_args(args: list[str], markets: list[str], today: date) -> tuple[list[str], date] | None:
    """`[market…] [YYYY-MM-DD | DD.MM.YYYY]` → (markets, day); None when not understood or in the future."""
    chosen: list[str] = []
    day = today
    for arg in args:
        word = arg.strip().lower()
        if word in markets:
            chosen.append(word)
            continue
        parsed = None
        for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
            try:
                parsed = datetime.strptime(word, fmt).date()
                break
            except ValueError:
                continue
        if parsed is None or parsed > today or parsed.year < today.year - 1:
            return None
        day = parsed
    return (chosen or list(markets)), day


async def send_photo(bot: Any, chat_id: int, report: Report) -> None:
    await bot.send_photo(chat_id, photo=report.png, caption=report.caption,
                         filename=f"report-{report.market}-{report.day.isoformat()}.png")


async def send_reports(bot: Any, state: BotState, chat_id: int, markets: list[str], day: date) -> None:
    for market in markets:
        try:
            report = await asyncio.to_thread(build_report, state.prometheus, state.clock, market, day)
        except OpsError as exc:
            await bot.send_message(chat_id, texts.PROMETHEUS_DOWN.format(reason=texts.esc(str(exc))))
            return
        if report.png is None:
            await bot.send_message(chat_id, report.caption)
        else:
            await send_photo(bot, chat_id, report)


async def cmd_report(update: Update, context: BotContext) -> None:
    state = context.state
    parsed = parse_report_args(context.args or [], state.markets, state.clock.today())
    if parsed is None:
        await update.effective_message.reply_text(texts.REPORT_BAD_ARGS)
        return
    markets, day = parsed
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.UPLOAD_PHOTO)
    await send_reports(context.bot, state, update.effective_chat.id, markets, day)
