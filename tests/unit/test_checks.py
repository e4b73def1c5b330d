from datetime import date, datetime

import pandas as pd
import pytest

from exporter import checks
from exporter.clock import MSK


def frame(rows, columns=("tradedate", "tradetime", "secid", "systime")):
    return pd.DataFrame(rows, columns=list(columns))


def test_rows_use_bucket_end_and_systime_in_moscow():
    rows = checks.rows_from_frame(frame([["2026-11-25", "10:05:00", "SBER", "2026-11-25 10:05:11"]]))
    assert rows.buckets == (datetime(2026, 11, 25, 10, 5, tzinfo=MSK).timestamp(),)
    assert checks.newest(rows)[1] - checks.newest(rows)[0] == 11


def test_newest_picks_the_latest_bucket_whatever_the_order():
    rows = checks.rows_from_frame(frame([
        ["2026-11-25", "10:10:00", "ri", "2026-11-25 10:10:07"],
        ["2026-11-25", "10:05:00", "ri", "2026-11-25 10:05:05"],
        ["2026-11-25", "10:10:00", "ri", "2026-11-25 10:10:09"],
    ]))
    bucket, systime = checks.newest(rows)
    assert bucket == datetime(2026, 11, 25, 10, 10, tzinfo=MSK).timestamp()
    assert systime - bucket == 9


def test_bad_time_values_are_a_rows_error_not_a_crash():
    with pytest.raises(checks.RowsError, match="tradedate/tradetime"):
        checks.rows_from_frame(frame([["2026-11-25", "25:99:00", "SBER", "2026-11-25 10:05:11"]]))
    with pytest.raises(checks.RowsError, match="systime"):
        checks.rows_from_frame(frame([["2026-11-25", "10:05:00", "SBER", None]]))
    with pytest.raises(checks.RowsError, match="missing column"):
        checks.rows_from_frame(frame([["2026-11-25", "10:05:00", "SBER"]], ("tradedate", "tradetime", "secid")))


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
    assert checks.max_secids_per_interval(obstats) == 3
    trades = pd.DataFrame({"secid": ["SiZ6", "RIZ6", "SiZ6"], "val": [5.0, 7.0, 4.0]})
    assert checks.most_liquid(trades) == "SiZ6"
    assert checks.has_rows_for_day(frame([["2026-11-25", "18:40:00", "SBER", "x"]]), date(2026, 11, 25))
    assert not checks.has_rows_for_day(frame([["2026-11-24", "18:40:00", "SBER", "x"]]), date(2026, 11, 25))


def test_missing_runs_split_where_data_arrived():
    due = [datetime(2026, 11, 25, 10, m, tzinfo=MSK) for m in (5, 10, 15, 20, 25, 30)]
    seen = [due[0].timestamp(), due[3].timestamp()]
    assert checks.missing_runs(due, seen) == [[due[1], due[2]], [due[4], due[5]]]
    assert checks.missing_runs(due, [b.timestamp() for b in due]) == []
