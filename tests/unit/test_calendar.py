"""Calendar parsing, validation, session questions and hot reload."""

from __future__ import annotations

import os
import time as time_module
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from exporter.calendar import (
    Calendar,
    CalendarError,
    CalendarStore,
    Session,
    load_calendar,
    parse_calendar,
    parse_calendar_text,
)

from ..calendars import calendar_text

MSK = ZoneInfo("Europe/Moscow")
REPO_ROOT = Path(__file__).resolve().parents[2]

BASE = calendar_text("""\
      2026-12-31: holiday
      2026-11-30: working
      2026-11-28:
        status: working
        markets:
          eq: {sessions: [["10:00", "19:00"]]}
          fo: {}
        source: iss
        reason: "weekend session"
      "2026-11-27": holiday
    """)


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK)


@pytest.fixture
def cal() -> Calendar:
    return parse_calendar_text(BASE)


def data() -> dict:
    return yaml.safe_load(BASE)


# ----- validation ---------------------------------------------------------------------


def error_of(text_or_data) -> str:
    with pytest.raises(CalendarError) as info:
        if isinstance(text_or_data, str):
            parse_calendar_text(text_or_data)
        else:
            parse_calendar(text_or_data)
    return str(info.value)


def test_shipped_calendar_is_valid_and_has_the_2026_facts():
    shipped = load_calendar(str(REPO_ROOT / "calendar.yml"))
    assert shipped.timezone == "Europe/Moscow"
    for closed in (date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 7), date(2026, 3, 8),
                   date(2026, 5, 9), date(2026, 12, 31)):
        assert not shipped.is_working_day(closed), closed
    # public holiday with a weekend-style EQ/FO session, FX closed
    assert [(s.start.hour, s.end.hour) for s in shipped.sessions("eq", date(2026, 2, 23))] == [(10, 19)]
    assert shipped.sessions("fx", date(2026, 2, 23)) == []
    # official day off on which all markets trade
    assert shipped.is_working_day(date(2026, 1, 9), "fx")
    # closed weekend vs weekend session
    assert not shipped.is_working_day(date(2026, 2, 14))
    assert shipped.is_working_day(date(2026, 2, 7), "fo") and not shipped.is_working_day(date(2026, 2, 7), "fx")
    assert len(shipped.expected_buckets("eq", date(2026, 11, 25))) == 161  # iss-api §4 observation


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(timezone="Mars/Olympus"), "timezone: 'Mars/Olympus' is not a known time zone"),
    (lambda d: d.update(weekend_default="maybe"), "weekend_default: 'maybe' is not valid"),
    (lambda d: d.update(colour="red"), "colour: unknown key"),
    (lambda d: d["markets"].update(xx={"sessions": [["10:00", "11:00"]]}), "markets.xx: unknown key"),
    (lambda d: d["markets"].pop("fx"), "markets.fx: required"),
    (lambda d: d["markets"]["eq"].pop("sessions"), "markets.eq.sessions: required"),
    (lambda d: d["markets"]["eq"].update(sessions=[["10:00", "18:40"], ["10:00", "18:40"]]),
     'markets.eq.sessions[1]: overlaps ["10:00", "18:40"]'),
    (lambda d: d["markets"]["eq"].update(sessions=[["10:00", "18:40"], ["12:00", "20:00"]]),
     'markets.eq.sessions[1]: overlaps ["10:00", "18:40"]'),
    (lambda d: d["markets"]["eq"].update(sessions=[["19:05", "23:50"], ["10:00", "18:40"]]),
     "markets.eq.sessions[1]: sessions must be sorted"),
    (lambda d: d["markets"]["fx"].update(sessions=[["19:00", "07:00"]]),
     "markets.fx.sessions[0]: start 19:00 must be before end 07:00"),
    (lambda d: d["markets"]["fx"].update(sessions=[["07:00", "24:00"]]), "markets.fx.sessions[0][1]: '24:00'"),
    (lambda d: d["markets"]["fx"].update(sessions=[["7:00", "19:00"]]), "markets.fx.sessions[0][0]: '7:00'"),
    (lambda d: d["markets"]["fx"].update(sessions=[["07:00"]]), "markets.fx.sessions[0]: must be a pair"),
    (lambda d: d["markets"]["fx"].update(sessions=[]), "markets.fx.sessions: must list at least one"),
    (lambda d: d["checks"]["hi2_deadline"].update(eq="7pm"), "checks.hi2_deadline.eq: '7pm'"),
    (lambda d: d["checks"]["hi2_deadline"].update(xx="19:00"), "checks.hi2_deadline.xx: unknown key"),
    (lambda d: d["checks"].update(other=1), "checks.other: unknown key"),
    (lambda d: d["days"].update({date(2026, 5, 5): "closed"}), "days.2026-05-05: 'closed' is not a status"),
    (lambda d: d["days"].update({"2026-02-30": "holiday"}), "days.2026-02-30: not a valid date"),
    (lambda d: d["days"].update({"tomorrow": "holiday"}), "days.tomorrow: must be a date"),
    (lambda d: d["days"].update({date(2026, 5, 5): {"markets": {"eq": {}}}}), "days.2026-05-05.status: required"),
    (lambda d: d["days"].update({date(2026, 5, 5): {"status": "working", "note": "x"}}),
     "days.2026-05-05.note: unknown key"),
    (lambda d: d["days"].update({date(2026, 5, 5): {"status": "working", "markets": {"xx": {}}}}),
     "days.2026-05-05.markets.xx: unknown key"),
    (lambda d: d["days"].update({date(2026, 5, 5): {"status": "working", "markets": {}}}),
     "days.2026-05-05.markets: must list at least one market"),
    (lambda d: d["days"].update({date(2026, 5, 5): {"status": "working", "source": "bot"}}),
     "days.2026-05-05.source: 'bot' is not a source"),
    (lambda d: d["days"].update({date(2026, 5, 5): {"status": "working", "markets": {
        "eq": {"sessions": [["10:00", "19:00"], ["18:00", "20:00"]]}}}}),
     'days.2026-05-05.markets.eq.sessions[1]: overlaps ["10:00", "19:00"]'),
    (lambda d: d["days"].update({"2026-11-30": "holiday"}), "days.2026-11-30: listed twice"),
])
def test_validation_errors_name_the_key(mutate, expected):
    doc = data()
    mutate(doc)
    message = error_of(doc)
    assert message.startswith(expected), message


