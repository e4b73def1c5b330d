from datetime import date, datetime

import pytest

from exporter import checks
from exporter.calendar import parse_calendar_text
from exporter.clock import MSK
from exporter.table import Table
from tests.calendars import calendar_text

DAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=MSK).timestamp()


def frame(rows, columns=("tradedate", "tradetime", "secid", "systime")):
    return Table(columns, [list(row) for row in rows])


def recs(rows, columns=("tradedate", "tradetime", "secid", "systime")):
    return [dict(zip(columns, row, strict=True)) for row in rows]


def ts(hh, mm, ss=0, day=25):
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=MSK).timestamp()


def test_rows_use_bucket_end_and_systime_in_moscow():
    rows = checks.check_rows(checks.records(frame([["2026-11-25", "10:05:00", "SBER", "2026-11-25 10:05:11"]])),
                             DAY, NOW)
    assert rows.buckets == (ts(10, 5),)
    assert checks.newest(rows)[1] - checks.newest(rows)[0] == 11
    assert rows.rejected == ()


def test_newest_picks_the_latest_bucket_whatever_the_order():
    rows = checks.check_rows(recs([
        ["2026-11-25", "10:10:00", "ri", "2026-11-25 10:10:07"],
        ["2026-11-25", "10:05:00", "ri", "2026-11-25 10:05:05"],
        ["2026-11-25", "10:10:00", "ri", "2026-11-25 10:10:09"],
    ]), DAY, NOW)
    bucket, systime = checks.newest(rows)
    assert bucket == ts(10, 10)
    assert systime - bucket == 9


GOOD = ["2026-11-25", "10:05:00", "SBER", "2026-11-25 10:05:11"]


@pytest.mark.parametrize(("bad", "reason"), [
    (["2026-11-25", "10:10:00", "SBER", ""], "bad_time"),                        # empty SYSTIME
    (["2026-11-25", "10:10:00", "SBER", None], "bad_time"),                      # null SYSTIME
    (["2026-11-25", None, "SBER", "2026-11-25 10:10:11"], "bad_time"),           # null tradetime
    (["2026-11-25", "25:99:00", "SBER", "2026-11-25 10:10:11"], "bad_time"),     # garbage tradetime
    (["25.11.2026", "10:10:00", "SBER", "2026-11-25 10:10:11"], "bad_time"),     # garbage tradedate
    (["2026-11-26", "10:10:00", "SBER", "2026-11-25 10:10:11"], "other_day"),    # dated tomorrow
    (["2026-11-24", "10:10:00", "SBER", "2026-11-24 10:10:11"], "other_day"),    # yesterday's row
    (["2026-11-25", "11:55:00", "SBER", "2026-11-25 12:01:01"], "future_systime"),  # > now + 60 s
    (["2026-11-25", "10:07:00", "SBER", "2026-11-25 10:07:11"], "off_grid"),     # not a 5-minute end
    (["2026-11-25", "10:10:30", "SBER", "2026-11-25 10:10:41"], "off_grid"),
    (["2026-11-25", "10:10:00", "SBER", "2026-11-25 10:08:59"], "before_bucket"),  # loaded before its end
    (["2026-11-25", "10:10:00", "SBER", "2026-11-21 10:10:11"], "before_bucket"),  # a Saturday's row
])
def test_a_bad_row_is_skipped_with_its_reason_and_the_rest_is_used(bad, reason):
    rows = checks.check_rows(recs([GOOD, bad]), DAY, NOW)
    assert rows.buckets == (ts(10, 5),)
    assert [r for r, _ in rows.rejected] == [reason]
    assert reason in checks.REJECT_REASONS


def test_a_row_close_to_the_limits_is_kept():
    rows = checks.check_rows(recs([
        ["2026-11-25", "11:55:00", "SBER", "2026-11-25 12:00:59"],   # now + 59 s
        ["2026-11-25", "11:50:00", "SBER", "2026-11-25 11:49:01"],   # 59 s before its end
    ]), DAY, NOW)
    assert rows.buckets == (ts(11, 55), ts(11, 50)) and rows.rejected == ()


def test_a_nan_time_is_bad_time_not_a_crash():
    block = frame([GOOD, ["2026-11-25", "10:10:00", "SBER", float("nan")]])
    rows = checks.check_rows(checks.records(block), DAY, NOW)
    assert rows.buckets == (ts(10, 5),) and rows.rejected[0][0] == "bad_time"


def test_missing_time_column_is_still_a_rows_error():
    with pytest.raises(checks.RowsError, match="missing column"):
        checks.check_rows(recs([["2026-11-25", "10:05:00", "SBER"]], ("tradedate", "tradetime", "secid")), DAY, NOW)


