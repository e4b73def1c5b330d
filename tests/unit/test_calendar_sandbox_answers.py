"""sandbox/isscalendar.py answers the calendar routes as iss-api.md §11 says real ISS does."""

from __future__ import annotations

from datetime import date

import pytest

from exporter.calendar import parse_calendar_text
from sandbox.isscalendar import calendar_answer
from tests.calendars import calendar_text

CAL = parse_calendar_text(calendar_text("""\
2026-11-28: {status: working, source: iss, markets: {eq: {sessions: [["11:00", "15:30"]]}, fo: {sessions: [["11:00", "15:30"]]}}}
"""))
TODAY = date(2026, 11, 25)
RANGE = {"from": "2026-11-27", "till": "2026-11-30"}   # Fri, Sat (session), Sun, Mon


def answer(path: str, **query) -> dict:
    return calendar_answer(CAL, path, {**RANGE, **query}, TODAY)


@pytest.mark.parametrize("iss", ["stock", "currency"])
def test_stock_and_currency_session_schedule_columns(iss):
    body = answer(f"/iss/calendars/{iss}/session.json")
    assert set(body) >= {"session_schedule", "session_schedule.types"}
    assert body["session_schedule"]["columns"] == ["tradedate", "tradingsession", "boardid", "secid", "type",
                                                   "time_from", "time_till", "updatetime"]
    rows = [dict(zip(body["session_schedule"]["columns"], r, strict=True)) for r in body["session_schedule"]["data"]]
    board = {"stock": "TQBR", "currency": "CETS"}[iss]
    assert {r["boardid"] for r in rows} == {board, {"stock": "SMAL", "currency": "CNGD"}[iss]}
    assert {"opening_auction", "main", "closing_auction"} <= {r["type"] for r in rows}
    assert all(len(r["time_from"]) == 8 and r["time_from"].count(":") == 2 for r in rows)   # HH:MM:SS
    if iss == "stock":
        sat = [r for r in rows if r["tradedate"] == "2026-11-28" and r["boardid"] == "TQBR"]
        assert [(r["type"], r["time_from"], r["time_till"]) for r in sat] == [
            ("opening_auction", "10:50:00", "11:00:00"), ("main", "11:00:00", "15:30:00"),
            ("closing_auction", "15:30:00", "15:40:00")]


def test_futures_session_schedule_datetimes_and_next_working_day():
    body = answer("/iss/calendars/futures/session.json")
    assert body["session_schedule"]["columns"] == ["trade_session_date", "boardid", "secid", "type", "time_from",
                                                   "time_till", "updatetime"]
    rows = [dict(zip(body["session_schedule"]["columns"], r, strict=True)) for r in body["session_schedule"]["data"]]
    sat = [r for r in rows if r["time_from"].startswith("2026-11-28") and r["boardid"] == "RFUD"]
    assert {r["trade_session_date"] for r in sat} == {"2026-11-30"}        # the next working day
    assert ("main", "2026-11-28 11:00:00", "2026-11-28 15:30:00") in [(r["type"], r["time_from"], r["time_till"])
                                                                    for r in sat]
    fri = [r for r in rows if r["time_from"].startswith("2026-11-27") and r["boardid"] == "RFUD"]
    assert {r["trade_session_date"] for r in fri} == {"2026-11-27"}
    assert ("clearing", "2026-11-27 23:50:00", "2026-11-28 00:30:00") in [(r["type"], r["time_from"], r["time_till"])
                                                                        for r in fri]
    assert any(r["boardid"] == "ROPD" for r in rows)


def test_off_days_columns_of_section_11():
    body = answer("/iss/calendars.json", show_all_days="1")
    columns = body["off_days"]["columns"]
    assert columns == ["tradedate", "stock_workday", "stock_trade_session_date", "stock_reason",
                       "futures_workday", "futures_trade_session_date", "futures_reason",
                       "currency_workday", "currency_trade_session_date", "currency_reason"]
    sat = dict(zip(columns, body["off_days"]["data"][1], strict=True))
    assert (sat["stock_workday"], sat["stock_trade_session_date"], sat["stock_reason"]) == (1, "2026-11-30", "W")
    assert (sat["currency_workday"], sat["currency_reason"]) == (0, "W")
    body = answer("/iss/calendars/futures.json")
    assert body["off_days"]["columns"] == ["tradedate", "is_traded", "trade_session_date", "reason", "updatetime"]