def test_invalid_date_in_yaml_text_is_named_not_a_parser_crash():
    text = BASE.replace("2026-12-31: holiday", "2026-02-30: holiday")
    assert error_of(text) == "days.2026-02-30: not a valid date"


def test_unquoted_time_is_a_time():
    # The calendar is read as YAML 1.2 (one library for read and write): an unquoted 19:00
    # is the text "19:00", never the YAML 1.1 sexagesimal number 1140.
    text = BASE.replace('fx: {sessions: [["07:00", "19:00"]]}', 'fx: {sessions: [["07:00", 19:00]]}')
    fx = parse_calendar_text(text).sessions("fx", date(2026, 11, 25))
    assert [(s.start.hour, s.end.hour) for s in fx] == [(7, 19)]
    number = BASE.replace('fx: {sessions: [["07:00", "19:00"]]}', 'fx: {sessions: [["07:00", 1140]]}')
    assert error_of(number).startswith('markets.fx.sessions[0][1]: must be a "HH:MM" string'), error_of(number)


def test_yaml_syntax_error_and_empty_file():
    assert "not valid YAML" in error_of("markets: [unclosed")
    assert error_of("") == "calendar: the file is empty"


def test_defaults_for_timezone_and_weekend():
    doc = data()
    del doc["timezone"], doc["weekend_default"], doc["checks"]
    cal = parse_calendar(doc)
    assert cal.timezone == "Europe/Moscow"
    assert not cal.is_working_day(date(2026, 11, 22))  # Sunday
    assert cal.hi2_deadline("eq", date(2026, 11, 25)) is None  # no deadline configured


