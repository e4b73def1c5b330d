"""Pure parts of the bot: callback data, calendar keyboard, access policy, renderers."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from bot import callbacks, texts
from bot.access import AccessPolicy
from bot.context import BotState
from bot.handlers import calendar as calendar_ui
from bot.handlers.alerts import render_alerts, silence_end
from bot.handlers.report import caption, parse_report_args, statistics
from bot.handlers.status import render_status
from bot.ops import Alert, Alertmanager, Prometheus
from exporter.calendar import parse_calendar_text
from exporter.clock import MSK, ManualClock

from ..calendars import calendar_text

TODAY = date(2026, 11, 25)  # a Wednesday

CALENDAR = calendar_text("""
  2026-11-04: holiday
  2026-11-28: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {}}, source: iss,
               reason: "weekend session"}
  2026-12-31: {status: holiday, source: iss}
""")


@pytest.fixture()
def cal():
    return parse_calendar_text(CALENDAR)


# ------------------------------------------------------------------ callback data


@pytest.mark.parametrize("data, kind", [
    (callbacks.years(), "years"),
    (callbacks.months(2026), "months"),
    (callbacks.month(2027, 2), "month"),
    (callbacks.toggle(date(2028, 12, 31)), "toggle"),
    (callbacks.noop(), "noop"),
    (callbacks.alerts_refresh(), "alerts"),
    (callbacks.silence("0123456789abcdef", "eod"), "silence"),
    (callbacks.silences_refresh(), "silences"),
    (callbacks.expire("12345678-90ab-cdef-1234-567890abcdef"), "expire"),
])
def test_every_built_button_parses_back_and_fits_64_bytes(data, kind):
    action = callbacks.parse(data, TODAY)
    assert action is not None and action.kind == kind
    assert len(data.encode()) <= callbacks.MAX_BYTES


def test_toggle_roundtrip_carries_the_date():
    action = callbacks.parse("cal:v1:t:2026-02-28", TODAY)
    assert action.day == date(2026, 2, 28) and (action.year, action.month) == (2026, 2)


@pytest.mark.parametrize("data", [
    None, "", "cal", "cal:v1", "cal:v2:t:2026-11-25", "cal:v1:t:2026-02-30", "cal:v1:t:2026-13-01",
    "cal:v1:t:2026-11-5", "cal:v1:t:2024-12-31", "cal:v1:t:2029-01-01", "cal:v1:y:2029", "cal:v1:y:2024",
    "cal:v1:m:2026-00", "cal:v1:m:2026-13", "cal:v1:x:2026-11-25", "cal:v1:t:2026-11-25:extra",
    "cal:v1:t:２０２６-11-25", "al:v1:s:0123456789ABCDEF:1h", "al:v1:s:0123456789abcdef:2h",
    "al:v1:s:0123456789abcde:1h", "si:v1:x:../../silences", "si:v1:x:12345678-90ab-cdef-1234-567890abcdeg",
    "zz:v1:r", "cal:v1:t:" + "1" * 60,
])
def test_forged_or_stale_data_is_rejected(data):
    assert callbacks.parse(data, TODAY) is None


def test_year_window_follows_today():
    assert list(callbacks.year_range(TODAY)) == [2025, 2026, 2027, 2028]
    assert callbacks.parse("cal:v1:y:2029", date(2027, 1, 1)) is not None


def test_builders_refuse_bad_input():
    with pytest.raises(ValueError):
        callbacks.silence("not-a-fingerprint", "1h")
    with pytest.raises(ValueError):
        callbacks.expire("x")


# ------------------------------------------------------------------ calendar keyboard


def test_month_grid_is_monday_first_with_marks(cal):
    text, markup = calendar_ui.render_month(cal, 2026, 11, TODAY)
    rows = [[(b.text, b.callback_data) for b in row] for row in markup.inline_keyboard]
    assert [label for label, _ in rows[0]] == list(texts.WEEKDAYS)
    # 1 Nov 2026 is a Sunday: six blanks, then day 1 under "Вс"
    assert [label for label, _ in rows[1]] == [" "] * 6 + ["🔴1"]   # weekend: holiday by default
    cells = {data: label for row in rows[1:-1] for label, data in row if data.startswith("cal:v1:t:")}
    assert cells[callbacks.toggle(date(2026, 11, 4))] == "🔴4"       # manual holiday
    assert cells[callbacks.toggle(date(2026, 11, 25))] == "[25]"     # today, working
    assert cells[callbacks.toggle(date(2026, 11, 28))] == "🟡28"     # weekend session
    assert cells[callbacks.toggle(date(2026, 11, 29))] == "🔴29"
    assert len(cells) == 30
    nav = rows[-1]
    assert nav == [("« окт", callbacks.month(2026, 10)), ("⬆ 2026", callbacks.months(2026)),
                   ("дек »", callbacks.month(2026, 12))]
    assert "04.11.2026 (Ср) — выходной · вручную" in text
    assert "28.11.2026 (Сб) — рабочий (торгуют: EQ 10:00–19:00; FO 09:00–23:50) · биржа · weekend session" in text


def test_month_grid_has_no_navigation_outside_the_year_window(cal):
    _, markup = calendar_ui.render_month(cal, 2028, 12, TODAY)
    nav = [b.callback_data for b in markup.inline_keyboard[-1]]
    assert callbacks.month(2029, 1) not in nav and callbacks.month(2028, 11) in nav
    _, markup = calendar_ui.render_month(cal, 2025, 1, TODAY)
    assert callbacks.month(2024, 12) not in [b.callback_data for b in markup.inline_keyboard[-1]]


def test_years_and_months_menus(cal):
    _, markup = calendar_ui.render_years(TODAY)
    assert [b.callback_data for b in markup.inline_keyboard[0]] == [callbacks.months(y) for y in range(2025, 2029)]
    _, markup = calendar_ui.render_months(2026, TODAY)
    labels = [b.text for row in markup.inline_keyboard[:4] for b in row]
    assert labels[10] == "[Ноябрь]" and labels[0] == "Январь"
    assert markup.inline_keyboard[-1][0].callback_data == callbacks.years()


def test_default_day_line_says_where_status_comes_from(cal):
    assert calendar_ui.day_line(cal, date(2026, 11, 26)) == "26.11.2026 (Чт) — рабочий · по умолчанию"
    assert calendar_ui.day_line(cal, date(2026, 12, 31)) == "31.12.2026 (Чт) — выходной · биржа"


# ------------------------------------------------------------------ access


def test_access_policy():
    policy = AccessPolicy(frozenset({-100}), frozenset({42}), frozenset())
    assert policy.allows(-100, 1)          # any member of the allowed group
    assert policy.allows(42, 42)           # allowed user, private chat
    assert policy.allows(-555, 42)         # allowed user anywhere
    assert not policy.allows(-555, 7)
    assert not policy.allows(None, 42) and not policy.allows(-100, None)
    assert policy.may_edit_calendar(7)     # no admins configured: every allowed user
    admins = AccessPolicy(frozenset({-100}), frozenset(), frozenset({1}))
    assert admins.may_edit_calendar(1) and not admins.may_edit_calendar(2)


# ------------------------------------------------------------------ status / alerts / report


def _state(clock: ManualClock) -> BotState:
    return BotState(calendar_path=None, clock=clock, policy=AccessPolicy(),  # type: ignore[arg-type]
                    prometheus=Prometheus("http://127.0.0.1:1"), alertmanager=Alertmanager("http://127.0.0.1:1"),
                    endpoints={"eq": ("tradestats", "hi2"), "fx": ("tradestats",)})


def test_render_status_in_and_out_of_session(cal):
    clock = ManualClock(datetime(2026, 11, 25, 8, 0, tzinfo=MSK))
    now = clock.now()
    systime = {("eq", "tradestats"): (now - timedelta(minutes=14, seconds=3)).timestamp(), ("eq", "hi2"): 0.0}
    lag = {("eq", "tradestats"): 843.0}
    alert = Alert("0123456789abcdef", {"alertname": "AlgopackDataDelayed", "market": "eq",
                                       "endpoint": "tradestats", "severity": "critical"},
                  {"summary": "a < b"}, now - timedelta(minutes=4), "active")
    text = render_status(_state(clock), cal, now, lag, systime, None, [alert], None)
    assert "<b>EQ | Акции</b> — ⚪ вне сессии, следующая 10:00" in text
    assert "<b>FX | Валюта</b> — 🟢 идёт сессия до 19:00" in text
    assert "  tradestats: данные 14 мин назад (07:45), отставание 14 мин" in text
    assert "  hi2: нет данных" in text
    assert "<b>AlgopackDataDelayed</b> · eq tradestats — с 07:56" in text and "a &lt; b" in text
    assert "FO" not in text                       # market disabled in this state


def test_render_status_when_backends_are_down(cal):
    clock = ManualClock(datetime(2026, 11, 28, 23, 55, tzinfo=MSK))   # Saturday night
    text = render_status(_state(clock), cal, clock.now(), None, None, "нет соединения", None, "таймаут")
    assert "⚠️ Prometheus недоступен (нет соединения)" in text
    assert "⚠️ Alertmanager недоступен (таймаут)" in text
    assert "следующая 30.11 10:00" in text and "tradestats" not in text


def test_render_alerts_buttons_reference_fingerprints():
    clock = ManualClock(datetime(2026, 11, 25, 12, 0, tzinfo=MSK))
    alerts = [Alert(f"{n:016x}", {"alertname": f"A{n}"}, {}, None, "active") for n in range(12)]
    text, markup = render_alerts(alerts, clock)
    data = [b.callback_data for row in markup.inline_keyboard for b in row]
    assert callbacks.silence(f"{0:016x}", "1h") in data and callbacks.silence(f"{9:016x}", "eod") in data
    assert callbacks.silence(f"{10:016x}", "1h") not in data       # only the first 10 get buttons
    assert "12." in text
    empty, markup = render_alerts([], clock)
    assert empty == texts.ALERTS_NONE


def test_silence_end():
    clock = ManualClock(datetime(2026, 11, 25, 22, 30, tzinfo=MSK))
    assert silence_end(clock, "1h") == datetime(2026, 11, 25, 23, 30, tzinfo=MSK)
    assert silence_end(clock, "eod") == datetime(2026, 11, 26, 0, 0, tzinfo=MSK)


def test_parse_report_args():
    markets = ["eq", "fx", "fo"]
    assert parse_report_args([], markets, TODAY) == (markets, TODAY)
    assert parse_report_args(["FO", "2026-11-20"], markets, TODAY) == (["fo"], date(2026, 11, 20))
    assert parse_report_args(["20.11.2026", "eq"], markets, TODAY) == (["eq"], date(2026, 11, 20))
    assert parse_report_args(["2026-11-26"], markets, TODAY) is None       # future
    assert parse_report_args(["xx"], markets, TODAY) is None
    assert parse_report_args(["2026-02-30"], markets, TODAY) is None


def test_report_statistics_and_caption():
    frame = pd.DataFrame({"endpoint": ["tradestats"] * 3 + ["obstats"], "delay": [10.0, 20.0, 60.0, 5.0]})
    stats = statistics(frame)
    assert stats.loc["tradestats"].to_dict() == {"max": 60.0, "min": 10.0, "mean": 30.0, "median": 20.0}
    text = caption("eq", TODAY, stats)
    assert text.startswith("📊 Задержка публикации · EQ | Акции · 25.11.2026")
    assert "tradestats: 60 / 10 / 30 / 20" in text and "obstats: 5 / 5 / 5 / 5" in text
    assert len(text) <= 1024


