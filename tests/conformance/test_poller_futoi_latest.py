"""FUTOI polls with `latest=1` (config iss.latest_reads), both ways the unverified fact can go.

FUTOI has no cursor and ignores `start` (iss-api.md §11), so without `latest=1` every poll
downloads the whole day so far. Whether ISS honours `latest=1` on the per-ticker route is
unverified (§3; the official client comments it out for FUTOI). The exporter must see the
same buckets whether ISS honours it, ignores it (the answer is the whole day) or refuses it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import js

from .poller_iss import FUTOI, Exporter, FakeIss, at

PAIR = ("fo", "futoi")
ROUTE = "/iss/analyticalproducts/futoi/securities/RI.json"
ONLY_FUTOI = {"eq": {"enabled": False}, "fx": {"enabled": False}, "fo": {"enabled": True, "endpoints": ["futoi"]}}


def futoi_day(clock, mode: str, never: tuple = ()):
    """Rows published up to now (bucket T at T + 7 s), newest first; `latest=1` honoured
    (only the newest bucket's FIZ + YUR rows), ignored, or refused with HTTP 400."""
    def handler(path, query):
        now = clock.now()
        rows, bucket = [], at(9, 5)
        while bucket + timedelta(seconds=7) <= now and bucket.date() == now.date():
            if bucket.strftime("%H:%M") not in never:
                systime = (bucket + timedelta(seconds=7)).strftime("%Y-%m-%d %H:%M:%S")
                for group in ("FIZ", "YUR"):
                    rows.append([1, len(rows), bucket.strftime("%Y-%m-%d"), bucket.strftime("%H:%M:%S"), "RI",
                                 group, 100, 200, -100, 10, 5, systime, bucket.strftime("%Y-%m-%d")])
            bucket += timedelta(minutes=5)
        rows.reverse()  # newest first
        if query.get("latest") == "1" and mode == "honoured":
            rows = rows[:2]
        return {"futoi": {"columns": FUTOI, "data": rows[:1000]},
                "futoi.dates": {"columns": ["from", "till"], "data": [["2020-01-03", now.strftime("%Y-%m-%d")]]}}
    return handler


def serve(iss, clock, mode: str, never: tuple = ()) -> None:
    handler = futoi_day(clock, mode, never)

    def reply(seen):
        if seen.params.get("latest") == "1" and mode == "refused":
            return js({"error": "latest is not supported on this route"}, status=400)
        if seen.path.startswith(ROUTE):
            return js(handler(seen.path, seen.params))
        return js({}, status=404)
    iss.reply = reply


@pytest.fixture
def iss():
    fake = FakeIss()
    yield fake
    fake.close()


def _latest_flags(iss) -> list[bool]:
    return [q.get("latest") == "1" for path, q in iss.requests if path == ROUTE]


@pytest.mark.parametrize("mode", ["honoured", "ignored", "refused"])
def test_every_bucket_is_seen_whether_iss_honours_ignores_or_refuses_latest(tmp_path, iss, mode):
    exporter = Exporter(tmp_path, iss, at(9, 0), ONLY_FUTOI)
    serve(iss, exporter.clock, mode)
    try:
        for minute in range(10, 60, 5):
            state = exporter.poll(PAIR, at(9, minute, 20))
            assert state.up, state.last_error
        assert len(state.seen_buckets) == 11  # 09:05 .. 09:55, as without latest=1
        assert exporter.value("algopack_last_tradetime_timestamp_seconds", market="fo",
                              endpoint="futoi") == at(9, 55).timestamp()
        assert exporter.value("algopack_publish_delay_seconds", market="fo", endpoint="futoi") == 7
        flags = _latest_flags(iss)
        if mode == "refused":
            # the first poll reads the day (nothing seen yet); the second asks latest=1 once,
            # is refused, and reads the day in the same poll; never again after that
            assert flags == [False, True, False] + [False] * 8
        else:
            # first poll: the whole day (nothing known yet); then one latest=1 request a poll
            assert flags == [False] + [True] * 9
    finally:
        exporter.close()


def test_two_buckets_since_the_last_poll_read_the_day_whole_in_the_same_poll(tmp_path, iss):
    exporter = Exporter(tmp_path, iss, at(9, 0), ONLY_FUTOI)
    serve(iss, exporter.clock, "honoured")
    try:
        exporter.poll(PAIR, at(9, 10, 20))
        state = exporter.poll(PAIR, at(9, 20, 20))  # 09:15 and 09:20 published since: latest shows 09:20
        assert set(state.seen_buckets) == {at(9, m).timestamp() for m in (5, 10, 15, 20)}
        assert _latest_flags(iss) == [False, True, False]
    finally:
        exporter.close()


def test_a_hole_whose_row_may_still_come_is_read_whole_until_its_slo_window_ends(tmp_path, iss):
    """09:15 never comes: the polls after 09:20 read the day whole (a late 09:15 row would
    count as late, not missing, within grace + the SLO window: 120 + 1800 s), then latest=1."""
    exporter = Exporter(tmp_path, iss, at(9, 0), ONLY_FUTOI)
    serve(iss, exporter.clock, "honoured", never=("09:15",))
    try:
        flags_at = {}
        for minute in range(10, 100, 5):
            before = len(_latest_flags(iss))
            state = exporter.poll(PAIR, at(9 + minute // 60, minute % 60, 20))
            flags_at[minute] = _latest_flags(iss)[before:]
        assert at(9, 15).timestamp() not in state.seen_buckets
        assert len(state.seen_buckets) == 19 - 1  # 09:05 .. 10:35 but 09:15
        assert flags_at[15] == [True]                 # 09:15 not there yet: nothing known missing
        assert flags_at[20] == [True, False]          # 09:20 came, 09:15 did not: the whole day
        assert all(flags_at[m] == [False] for m in range(25, 45, 5))   # 09:15 may still come
        assert flags_at[50] == [True] and flags_at[95] == [True]       # 09:15 + 1920 s passed
    finally:
        exporter.close()


def test_latest_reads_off_never_sends_latest(tmp_path, iss):
    exporter = Exporter(tmp_path, iss, at(9, 0), ONLY_FUTOI, iss_options={"latest_reads": False})
    serve(iss, exporter.clock, "honoured")
    try:
        for minute in (10, 15, 20):
            state = exporter.poll(PAIR, at(9, minute, 20))
        assert len(state.seen_buckets) == 4
        assert _latest_flags(iss) == [False, False, False]
    finally:
        exporter.close()