# ----- days and sessions --------------------------------------------------------------


def test_day_status_and_source(cal):
    assert cal.is_working_day(date(2026, 11, 25))            # Wednesday
    assert not cal.is_working_day(date(2026, 11, 22))        # Sunday, weekend_default
    assert not cal.is_working_day(date(2026, 12, 31))        # manual holiday
    assert not cal.is_working_day(date(2026, 11, 27))        # quoted key works as well
    assert cal.day_source(date(2026, 12, 31)) == "manual"
    assert cal.day_source(date(2026, 11, 28)) == "iss"
    assert cal.day_source(date(2026, 11, 25)) == "default"


def test_weekend_override_with_only_some_markets(cal):
    saturday = date(2026, 11, 28)
    assert cal.is_working_day(saturday)
    assert cal.is_working_day(saturday, "eq") and cal.is_working_day(saturday, "fo")
    assert not cal.is_working_day(saturday, "fx")
    assert cal.sessions("eq", saturday) == [Session(msk(2026, 11, 28, 10, 0), msk(2026, 11, 28, 19, 0))]
    assert cal.sessions("fo", saturday) == [Session(msk(2026, 11, 28, 9, 0), msk(2026, 11, 28, 23, 50))]
    assert cal.sessions("fx", saturday) == []
    assert cal.hi2_deadline("fx", saturday) is None
    assert cal.hi2_deadline("eq", saturday) == msk(2026, 11, 28, 19, 1)
    assert cal.override(saturday).reason == "weekend session"


def test_per_day_custom_sessions_and_buckets(cal):
    saturday = date(2026, 11, 28)
    buckets = cal.expected_buckets("eq", saturday)
    assert buckets[0] == msk(2026, 11, 28, 10, 5)
    assert buckets[-1] == msk(2026, 11, 28, 19, 0)
    assert len(buckets) == 9 * 12


def test_buckets_are_labelled_by_end(cal):
    day = date(2026, 11, 25)
    buckets = cal.expected_buckets("eq", day)
    assert buckets[0] == msk(2026, 11, 25, 10, 5)
    assert msk(2026, 11, 25, 18, 40) in buckets
    assert msk(2026, 11, 25, 18, 45) not in buckets and msk(2026, 11, 25, 19, 5) not in buckets
    assert msk(2026, 11, 25, 19, 10) in buckets
    assert buckets[-1] == msk(2026, 11, 25, 23, 50)
    assert len(buckets) == 104 + 57
    assert cal.expected_buckets("fx", date(2026, 11, 22)) == []


def test_unaligned_session_gets_whole_buckets_only():
    doc = data()
    doc["markets"]["fx"]["sessions"] = [["07:03", "08:02"]]
    cal = parse_calendar(doc)
    buckets = cal.expected_buckets("fx", date(2026, 11, 25))
    assert buckets[0] == msk(2026, 11, 25, 7, 10) and buckets[-1] == msk(2026, 11, 25, 8, 0)


def test_due_buckets_respect_grace(cal):
    at = msk(2026, 11, 25, 10, 11)
    assert cal.due_buckets("eq", at, 60) == [msk(2026, 11, 25, 10, 5)]
    # 10:10 bucket is due only once now > 10:10 + grace
    assert cal.due_buckets("eq", msk(2026, 11, 25, 10, 11, 0), 60)[-1] == msk(2026, 11, 25, 10, 5)
    assert cal.due_buckets("eq", msk(2026, 11, 25, 10, 11, 1), 60)[-1] == msk(2026, 11, 25, 10, 10)
    assert cal.due_buckets("eq", msk(2026, 11, 25, 10, 5, 30), 60) == []
    assert len(cal.due_buckets("eq", msk(2026, 11, 25, 23, 59), 60)) == 161
    assert cal.due_buckets("eq", msk(2026, 11, 22, 12, 0), 60) == []


