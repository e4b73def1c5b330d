"""The polling rhythm: one poll per bucket when data is on time, retries only while late."""

from datetime import datetime, timedelta

import pytest

from exporter.calendar import parse_calendar
from exporter.clock import MSK
from exporter.rhythm import RhythmParams, first_pending_bucket, next_daily_poll, next_intraday_poll

CAL = parse_calendar({
    "timezone": "Europe/Moscow",
    "weekend_default": "holiday",
    "markets": {"eq": {"sessions": [["10:00", "18:40"], ["19:05", "23:50"]]},
                "fx": {"sessions": [["07:00", "19:00"]]},
                "fo": {"sessions": [["09:00", "23:50"]]}},
    "checks": {"hi2_deadline": {"eq": "19:01", "fx": "19:31", "fo": "19:31"}},
    "days": {"2026-11-26": "holiday"},
})
PARAMS = RhythmParams.from_seconds(offset=20, grace=120, interval=60, threshold=600)


def at(hh: int, mm: int, ss: int = 0, day: int = 25) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=MSK)


def test_on_time_data_is_polled_once_per_bucket():
    seen = at(10, 5).timestamp()
    assert next_intraday_poll(CAL, "eq", at(10, 5, 21), seen, seen + 9, PARAMS) == at(10, 10, 20)


def test_before_the_first_bucket_waits_for_it():
    assert next_intraday_poll(CAL, "eq", at(9, 0), None, None, PARAMS) == at(10, 5, 20)


def test_late_bucket_is_retried_and_polled_just_before_it_counts_as_missing():
    seen = at(10, 5).timestamp()
    # 10:10 bucket was due at 10:10:20 and did not come: retry every minute, and once at
    # 10:11:55, just before it would count as missing (grace 120 s − 5 s).
    assert next_intraday_poll(CAL, "eq", at(10, 10, 21), seen, seen + 9, PARAMS) == at(10, 11, 21)
    assert next_intraday_poll(CAL, "eq", at(10, 11, 21), seen, seen + 9, PARAMS) == at(10, 11, 55)
    # Then it counts as missing: the next poll is the 10:15 bucket's (no retry every minute:
    # the hole shows on the scrape after 10:12 without a poll).
    assert next_intraday_poll(CAL, "eq", at(10, 11, 56), seen, seen + 9, PARAMS) == at(10, 14, 59)
    assert next_intraday_poll(CAL, "eq", at(10, 11, 56), seen, None, PARAMS) == at(10, 15, 20)


def test_a_stopped_feed_is_polled_three_times_a_bucket():
    seen = at(10, 5).timestamp()
    moments, now = [], at(10, 10, 20)
    while now < at(10, 30):
        moments.append(now.strftime("%H:%M:%S"))
        now = next_intraday_poll(CAL, "eq", now + timedelta(seconds=1), seen, None, PARAMS)
    assert moments == ["10:10:20", "10:11:21", "10:11:55", "10:15:20", "10:16:21", "10:16:55",
                       "10:20:20", "10:21:21", "10:21:55", "10:25:20", "10:26:21", "10:26:55"]


def test_the_last_bucket_of_a_session_is_chased_until_the_session_is_long_over():
    seen = at(18, 35).timestamp()   # 18:40 (the main session's last) never comes
    assert next_intraday_poll(CAL, "eq", at(18, 41, 56), seen, None, PARAMS) == at(18, 42, 56)
    assert next_intraday_poll(CAL, "eq", at(18, 44, 1), seen, None, PARAMS) == at(19, 10, 20)


def test_poll_just_before_the_lag_threshold():
    seen = at(10, 5).timestamp()
    # Long stop: one poll 10 s before lag reaches 600 s.
    moment = next_intraday_poll(CAL, "eq", at(10, 14, 55), seen, at(10, 5, 10).timestamp(), PARAMS)
    assert moment == at(10, 15, 0)


def test_between_sessions_waits_for_the_evening_bucket():
    seen = at(18, 40).timestamp()
    assert next_intraday_poll(CAL, "eq", at(18, 41), seen, seen + 5, PARAMS) == at(19, 10, 20)


def test_gives_up_on_a_session_long_over():
    # The 18:40 bucket never came; at 18:50 the main session is over: wait for the evening.
    seen = at(18, 35).timestamp()
    assert first_pending_bucket(CAL, "eq", at(18, 50), seen, PARAMS) == at(19, 10)


def test_holiday_and_night_wait_for_next_working_session():
    moment = next_intraday_poll(CAL, "fx", at(20, 0), at(19, 0).timestamp(), None, PARAMS)
    assert moment <= at(20, 0) + timedelta(hours=6)
    # The 26th is a holiday: from the 27th morning the first FX bucket.
    moment = next_intraday_poll(CAL, "fx", at(6, 0, day=27), None, None, PARAMS)
    assert moment == at(7, 5, 20, day=27)


@pytest.mark.parametrize(("now", "present", "expected"), [
    (at(12, 0), False, at(18, 46)),           # start looking 15 min before the deadline
    (at(18, 50), False, at(18, 51)),          # then every interval
    (at(19, 40), False, at(19, 45)),          # slower once it is long overdue
    (at(18, 50), True, at(0, 50, day=26)),    # found: nothing until tomorrow (re-planned every 6 h)
])
def test_hi2_rhythm(now, present, expected):
    assert next_daily_poll(lambda day: CAL.hi2_deadline("eq", day), now, present, PARAMS) == expected


def test_a_bucket_from_the_future_never_moves_the_next_poll():
    # e.g. a row dated later today (or tomorrow) that slipped into the seen buckets
    now = at(10, 5, 21)
    bogus = at(23, 50).timestamp()
    assert next_intraday_poll(CAL, "eq", now, bogus, None, PARAMS) == \
        next_intraday_poll(CAL, "eq", now, None, None, PARAMS)
    assert next_intraday_poll(CAL, "eq", now, bogus, None, PARAMS) < at(10, 7)
    # a bucket just published (end within the slack) still counts as seen
    assert next_intraday_poll(CAL, "eq", at(10, 10, 21), at(10, 10).timestamp(), at(10, 10, 9).timestamp(),
                              PARAMS) == at(10, 15, 20)
