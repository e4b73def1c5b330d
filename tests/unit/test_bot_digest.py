"""The evening digest's pure parts: text, numbers, escaping, truncation, alert episodes."""

from __future__ import annotations

from datetime import date

import pandas as pd

from bot import texts
from bot.handlers.digest import Digest, count_alert_starts, digest_markets, fit_lines, render_digest
from bot.handlers.report import statistics

DAY = date(2026, 11, 25)


def stats(rows: list[tuple[str, float]]) -> pd.DataFrame:
    return statistics(pd.DataFrame(rows, columns=["endpoint", "delay"]))


def test_digest_text_matches_the_operators_format():
    digest = Digest(DAY, ("eq", "fx", "fo"), hi2={"eq": 1.0, "fx": 0.0, "fo": 1.0},
                    delays={"eq": stats([("tradestats", 41), ("tradestats", 5), ("tradestats", 8),
                                         ("tradestats", 8), ("tradestats", 7.0)]),
                            "fx": stats([]), "fo": stats([("obstats", 12), ("obstats", 13)])},
                    missing={"eq": 0.0, "fx": 0.0, "fo": 0.0}, alerts=3)
    text = render_digest(digest)
    assert text.splitlines() == [
        "📊 <b>Итоги дня 25.11.2026</b>",
        "HI2: EQ ✅ · FX ❌ · FO ✅",
        "Задержка публикации, с (макс / мин / средн / медиана):",
        "EQ tradestats 41 / 5 / 13.8 / 8",
        "FX: нет данных",
        "FO obstats 13 / 12 / 12.5 / 12.5",
        "Пропущенных интервалов: 0 · Алертов за день: 3",
    ]


def test_missing_intervals_total_and_breakdown_and_unknowns():
    digest = Digest(DAY, ("eq", "fx", "fo"), hi2={"eq": 1.0}, missing={"fo": 1.0, "eq": 3.0, "fx": 0.0},
                    alerts=None)
    text = render_digest(digest)
    assert "Пропущенных интервалов: 4 (EQ 3 · FO 1) · Алертов за день: нет данных" in text
    assert "HI2: EQ ✅ · FX — нет данных · FO — нет данных" in text
    assert "Пропущенных интервалов: нет данных" in render_digest(Digest(DAY, ("eq",), alerts=0))


def test_values_from_labels_are_escaped():
    digest = Digest(DAY, ("eq",), hi2={"eq": 1.0}, delays={"eq": stats([("<b>x&y</b>", 3)])}, alerts=0)
    text = render_digest(digest)
    assert "EQ &lt;b&gt;x&amp;y&lt;/b&gt; 3 / 3 / 3 / 3" in text
    assert "<b>x" not in text


def test_prometheus_down_is_said_plainly_and_escaped():
    text = render_digest(Digest(DAY, ("eq",), error="HTTP <503>"))
    assert text == "📊 <b>Итоги дня 25.11.2026</b>\n" + texts.DIGEST_PROMETHEUS_DOWN.format(reason="HTTP &lt;503&gt;")
    assert "Prometheus недоступен" in text


def test_long_digest_is_cut_with_and_more_and_keeps_the_totals():
    endpoints = [(f"endpoint-{n:03d}-" + "x" * 40, float(n)) for n in range(300)]
    digest = Digest(DAY, ("eq",), hi2={"eq": 1.0}, delays={"eq": stats(endpoints)}, missing={"eq": 2.0}, alerts=5)
    text = render_digest(digest)
    assert len(text.encode("utf-16-le")) // 2 <= 4096
    lines = text.splitlines()
    assert lines[-1] == "Пропущенных интервалов: 2 (EQ 2) · Алертов за день: 5"
    shown = sum(1 for line in lines if line.startswith("EQ endpoint-"))
    assert 0 < shown < 300
    assert lines[-2] == texts.TRUNCATED.format(n=300 - shown)


def test_fit_lines_limits():
    assert fit_lines(["h"], ["a", "b"], ["t"], limit=100) == "h\na\nb\nt"
    cut = fit_lines(["h"], ["a" * 10, "b" * 10, "c" * 10], ["t"], limit=30)
    assert len(cut) <= 30 and cut.endswith("… и ещё 2\nt") and cut.startswith("h\naaaaaaaaaa")


def test_digest_markets_choice():
    assert digest_markets(["fo"], ["eq", "fx"], ["eq", "fx", "fo"]) == ["fo"]
    assert digest_markets(None, ["eq", "fx"], ["eq", "fx", "fo"]) == ["eq", "fx"]
    assert digest_markets(None, [], ["eq", "fx", "fo"]) == ["eq", "fx", "fo"]


def _series(name: str, market: str, **extra: str) -> dict[str, str]:
    return {"__name__": name, "alertname": "AlgopackMissingIntervals", "market": market, **extra}


def test_alert_episodes_are_counted_once_each_and_only_when_started_today():
    start = 1000.0
    firing = [
        # eq: fired 110..112, resolved, fired again 120..121
        (_series("ALERTS", "eq", alertstate="firing"), [(110.0, 1), (111.0, 1), (112.0, 1), (120.0, 1), (121.0, 1)]),
        (_series("ALERTS", "fo", alertstate="firing"), [(130.0, 1)]),
    ]
    for_state = [
        (_series("ALERTS_FOR_STATE", "eq"), [(109.0, 1108.0), (110.0, 1108.0), (111.0, 1108.0), (112.0, 1108.0),
                                             (119.0, 1119.0), (120.0, 1119.0), (121.0, 1119.0)]),
        # fo: active since before the day started (carried over): not counted
        (_series("ALERTS_FOR_STATE", "fo"), [(130.0, 900.0)]),
        # fx: pending only, never fired: not counted
        (_series("ALERTS_FOR_STATE", "fx"), [(140.0, 1140.0)]),
    ]
    # timestamps here are small numbers; the day starts at 1000 in activeAt terms
    assert count_alert_starts(firing, for_state, start) == 2
    assert count_alert_starts(firing, for_state, 0.0) == 3
    assert count_alert_starts([], for_state, 0.0) == 0


def test_alert_episodes_of_other_markets_are_left_out():
    firing = [({"alertname": "A", "market": "eq", "alertstate": "firing"}, [(1.0, 1)]),
              ({"alertname": "A", "market": "fo", "alertstate": "firing"}, [(1.0, 1)]),
              ({"alertname": "AlgopackExporterDown", "alertstate": "firing"}, [(1.0, 1)])]
    for_state = [({"alertname": "A", "market": "eq"}, [(1.0, 10.0)]),
                 ({"alertname": "A", "market": "fo"}, [(1.0, 10.0)]),
                 ({"alertname": "AlgopackExporterDown"}, [(1.0, 10.0)])]
    assert count_alert_starts(firing, for_state, 0.0, ("fo",)) == 2
    assert count_alert_starts(firing, for_state, 0.0, ("eq", "fx", "fo")) == 3