def test_weekend_rows_filed_under_the_next_trading_day_count_for_the_calendar_day():
    saturday = date(2026, 11, 21)
    now = ts(12, 0, day=21)
    rows = checks.check_rows(recs([
        ["2026-11-21", "10:05:00", "SBER", "2026-11-21 10:05:11"],   # filed under D
        ["2026-11-23", "10:10:00", "SBER", "2026-11-21 10:10:11"],   # filed under N (Monday)
        ["2026-11-24", "10:15:00", "SBER", "2026-11-21 10:15:11"],   # neither
    ]), saturday, now, (saturday, date(2026, 11, 23)))
    assert rows.buckets == (ts(10, 5, day=21), ts(10, 10, day=21))
    assert [r for r, _ in rows.rejected] == ["other_day"]


CAL = parse_calendar_text(calendar_text("""
    2026-11-21: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {sessions: [["10:00", "19:00"]]}}}
    2026-11-22: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {sessions: [["10:00", "19:00"]]}}}
    2026-11-04: {status: working, markets: {eq: {sessions: [["10:00", "19:00"]]}, fo: {sessions: [["10:00", "19:00"]]}}}
    2026-11-23: holiday
"""))


def test_polled_dates_on_weekend_sessions_include_the_next_ordinary_trading_day():
    assert checks.polled_dates(CAL, "eq", date(2026, 11, 25)) == (date(2026, 11, 25),)
    # Sat and Sun sessions belong to the next ordinary trading day (Mon 23 is a holiday: Tue 24).
    assert checks.polled_dates(CAL, "eq", date(2026, 11, 21)) == (date(2026, 11, 21), date(2026, 11, 24))
    assert checks.polled_dates(CAL, "eq", date(2026, 11, 22)) == (date(2026, 11, 22), date(2026, 11, 24))
    # A weekday holiday with a weekend-style session (only some markets listed).
    assert checks.polled_dates(CAL, "fo", date(2026, 11, 4)) == (date(2026, 11, 4), date(2026, 11, 5))
    assert checks.polled_dates(CAL, "eq", date(2026, 11, 24)) == (date(2026, 11, 24),)
    assert checks.polled_dates(CAL, "fx", date(2026, 11, 21)) == (date(2026, 11, 21),)  # fx does not trade


def test_filed_before_only_where_an_earlier_weekend_session_may_file_rows_under_that_date():
    """The coverage read asks for SYSTIME only then (it halves the answer on other days)."""
    tue, sat, sun, wed = date(2026, 11, 24), date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 25)
    assert checks.filed_before(CAL, "eq", tue, tue)           # Sat/Sun rows may be filed under Tue
    assert checks.filed_before(CAL, "eq", sun, tue)           # Sunday reads Tue: Saturday's rows there
    assert not checks.filed_before(CAL, "eq", sat, sat)       # nothing earlier is filed under Sat
    assert not checks.filed_before(CAL, "eq", sun, sun)
    assert not checks.filed_before(CAL, "eq", wed, wed)       # an ordinary day after an ordinary one
    assert not checks.filed_before(CAL, "fx", tue, tue)       # fx had no weekend session


def test_needs_whole_day_when_nothing_is_known_a_bucket_is_skipped_or_a_hole_may_still_fill():
    grid = [1000.0 + 300 * i for i in range(6)]         # six buckets, 300 s apart
    horizon = 1920.0                                     # grace 120 + SLO window 1800
    assert checks.needs_whole_day(grid, set(), None, grid[2], horizon)                 # nothing seen yet
    seen = set(grid[:3])
    assert not checks.needs_whole_day(grid, seen, grid[2], grid[3], horizon)           # all up to newest seen
    assert not checks.needs_whole_day(grid, seen | {grid[3]}, grid[3], grid[3], horizon)  # answer: the next one
    assert checks.needs_whole_day(grid, seen | {grid[4]}, grid[4], grid[4], horizon)   # answer skipped grid[3]
    holed = {grid[0], grid[2]}                                                          # grid[1] never came
    assert checks.needs_whole_day(grid, holed, grid[2], grid[2] + 60, horizon)         # it may still come
    assert not checks.needs_whole_day(grid, holed, grid[2], grid[1] + horizon + 1, horizon)  # too late to count


def test_missing_buckets_and_lag():
    due = [datetime(2026, 11, 25, 10, m, tzinfo=MSK) for m in (5, 10, 15)]
    seen = [due[0].timestamp(), due[2].timestamp()]
    assert checks.missing_runs(due, seen) == [[due[1]]]
    assert checks.lag_seconds(1000.0, 900.0, 500.0, True) == 100.0
    assert checks.lag_seconds(1000.0, None, 500.0, True) == 500.0   # nothing today: since session start
    assert checks.lag_seconds(1000.0, 100.0, 500.0, True) == 500.0  # yesterday's systime does not count
    assert checks.lag_seconds(1000.0, 100.0, 500.0, False) == 0.0


