"""Sandbox ISS data generation and publish timing (no HTTP)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from exporter.calendar import load_calendar
from exporter.clock import MSK, ManualClock
from sandbox.faults import FaultError, Faults
from sandbox.issdata import COLUMNS, HI2_METRICS, PROBES, DataSource

from ..calendars import calendar_text

DAY = date(2026, 11, 25)          # a Wednesday
HOLIDAY = date(2026, 11, 26)      # made a holiday in the test calendar

CALENDAR = calendar_text("2026-11-26: holiday")


@pytest.fixture(scope="module")
def calendar(tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "calendar.yml"
    path.write_text(CALENDAR)
    return load_calendar(str(path))


@pytest.fixture(scope="module")
def source(calendar):
    return DataSource(lambda: calendar, scale=1, seed=1)


def test_column_sets_follow_iss():
    eq = COLUMNS[("eq", "tradestats")]
    fx = COLUMNS[("fx", "tradestats")]
    fo = COLUMNS[("fo", "tradestats")]
    # iss-api.md §11 "column casing": SYSTIME upper case in SuperCandles and HI2 (eq index 22, fo 32)
    assert len(eq) == 27 and eq.index("SYSTIME") == 22 and eq[-1] == "sec_pr_close"
    assert len(fx) == 27 and fx[-1] == "SYSTIME" and set(fx) == set(eq)
    assert len(fo) == 33 and fo[3] == "asset_code" and fo.index("SYSTIME") == 32
    assert fo[fo.index("pr_vwap_s") + 1:fo.index("sec_pr_open")] == ["im", "oi_open", "oi_high", "oi_low", "oi_close"]
    assert len(COLUMNS[("eq", "orderstats")]) == 26
    assert len(COLUMNS[("eq", "obstats")]) == 21
    assert len(COLUMNS[("fo", "obstats")]) == 35
    for market in ("eq", "fx"):
        assert COLUMNS[(market, "hi2")] == ["tradedate", "tradetime", "secid", "metric", "value", "reference",
                                            "SYSTIME"]
    assert COLUMNS[("fo", "hi2")] == ["tradedate", "tradetime", "secid", "asset_code", "metric", "value",
                                      "reference", "SYSTIME"]                  # §11 "HI2 (FO)"
    assert COLUMNS[("fo", "futoi")] == ["sess_id", "seqnum", "tradedate", "tradetime", "ticker", "clgroup", "pos",
                                        "pos_long", "pos_short", "pos_long_num", "pos_short_num", "systime",
                                        "trade_session_date"]
    for (_, dataset), columns in COLUMNS.items():
        lower = [c for c in columns if c != "SYSTIME"]
        assert all(c == c.lower() for c in lower) and len(set(columns)) == len(columns)
        assert ("SYSTIME" in columns) == (dataset != "futoi")


def test_universe_sizes_and_scale(calendar):
    one = DataSource(lambda: calendar, scale=1, seed=1)
    three = DataSource(lambda: calendar, scale=3, seed=1)
    sizes = {m: len(one.universe(m)) for m in ("eq", "fx", "fo", "futoi")}
    assert sizes["eq"] == 250 and sizes["fx"] == 20 and 240 <= sizes["fo"] <= 280 and sizes["futoi"] == 40
    assert len(three.universe("eq")) == 750 and len(three.universe("fx")) == 60
    assert 3 * 240 <= len(three.universe("fo")) <= 3 * 280
    for market in ("eq", "fx", "fo", "futoi"):
        secids = [i.secid for i in three.universe(market)]
        assert len(set(secids)) == len(secids)
        assert PROBES[market] in secids
    assert {"SBER", "GAZP", "LKOH"} <= {i.secid for i in one.universe("eq")}
    assert {"CNYRUB_TOM", "USD000UTSTOM"} <= {i.secid for i in one.universe("fx")}
    fo = {i.secid: i for i in one.universe("fo")}
    assert {"SiZ6", "RIZ6", "BRF7"} <= set(fo) and fo["SiZ6"].asset_code == "Si" and fo["BRF7"].asset_code == "BR"
    assert {"si", "ri", "br"} <= {i.secid for i in one.universe("futoi")}


def test_buckets_are_calendar_end_times(source, calendar):
    for market, first, last in (("eq", "10:05:00", "23:50:00"), ("fx", "07:05:00", "19:00:00"),
                                ("fo", "09:05:00", "23:50:00")):
        frame = source.frame(market, "tradestats", DAY)
        assert [b.end for b in frame.buckets] == calendar.expected_buckets(market, DAY)
        assert frame.buckets[0].tradetime == first and frame.buckets[-1].tradetime == last
        for bucket in frame.buckets:
            assert bucket.secids == sorted(bucket.secids)
            assert all(row[1] == bucket.tradetime and row[0] == DAY.isoformat() for row in bucket.rows)
    eq = source.frame("eq", "tradestats", DAY)
    assert "18:45:00" not in {b.tradetime for b in eq.buckets}   # the gap between sessions
    assert source.frame("eq", "tradestats", HOLIDAY).buckets == []
    assert source.frame("eq", "hi2", HOLIDAY).buckets == []


def test_probes_every_bucket_illiquid_skip(source):
    for market, dataset in (("eq", "tradestats"), ("fx", "obstats"), ("fo", "tradestats"), ("fo", "futoi")):
        frame = source.frame(market, dataset, DAY)
        probe = PROBES["futoi" if dataset == "futoi" else market]
        assert all(probe in b.secids for b in frame.buckets)
    eq = source.frame("eq", "tradestats", DAY)
    assert 18000 <= eq.rows_total <= 26000                      # a realistic EQ day
    assert min(len(b.rows) for b in eq.buckets) < 250            # illiquid ones skip buckets
    fo = source.frame("fo", "tradestats", DAY)
    assert 7000 <= fo.rows_total <= 15000
    val = fo.columns.index("val")
    for bucket in fo.buckets:                                     # SiZ6 is the most liquid by val
        assert max(bucket.rows, key=lambda row: row[val])[2] == "SiZ6"
    futoi = source.frame("fo", "futoi", DAY)
    ri_rows = [row for b in futoi.buckets for row in b.rows if row[4] == "ri"]
    assert len(ri_rows) == 2 * len(futoi.buckets) and {row[5] for row in ri_rows} == {"FIZ", "YUR"}


def test_generation_is_deterministic(calendar):
    first = DataSource(lambda: calendar, seed=7).frame("eq", "obstats", DAY)
    second = DataSource(lambda: calendar, seed=7).frame("eq", "obstats", DAY)
    other = DataSource(lambda: calendar, seed=8).frame("eq", "obstats", DAY)
    assert [b.rows for b in first.buckets] == [b.rows for b in second.buckets]
    assert [b.uniforms for b in first.buckets] == [b.uniforms for b in second.buckets]
    assert [b.rows for b in first.buckets] != [b.rows for b in other.buckets]


def test_hi2_rows_and_publish_moment(source):
    frame = source.frame("eq", "hi2", DAY)
    assert len(frame.buckets) == 1
    bucket = frame.buckets[0]
    assert bucket.tradetime == "18:40:00"
    assert bucket.base_publish_ts == datetime(2026, 11, 25, 18, 45, 40, tzinfo=MSK).timestamp()
    metrics = {row[3] for row in bucket.rows}
    assert metrics == set(HI2_METRICS)
    assert len(bucket.rows) == len(set(bucket.secids)) * len(HI2_METRICS)
    assert source.frame("fx", "hi2", DAY).buckets[0].tradetime == "19:00:00"


def _clock(hour: int, minute: int, second: int = 0) -> ManualClock:
    return ManualClock(datetime(2026, 11, 25, hour, minute, second, tzinfo=MSK))


def test_publish_delay_default_uniform(source):
    faults = Faults(_clock(12, 0))
    frame = source.frame("eq", "tradestats", DAY)
    plan = faults.plan("eq", "tradestats", DAY)
    delays = [plan.publish_ts(b.end_ts, b.tradetime, b.uniforms) - b.end_ts for b in frame.buckets]
    assert all(5 <= d <= 15 and d == int(d) for d in delays)
    assert len(set(delays)) > 5                                  # spread, not a constant
    again = Faults(_clock(9, 0)).plan("eq", "tradestats", DAY)
    assert delays == [again.publish_ts(b.end_ts, b.tradetime, b.uniforms) - b.end_ts for b in frame.buckets]
    hi2 = source.frame("eq", "hi2", DAY).buckets[0]
    assert plan.publish_ts(hi2.end_ts, hi2.tradetime, hi2.uniforms, hi2.base_publish_ts) == hi2.base_publish_ts


def test_delay_profile_late_and_never(source):
    faults = Faults(_clock(12, 0))
    faults.set("delay_profile", base=[5, 15], late=[30, 90], late_share=0.3, never_share=0.1)
    frame = source.frame("eq", "obstats", DAY)
    plan = faults.plan("eq", "obstats", DAY)
    moments = [plan.publish_ts(b.end_ts, b.tradetime, b.uniforms) for b in frame.buckets]
    never = sum(m is None for m in moments)
    late = sum(m is not None and m - b.end_ts >= 30 for m, b in zip(moments, frame.buckets, strict=True))
    assert 3 <= never <= 35 and 20 <= late <= 80
    assert all(m is None or 5 <= m - b.end_ts <= 90 for m, b in zip(moments, frame.buckets, strict=True))
    # another market is not in scope of a scoped profile
    faults.set("delay_profile", market="fx", never_share=1.0)
    fx = source.frame("fx", "tradestats", DAY)
    assert all(faults.plan("fx", "tradestats", DAY).publish_ts(b.end_ts, b.tradetime, b.uniforms) is None
               for b in fx.buckets)


def test_stop_and_resume_windows(source):
    clock = _clock(11, 0)
    faults = Faults(clock)
    frame = source.frame("eq", "tradestats", DAY)
    base = faults.plan("eq", "tradestats", DAY)
    base_moments = [base.publish_ts(b.end_ts, b.tradetime, b.uniforms) for b in frame.buckets]
    faults.set("stop", market="eq")
    stop_ts = clock.timestamp()
    clock.advance(1800)
    stopped = faults.plan("eq", "tradestats", DAY)
    for bucket, moment in zip(frame.buckets, base_moments, strict=True):
        got = stopped.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms)
        assert got == (moment if moment <= stop_ts else None)
    assert faults.plan("fx", "tradestats", DAY).stops == []      # scoped to eq
    faults.clear("stop")
    resume_ts = clock.timestamp()
    resumed = faults.plan("eq", "tradestats", DAY)
    for bucket, moment in zip(frame.buckets, base_moments, strict=True):
        got = resumed.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms)
        if moment <= stop_ts:
            assert got == moment
        elif moment <= resume_ts:
            assert got == resume_ts                               # backlog carries the resume moment
        else:
            assert got == moment
    faults.reset()
    assert faults.plan("eq", "tradestats", DAY).stops == []


def test_slow_hi2_late_and_drops(source):
    clock = _clock(10, 0)
    faults = Faults(clock)
    frame = source.frame("fx", "tradestats", DAY)
    base = [faults.plan("fx", "tradestats", DAY).publish_ts(b.end_ts, b.tradetime, b.uniforms)
            for b in frame.buckets]
    faults.set("slow", market="fx", seconds=600)
    slowed = faults.plan("fx", "tradestats", DAY)
    for bucket, moment in zip(frame.buckets, base, strict=True):
        expected = moment + 600 if moment >= clock.timestamp() else moment
        assert slowed.publish_ts(bucket.end_ts, bucket.tradetime, bucket.uniforms) == expected
    hi2 = source.frame("eq", "hi2", DAY).buckets[0]
    faults.set("hi2_late", market="eq")
    held = faults.plan("eq", "hi2", DAY)
    assert held.publish_ts(hi2.end_ts, hi2.tradetime, hi2.uniforms, hi2.base_publish_ts) is None
    assert faults.plan("eq", "tradestats", DAY).stops == []      # only hi2 is held
    clock.set(datetime(2026, 11, 25, 19, 30, tzinfo=MSK))
    faults.clear("hi2_late")
    released = faults.plan("eq", "hi2", DAY)
    assert released.publish_ts(hi2.end_ts, hi2.tradetime, hi2.uniforms, hi2.base_publish_ts) == clock.timestamp()
    faults.set("drop_intervals", market="eq", intervals=["10:15", "10:20:00"], scope="all")
    faults.set("drop_intervals", market="eq", dataset="obstats", intervals=["11:00"])
    plan = faults.plan("eq", "obstats", DAY)
    assert plan.drop_all == {"10:15", "10:20"} and plan.drop_probe == {"11:00"}
    assert plan.publish_ts(hi2.end_ts, "10:15:00", (0.5, 0.5)) is None
    faults.set("drop_secids", market="fo", count=5, since="12:00")
    assert faults.plan("fo", "obstats", DAY).drop_secids[0] == 5
    assert faults.plan("fo", "orderstats", DAY).drop_secids is None   # default: tradestats + obstats
    with pytest.raises(FaultError):
        faults.set("nope")
    with pytest.raises(FaultError):
        faults.set("stop", market="xx")
    with pytest.raises(FaultError):
        faults.set("delay_profile", late_share=0.8, never_share=0.5)


def test_request_knob_counts():
    faults = Faults(_clock(12, 0))
    faults.set("http_error", status=503, count=2, market="eq")
    assert faults.take("http_error", "fx", "tradestats") is None
    assert faults.take("http_error", "eq", "tradestats")["status"] == 503
    assert faults.take("http_error", "eq", "obstats")["status"] == 503
    assert faults.take("http_error", "eq", "obstats") is None
    faults.set("empty")
    for _ in range(3):
        assert faults.take("empty", "fo", "futoi") == {}
    faults.clear()
    assert faults.take("empty", "fo", "futoi") is None
    assert faults.state()["active"] == {}


def test_moments_parse_today_and_iso():
    clock = _clock(12, 0)
    faults = Faults(clock)
    assert faults.moment("10:15") == datetime(2026, 11, 25, 10, 15, tzinfo=MSK).timestamp()
    assert faults.moment("2026-11-24T10:15:00+03:00") == (
        datetime(2026, 11, 25, 10, 15, tzinfo=MSK) - timedelta(days=1)).timestamp()
    assert faults.moment(None) == clock.timestamp()


def test_new_request_knobs_defaults_and_validation():
    faults = Faults(_clock(12, 0))
    faults.set("drip", count=1)
    assert faults.take("drip", "eq", "tradestats") == {"bytes_per_second": 1.0, "headers": False}
    assert faults.take("drip", "eq", "tradestats") is None
    faults.set("gzip_bomb")
    assert faults.take("gzip_bomb", "fo", "obstats") == {"unpacked_bytes": 1 << 30}
    faults.set("redirect", location="/x")
    assert faults.take("redirect", None, "calendar") == {"location": "/x", "status": 302}
    faults.set("error_message", count=1)
    assert faults.take("error_message", "eq", "hi2")["text"]
    faults.set("throttle", market="fx")
    assert faults.take("throttle", "eq", "tradestats") is None and faults.take("throttle", "fx", "hi2") == {}
    for name, params in [("drip", {"bytes_per_second": 0}), ("redirect", {}), ("redirect", {"location": "/x",
                         "status": 200}), ("gzip_bomb", {"unpacked_bytes": -1}), ("error_message", {"text": 1}),
                         ("bad_row", {"kind": "late"}), ("expire", {"market": "eq"}),
                         ("expire", {"day": "tomorrow"}), ("weekend_tradedate", {"mode": "sometimes"})]:
        with pytest.raises(FaultError):
            faults.set(name, **params)


def test_shape_knobs_in_the_plan(source):
    clock = _clock(12, 0)
    faults = Faults(clock)
    assert faults.plan("eq", "tradestats", DAY).bad_rows == []
    faults.set("bad_row", kind="off_grid", market="eq")
    faults.set("bad_row", kind="null_time", market="eq", dataset="obstats")
    assert [k for k, _, _ in faults.plan("eq", "obstats", DAY).bad_rows] == ["off_grid", "null_time"]
    assert faults.plan("fx", "obstats", DAY).bad_rows == []
    faults.clear("bad_row", market="eq", dataset="obstats", scoped=True)
    assert [k for k, _, _ in faults.plan("eq", "obstats", DAY).bad_rows] == ["off_grid"]
    faults.set("expire")
    assert faults.plan("fo", "tradestats", DAY).expire == ("SiZ6", None, DAY)
    assert faults.plan("fo", "futoi", DAY).expire is None                 # futoi is per underlying
    faults.set("secid_daypattern")
    assert faults.plan("eq", "obstats", DAY).daypattern and not faults.plan("eq", "hi2", DAY).daypattern
    assert not faults.plan("fo", "obstats", DAY).daypattern
    faults.set("weekend_tradedate", mode="next")
    assert faults.plan("fo", "futoi", DAY).weekend_next


def test_expiry_successor_and_day_pattern(source):
    assert source.successor("SiZ6") == "SiH7" and source.successor("sih7") == "SiM7"
    assert source.successor("BRF7") == "BRG7" and source.successor("SiM7") is None
    assert source.successor("NOPE") is None
    eq = source.daypattern("eq")
    assert eq("18:40:00") == set() and "SBER" not in eq("19:10:00") and len(eq("19:10:00")) == 250 - 85
    fx = source.daypattern("fx")
    assert fx("15:00:00") == set() and fx("15:05:00") == {"CNY000000TOD", "CNYRUBTODTOM"}
    assert fx("17:50:00") == {"CNY000000TOD", "CNYRUBTODTOM", "USD000000TOD", "EUR_RUB__TOD", "USDRUBTODTOM"}
    assert source.daypattern("fo") is None