def test_in_session_and_current_session(cal):
    assert not cal.in_session("eq", msk(2026, 11, 25, 9, 59, 59))
    assert cal.in_session("eq", msk(2026, 11, 25, 10, 0))
    assert not cal.in_session("eq", msk(2026, 11, 25, 18, 40))        # end is exclusive
    assert not cal.in_session("eq", msk(2026, 11, 25, 19, 0))
    evening = cal.current_session("eq", msk(2026, 11, 25, 20, 0))
    assert evening == Session(msk(2026, 11, 25, 19, 5), msk(2026, 11, 25, 23, 50))
    assert cal.current_session("fx", msk(2026, 11, 22, 12, 0)) is None


def test_session_start_and_next_session_start(cal):
    assert cal.session_start("eq", msk(2026, 11, 25, 12, 0)) == msk(2026, 11, 25, 10, 0)
    assert cal.session_start("eq", msk(2026, 11, 25, 19, 0)) == msk(2026, 11, 25, 10, 0)  # between sessions
    assert cal.session_start("eq", msk(2026, 11, 25, 9, 0)) == msk(2026, 11, 24, 19, 5)   # yesterday's evening
    # Monday morning: fx last started Friday 26 Nov? 27 Nov is a holiday -> Thursday 26th
    assert cal.session_start("fx", msk(2026, 11, 30, 6, 0)) == msk(2026, 11, 26, 7, 0)
    assert cal.next_session_start("fx", msk(2026, 11, 26, 7, 0)) == msk(2026, 11, 30, 7, 0)
    assert cal.next_session_start("eq", msk(2026, 11, 27, 12, 0)) == msk(2026, 11, 28, 10, 0)
    everything_closed = data()
    everything_closed["weekend_default"] = "holiday"
    everything_closed["days"] = {date(2026, 1, 1) + timedelta(days=i): "holiday" for i in range(60)}
    closed = parse_calendar(everything_closed)
    assert closed.next_session_start("eq", msk(2026, 1, 1, 0, 0)) is None
    assert closed.session_start("eq", msk(2026, 2, 1, 0, 0)) is None


def test_previous_working_day_over_weekends_and_holidays(cal):
    assert cal.previous_working_day(date(2026, 11, 25)) == date(2026, 11, 24)
    assert cal.previous_working_day(date(2026, 11, 24)) == date(2026, 11, 23)
    assert cal.previous_working_day(date(2026, 11, 23)) == date(2026, 11, 20)  # over the weekend
    # 27 Nov holiday, 28 Nov weekend session (eq, fo), 29 Nov Sunday
    assert cal.previous_working_day(date(2026, 11, 30)) == date(2026, 11, 28)
    assert cal.previous_working_day(date(2026, 11, 30), "fx") == date(2026, 11, 26)
    assert cal.previous_working_day(date(2026, 11, 30), "eq") == date(2026, 11, 28)


def test_sessions_list_is_a_copy(cal):
    first = cal.sessions("eq", date(2026, 11, 25))
    first.clear()
    assert len(cal.sessions("eq", date(2026, 11, 25))) == 2
    assert cal.sessions("eq", date(2026, 11, 25)) is not cal.sessions("eq", date(2026, 11, 25))


def test_naive_datetime_and_unknown_market_are_refused(cal):
    with pytest.raises(ValueError):
        cal.in_session("eq", datetime(2026, 11, 25, 12, 0))
    with pytest.raises(ValueError):
        cal.sessions("xx", date(2026, 11, 25))


