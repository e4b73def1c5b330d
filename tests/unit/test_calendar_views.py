"""The calendar package's public parts for other modules: day views (the bot), model-level
edits handing back the written calendar, the sync job's own collector."""

from __future__ import annotations

import math
from datetime import date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from exporter.calendar import (
    DayOverride,
    day_view,
    market_now,
    month_days,
    parse_calendar_text,
    set_day,
    toggle,
    trading_markets,
)
from exporter.calendar.fileformat import day_node
from exporter.calendar.syncjob import CalendarSyncCollector, CalendarSyncJob
from exporter.clock import ManualClock

from ..calendars import calendar_text

MSK = ZoneInfo("Europe/Moscow")
TEXT = calendar_text("""\
    2026-11-28: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {}}, source: iss, reason: Sat}
    2026-12-31: holiday
""")


def test_day_view_names_what_the_bot_shows():
    cal = parse_calendar_text(TEXT)
    saturday = day_view(cal, date(2026, 11, 28))
    assert (saturday.status, saturday.source, saturday.reason, saturday.special) == ("working", "iss", "Sat", True)
    assert saturday.sessions == {"eq": (("10:00", "19:00"),), "fx": (), "fo": (("09:00", "23:50"),)}
    plain = day_view(cal, date(2026, 11, 25))
    assert (plain.status, plain.source, plain.special, plain.override) == ("working", "default", False, None)
    assert plain.sessions["eq"] == (("10:00", "18:40"), ("19:05", "23:50"))
    assert not day_view(cal, date(2026, 12, 31)).working
    assert [v.day for v in month_days(cal, 2026, 11)] == [date(2026, 11, 28)]
    assert trading_markets(cal, date(2026, 11, 28), ("fx", "eq", "fo")) == ["eq", "fo"]


def test_market_now_gives_the_session_or_the_next_start():
    cal = parse_calendar_text(TEXT)
    inside = market_now(cal, "eq", datetime(2026, 11, 25, 12, 0, tzinfo=MSK))
    assert inside.session is not None and inside.session.end.hour == 18 and inside.next_start is None
    outside = market_now(cal, "fx", datetime(2026, 11, 27, 20, 0, tzinfo=MSK))
    assert outside.session is None and outside.next_start == datetime(2026, 11, 30, 7, 0, tzinfo=MSK)


def test_toggle_hands_back_the_calendar_as_written(tmp_path):
    path = tmp_path / "calendar.yml"
    path.write_text(TEXT, encoding="utf-8")
    done = toggle(str(path), date(2026, 11, 28), "ops")
    assert (done.old_status, done.new_status) == ("working", "holiday")
    assert done.calendar.day_status(date(2026, 11, 28)) == "holiday"
    assert done.calendar.override(date(2026, 11, 28)).markets is not None   # kept for the way back
    set_day(str(path), date(2026, 12, 1), "holiday", "ops", reason="test")
    assert parse_calendar_text(path.read_text()).override(date(2026, 12, 1)) == DayOverride("holiday", reason="test")


def test_day_node_is_plain_when_only_the_status_is_said():
    assert day_node(DayOverride("holiday")) == "holiday"
    assert dict(day_node(DayOverride("holiday", source="iss"))) == {"status": "holiday", "source": "iss"}


def _values(collector) -> dict[str, float]:
    return {family.name: family.samples[0].value for family in collector.collect()}


def test_sync_collector_series_are_always_there():
    clock = ManualClock(datetime(2026, 11, 20, 5, 0, tzinfo=MSK))
    off = _values(CalendarSyncCollector(None, clock))
    assert list(off) == ["algopack_calendar_sync_success_timestamp_seconds",
                         "algopack_calendar_sync_last_run_successful", "algopack_calendar_sync_age_seconds"]
    assert all(math.isnan(v) for v in off.values())
    settings = SimpleNamespace(time="06:17", days_ahead=45, retry_minutes=60)
    job = CalendarSyncJob(settings, "calendar.yml", client=None, clock=clock)
    clock.advance(600)
    fresh = _values(CalendarSyncCollector(job, clock))
    assert math.isnan(fresh["algopack_calendar_sync_success_timestamp_seconds"])
    assert math.isnan(fresh["algopack_calendar_sync_last_run_successful"])
    assert fresh["algopack_calendar_sync_age_seconds"] == 600.0   # since start while none succeeded
    job.last_success_ts, job.last_run_successful = clock.now().timestamp() - 30, True
    done = _values(CalendarSyncCollector(job, clock))
    assert done["algopack_calendar_sync_last_run_successful"] == 1.0
    assert done["algopack_calendar_sync_age_seconds"] == 30.0
