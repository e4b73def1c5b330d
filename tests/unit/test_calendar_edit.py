"""Locked, atomic, comment-keeping edits of calendar.yml."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from exporter.calendar import CalendarError, day_info, edit_calendar, load_calendar, set_day, toggle_day

REPO_ROOT = Path(__file__).resolve().parents[2]

TEXT = """\
# header comment: keep me
timezone: Europe/Moscow
weekend_default: holiday   # weekend comment
markets:
  eq: {sessions: [["10:00", "18:40"], ["19:05", "23:50"]]}   # eq comment
  fx: {sessions: [["07:00", "19:00"]]}
  fo: {sessions: [["09:00", "23:50"]]}
checks:
  hi2_deadline: {eq: "19:01", fx: "19:31", fo: "19:31"}
days:
  # group A: keep me
  2026-11-04: {status: working, source: iss, reason: "holiday session", markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {}}}
  "2026-11-20": holiday   # quoted key
  # group B: keep me too
  2026-12-31: holiday
"""


@pytest.fixture
def path(tmp_path) -> Path:
    target = tmp_path / "calendar.yml"
    target.write_text(TEXT, encoding="utf-8")
    return target


def day_keys(text: str) -> list[str]:
    lines = text.split("days:\n", 1)[1].splitlines()
    return [line.split(":", 1)[0].strip() for line in lines if line.startswith("  2") or line.startswith('  "')]


def test_toggle_keeps_comments_and_other_entries(path):
    assert toggle_day(str(path), date(2026, 11, 25), "@ivan") == ("working", "holiday")
    text = path.read_text()
    for comment in ("# header comment: keep me", "# weekend comment", "# eq comment",
                    "# group A: keep me", "# quoted key", "# group B: keep me too"):
        assert comment in text
    assert "2026-11-25: holiday # set by @ivan" in text
    assert '2026-11-04: {status: working, source: iss, reason: "holiday session"' in text
    assert day_keys(text) == ["2026-11-04", '"2026-11-20"', "2026-11-25", "2026-12-31"]
    cal = load_calendar(str(path))
    assert not cal.is_working_day(date(2026, 11, 25))
    assert cal.day_source(date(2026, 11, 25)) == "manual"
    assert not cal.is_working_day(date(2026, 11, 20)) and not cal.is_working_day(date(2026, 12, 31))


def test_toggle_twice_restores_status_and_updates_actor(path):
    toggle_day(str(path), date(2026, 11, 28), "alice")      # Saturday: holiday -> working
    assert toggle_day(str(path), date(2026, 11, 28), "bob") == ("working", "holiday")
    text = path.read_text()
    assert "2026-11-28: holiday # set by bob" in text and "alice" not in text


def test_toggle_keeps_custom_market_sessions(path):
    day = date(2026, 11, 4)
    assert toggle_day(str(path), day, "ops") == ("working", "holiday")
    cal = load_calendar(str(path))
    assert not cal.is_working_day(day) and cal.day_source(day) == "manual"
    assert toggle_day(str(path), day, "ops") == ("holiday", "working")
    info = day_info(load_calendar(str(path)), day)
    assert info["status"] == "working" and info["source"] == "manual"
    assert info["markets"] == {"eq": [["10:00", "19:00"]], "fx": [], "fo": [["09:00", "23:50"]]}
    assert "# group B: keep me too" in path.read_text()


def test_quoted_key_is_rewritten_unquoted_in_place(path):
    assert toggle_day(str(path), date(2026, 11, 20), "ops") == ("holiday", "working")
    text = path.read_text()
    assert '"2026-11-20"' not in text
    assert day_keys(text) == ["2026-11-04", "2026-11-20", "2026-12-31"]


def test_set_day_with_markets_and_source(path):
    set_day(str(path), date(2026, 12, 5), "working", "calendar-sync",
            markets={"eq": [["10:00", "19:00"]], "fo": None}, source="iss", reason="weekend session")
    text = path.read_text()
    assert '2026-12-05: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {}}, ' \
           'source: iss, reason: weekend session}' in text
    info = day_info(load_calendar(str(path)), date(2026, 12, 5))
    assert info == {"date": "2026-12-05", "weekday": 5, "status": "working", "source": "iss",
                    "reason": "weekend session",
                    "markets": {"eq": [["10:00", "19:00"]], "fx": [], "fo": [["09:00", "23:50"]]}}
    # markets=None keeps the day's custom sessions
    set_day(str(path), date(2026, 12, 5), "working", "ops")
    info = day_info(load_calendar(str(path)), date(2026, 12, 5))
    assert info["source"] == "manual" and info["markets"]["fx"] == [] and info["markets"]["eq"] == [["10:00", "19:00"]]


def test_invalid_edit_leaves_file_byte_identical(path):
    before = path.read_bytes()
    stat_before = path.stat()

    def break_it(doc):
        doc["markets"]["eq"]["sessions"][1][0] = "18:00"

    with pytest.raises(CalendarError, match=r"^markets.eq.sessions\[1\]: overlaps"):
        edit_calendar(str(path), break_it)
    with pytest.raises(CalendarError, match="days.2026-05-05: 'closed' is not a status"):
        edit_calendar(str(path), lambda doc: doc["days"].__setitem__(date(2026, 5, 5), "closed"))
    with pytest.raises(CalendarError, match=r"^days.2026-05-05.markets.eq.sessions: must list at least one session"):
        set_day(str(path), date(2026, 5, 5), "working", "ops", markets={"eq": []})
    with pytest.raises(CalendarError, match="status"):
        set_day(str(path), date(2026, 5, 5), "open", "ops")
    with pytest.raises(RuntimeError):
        edit_calendar(str(path), lambda doc: (_ for _ in ()).throw(RuntimeError("mutate failed")))
    assert path.read_bytes() == before
    assert path.stat().st_ino == stat_before.st_ino  # not even replaced
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_unquoted_times_are_never_written(path):
    set_day(str(path), date(2026, 5, 5), "working", "ops", markets={"fx": [["10:00", "12:00"]]})
    assert '"10:00", "12:00"' in path.read_text()
    assert load_calendar(str(path)).sessions("fx", date(2026, 5, 5))[0].start.hour == 10


def test_shipped_calendar_survives_an_edit_with_its_anchor(tmp_path):
    target = tmp_path / "calendar.yml"
    original = (REPO_ROOT / "calendar.yml").read_text()
    target.write_text(original)
    before = load_calendar(str(target))
    anchor_day = min(d for d, o in before.days.items() if o.markets is not None)
    toggle_day(str(target), anchor_day, "ops")   # the entry that holds the &weekend anchor
    after = load_calendar(str(target))
    assert not after.is_working_day(anchor_day)
    changed = [d for d in before.days if d != anchor_day and before.days[d] != after.days[d]]
    assert changed == []
    old_lines = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    new_lines = [line for line in target.read_text().splitlines() if line.lstrip().startswith("#")]
    assert old_lines == new_lines


def _toggle_many(path: str, days: list[date], actor: str) -> int:
    for day in days:
        toggle_day(path, day, actor)
    return len(days)


def test_concurrent_toggles_from_threads_and_processes_lose_nothing(path):
    base = date(2027, 1, 4)
    days = [base + timedelta(days=i) for i in range(100)]
    before = load_calendar(str(path))
    expected = {d: not before.is_working_day(d) for d in days}

    thread_days, process_days = days[:50], days[50:]
    threads = [threading.Thread(target=_toggle_many, args=(str(path), thread_days[i::5], f"thread{i}"))
               for i in range(5)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=3) as pool:
        pending = [pool.apply_async(_toggle_many, (str(path), process_days[i::3], f"proc{i}")) for i in range(3)]
        for thread in threads:
            thread.start()
        done = sum(result.get(timeout=240) for result in pending)
        for thread in threads:
            thread.join(timeout=240)
    assert done == 50
    after = load_calendar(str(path))
    assert {d: after.is_working_day(d) for d in days} == expected
    assert all(after.day_source(d) == "manual" for d in days)
    assert "# group B: keep me too" in path.read_text()
    assert day_keys(path.read_text()) == sorted(day_keys(path.read_text()), key=lambda k: k.strip('"'))