def test_secid_counts_and_liquidity():
    obstats = frame([["2026-11-25", "10:05:00", s, "x"] for s in ("A", "B", "C")]
                    + [["2026-11-25", "10:10:00", s, "x"] for s in ("A", "B")])
    assert checks.newest_interval_secids(obstats) == ("10:10:00", 2)
    assert checks.secids_per_interval(obstats) == {"10:05:00": 3, "10:10:00": 2}
    assert checks.max_secids_per_interval(obstats) == 3
    assert checks.max_secids_per_interval({"10:05:00": 3, "10:10:00": 7}) == 7
    trades = Table(("secid", "val"), [["SiZ6", 5.0], ["RIZ6", 7.0], ["SiZ6", 4.0]])
    assert checks.most_liquid(trades) == "SiZ6"
    assert checks.most_liquid([{"secid": "A", "val": None}, {"secid": "B", "val": 1}]) == "B"
    assert checks.has_rows_for_day(frame([["2026-11-25", "18:40:00", "SBER", "x"]]), date(2026, 11, 25))
    assert not checks.has_rows_for_day(frame([["2026-11-24", "18:40:00", "SBER", "x"]]), date(2026, 11, 25))


def test_hi2_rows_of_a_weekend_filed_under_today_do_not_count_as_todays():
    monday = date(2026, 11, 23)
    saturday_row = frame([["2026-11-23", "18:40:00", "SBER", "2026-11-21 18:45:35"]])
    assert checks.has_rows_for_day(saturday_row, monday)
    assert not checks.has_rows_for_day(saturday_row, monday, not_loaded_before=ts(0, 0, day=23))
    assert checks.has_rows_for_day(saturday_row, [date(2026, 11, 21), monday], not_loaded_before=ts(0, 0, day=21))


def test_missing_runs_split_where_data_arrived():
    due = [datetime(2026, 11, 25, 10, m, tzinfo=MSK) for m in (5, 10, 15, 20, 25, 30)]
    seen = [due[0].timestamp(), due[3].timestamp()]
    assert checks.missing_runs(due, seen) == [[due[1], due[2]], [due[4], due[5]]]
    assert checks.missing_runs(due, [b.timestamp() for b in due]) == []


def test_a_rejected_row_keeps_its_identity_when_only_its_future_systime_moves():
    first = checks.check_rows(recs([["2026-11-25", "11:55:00", "SBER", "2026-11-25 14:00:00"]]), DAY, NOW)
    again = checks.check_rows(recs([["2026-11-25", "11:55:00", "SBER", "2026-11-25 14:01:00"]]), DAY, NOW + 60)
    assert first.rejected == again.rejected and first.rejected[0][0] == "future_systime"


def test_secid_counts_are_compared_with_the_previous_day_of_the_same_kind():
    # Mon 23 Nov is a holiday in CAL: Tue 24 compares with Fri 20, not with Sunday's weekend session.
    assert checks.comparison_day(CAL, "eq", date(2026, 11, 24)) == date(2026, 11, 20)
    assert checks.comparison_day(CAL, "eq", date(2026, 11, 25)) == date(2026, 11, 24)
    # a weekend session with the previous weekend session, looking back 14 days at most
    assert checks.comparison_day(CAL, "eq", date(2026, 11, 22)) == date(2026, 11, 21)
    assert checks.comparison_day(CAL, "eq", date(2026, 11, 21)) is None  # Nov 4 is 17 days back
    assert checks.comparison_day(CAL, "eq", date(2026, 11, 21), lookback_days=20) == date(2026, 11, 4)


def test_rows_loaded_before_today_are_left_out_of_todays_counts():
    rows = recs([["2026-11-23", "19:00:00", "A", "2026-11-22 19:00:11"],
                 ["2026-11-23", "10:05:00", "B", "2026-11-23 10:05:11"],
                 ["2026-11-23", "10:05:00", "C", None]])
    kept = checks.loaded_since(rows, ts(0, 0, day=23))
    assert [r["secid"] for r in kept] == ["B", "C"]
    assert checks.newest_interval_secids(kept) == ("10:05:00", 2)


def test_rows_loaded_on_one_day():
    rows = recs([["2026-11-23", "19:00:00", "A", "2026-11-22 19:00:11"],
                 ["2026-11-23", "19:00:00", "B", "2026-11-21 19:00:11"],
                 ["2026-11-23", "10:05:00", "C", "2026-11-23 10:05:11"]])
    kept = checks.loaded_since(rows, ts(0, 0, day=22), ts(0, 0, day=23))
    assert [r["secid"] for r in kept] == ["A"]