@pytest.mark.parametrize("host_tz", ["UTC", "Asia/Vladivostok", "America/Los_Angeles"])
def test_host_timezone_does_not_matter(cal, host_tz, monkeypatch):
    monkeypatch.setenv("TZ", host_tz)
    time_module.tzset()
    try:
        # 07:30 UTC = 10:30 MSK = 17:30 Vladivostok
        moment = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
        assert cal.in_session("eq", moment)
        assert cal.session_start("eq", moment) == msk(2026, 11, 25, 10, 0)
        assert cal.due_buckets("eq", moment, 60)[-1] == msk(2026, 11, 25, 10, 25)
        vladivostok = moment.astimezone(ZoneInfo("Asia/Vladivostok"))
        assert cal.current_session("eq", vladivostok).start == msk(2026, 11, 25, 10, 0)
        # 22:00 UTC on the 24th is already the 25th in Moscow (01:00): no session, day = 25th
        late = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
        assert not cal.in_session("fx", late)
        assert cal.next_session_start("fx", late) == msk(2026, 11, 25, 7, 0)
        assert cal.due_buckets("eq", late, 60) == []
        assert time_module.localtime().tm_zone  # tzset took effect without error
    finally:
        monkeypatch.delenv("TZ")
        time_module.tzset()


def test_other_calendar_timezone():
    doc = data()
    doc["timezone"] = "Asia/Vladivostok"
    cal = parse_calendar(doc)
    start = cal.session_start("fx", datetime(2026, 11, 25, 0, 0, tzinfo=UTC))  # 10:00 local
    assert start == datetime(2026, 11, 25, 7, 0, tzinfo=ZoneInfo("Asia/Vladivostok"))


# ----- store / hot reload -------------------------------------------------------------


def write(path: Path, text: str) -> None:
    """Replace the file the way writers do (new inode), so the change is always seen."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def test_store_first_load_must_succeed(tmp_path):
    path = tmp_path / "calendar.yml"
    path.write_text(BASE.replace('"19:01"', '"25:00"'))
    with pytest.raises(CalendarError, match="checks.hi2_deadline.eq"):
        CalendarStore(str(path))
    with pytest.raises(CalendarError, match="cannot read"):
        CalendarStore(str(tmp_path / "missing.yml"))


def test_store_hot_reload_keeps_last_good(tmp_path):
    path = tmp_path / "calendar.yml"
    path.write_text(BASE)
    store = CalendarStore(str(path))
    events: list[tuple[bool, str | None]] = []
    store.on_reload.append(lambda s: events.append((s.last_reload_successful, s.last_error)))
    assert store.last_reload_successful and store.last_error is None
    assert store.check() is False and events == []  # unchanged file: nothing happens

    write(path, BASE.replace("2026-12-31: holiday", "2026-12-31: working"))
    assert store.check() is True
    assert store.current.is_working_day(date(2026, 12, 31))
    good = store.current

    write(path, BASE.replace("2026-12-31: holiday", "2026-02-30: holiday"))
    assert store.check() is False
    assert store.current is good
    assert store.last_reload_successful is False
    assert store.last_error == "days.2026-02-30: not a valid date"
    assert store.check() is False and len(events) == 2  # the same broken file is reported once

    os.unlink(path)
    assert store.check() is False and "cannot read" in store.last_error and store.current is good

    write(path, BASE)
    assert store.check() is True
    assert store.last_reload_successful is True and store.last_error is None
    assert not store.current.is_working_day(date(2026, 12, 31))
    assert [ok for ok, _ in events] == [True, False, False, True]


def test_store_watching_thread(tmp_path):
    path = tmp_path / "calendar.yml"
    path.write_text(BASE)
    store = CalendarStore(str(path))
    store.start_watching(interval=0.05)
    try:
        assert store._thread.daemon
        write(path, BASE.replace("2026-11-30: working", "2026-11-30: holiday"))
        deadline = time_module.monotonic() + 10
        while store.current.is_working_day(date(2026, 11, 30)) and time_module.monotonic() < deadline:
            time_module.sleep(0.05)
        assert not store.current.is_working_day(date(2026, 11, 30))
    finally:
        store.stop()
    assert store._thread is None
