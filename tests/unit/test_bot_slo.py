"""bot/handlers/slo.py on plain data: month arguments, the first working day, budget and the message."""

from __future__ import annotations

from datetime import date

from bot.handlers import slo
from exporter.calendar import load_calendar
from tests.calendars import calendar_text


def test_parse_month():
    today = date(2026, 12, 2)
    assert slo.parse_month([], today) == (2026, 12)
    assert slo.parse_month(["2026-11"], today) == (2026, 11)
    assert slo.parse_month(["2026-13"], today) is None
    assert slo.parse_month(["ноябрь"], today) is None
    assert slo.previous_month(date(2027, 1, 11)) == (2026, 12)


def test_first_working_day_skips_holidays(tmp_path):
    path = tmp_path / "calendar.yml"
    path.write_text(calendar_text() + "days:\n  2027-01-01: holiday\n  2027-01-02: holiday\n", encoding="utf-8")
    cal = load_calendar(str(path))
    markets = ["eq", "fx", "fo"]
    working = [d for d in (date(2027, 1, n) for n in range(1, 15)) if slo.first_working_day(cal, d, markets)]
    assert len(working) == 1 and working[0] > date(2027, 1, 2)


def test_budget_and_one_message():
    pair = slo.PairSlo(on_time=995, late=3, missing=2, target=0.995, quantiles=(8.0, 31.0, 118.4))
    assert pair.ratio == 0.995 and abs(pair.budget_left) < 1e-9
    report = slo.SloReport(2026, 11, pairs={("fx", "tradestats"): pair,
                                            ("eq", "obstats"): slo.PairSlo(10, 0, 0, 0.995, (None,) * 3)})
    text = slo.render_slo(report)
    lines = text.splitlines()
    assert lines[0] == "📈 <b>SLO за ноябрь 2026</b> (цель 99.5 % интервалов вовремя)"
    assert lines[2] == "EQ obstats: 100 % · 0 · 0 · —/—/— · 100 %"            # markets in order
    assert lines[3] == "FX tradestats: 99.5 % · 3 · 2 · 8/31/118 · исчерпан ❗"
    many = slo.SloReport(2026, 11, pairs={(f"eq{i}", "tradestats"): pair for i in range(200)})
    assert len(slo.render_slo(many).encode("utf-16-le")) // 2 <= 4096
    assert "Prometheus недоступен (таймаут)" in slo.render_slo(slo.SloReport(2026, 11, error="таймаут"))
