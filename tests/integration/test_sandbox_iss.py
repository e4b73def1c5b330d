"""Sandbox ISS over HTTP: routes, paging, auth modes and every fault knob."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import pytest
import requests

from exporter.clock import MSK, ManualClock
from sandbox.faults import FaultError
from sandbox.iss import SandboxIss
from sandbox.procs import ManagedProcess, free_port, python_module, wait_http

from ..calendars import calendar_text

pytestmark = pytest.mark.integration

CALENDAR = calendar_text("2026-11-26: holiday")
DAY = "2026-11-25"
TS = "/iss/datashop/algopack/eq/tradestats.json"


def msk(hhmm: str, day: int = 25) -> datetime:
    parts = [int(p) for p in hhmm.split(":")] + [0]
    return datetime(2026, 11, day, parts[0], parts[1], parts[2], tzinfo=MSK)


@pytest.fixture(scope="module")
def calendar_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sandbox") / "calendar.yml"
    path.write_text(CALENDAR)
    return path


@pytest.fixture(scope="module")
def server(calendar_file):
    clock = ManualClock(msk("12:00"))
    iss = SandboxIss(str(calendar_file), clock).start()
    yield iss
    iss.stop()


@pytest.fixture
def iss(server):
    server.faults.reset()
    server.reset_stats()
    server.clock.set(msk("12:00"))
    yield server
    server.faults.reset()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def get(http, iss, path, **params):
    return http.get(iss.url + path, params=params, timeout=10)


def fetch_all(http, iss, path, **params):
    rows, start = [], 0
    while True:
        body = get(http, iss, path, start=start, **params).json()
        block = "futoi" if "futoi" in path else "data"
        page = body[block]["data"]
        total = body[f"{block}.cursor"]["data"][0][1]
        rows.extend(page)
        if not page:
            return rows, total, body[block]["columns"]
        start += len(page)


def control(http, iss, method, path, body=None):
    response = http.request(method, iss.url + path, data=None if body is None else json.dumps(body), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# ----- routes and data -------------------------------------------------------------------

def test_day_route_shape_paging_and_order(iss, http):
    response = get(http, iss, TS, date=DAY)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"data", "data.cursor", "data.dates"}
    assert body["data.cursor"]["columns"] == ["INDEX", "TOTAL", "PAGESIZE"]
    index, total, pagesize = body["data.cursor"]["data"][0]
    assert (index, pagesize) == (0, 1000) and total > 1000 and len(body["data"]["data"]) == 1000
    assert body["data.dates"]["data"] == [[DAY, DAY]]
    assert "SYSTIME" in body["data"]["metadata"]                 # §11 column casing
    rows, total_again, columns = fetch_all(http, iss, TS, date=DAY)
    assert len(rows) == total == total_again
    t, s = columns.index("tradetime"), columns.index("secid")
    keys = [(row[t], row[s]) for row in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert max(row[t] for row in rows) <= "11:55:00"             # nothing from the future
    # append-only: later the same prefix, more rows
    iss.clock.set(msk("13:00"))
    later, later_total, _ = fetch_all(http, iss, TS, date=DAY)
    assert later_total > total and later[:len(rows)] == rows
    # missing date = sandbox today
    assert get(http, iss, TS).json()["data.cursor"]["data"][0][1] == later_total


def test_publish_timing_and_systime(iss, http):
    iss.clock.set(msk("10:05:04"))
    assert get(http, iss, TS).json()["data.cursor"]["data"][0][1] == 0
    iss.clock.set(msk("10:05:15"))
    rows = get(http, iss, TS, latest=1).json()["data"]["data"]
    columns = get(http, iss, TS).json()["data"]["columns"]
    assert rows and {row[columns.index("tradetime")] for row in rows} == {"10:05:00"}
    systime = datetime.strptime(rows[0][columns.index("SYSTIME")], "%Y-%m-%d %H:%M:%S").replace(tzinfo=MSK)
    assert 5 <= (systime - msk("10:05")).total_seconds() <= 15
    assert "SBER" in {row[2] for row in rows}


def test_latest_options_and_columns(iss, http):
    body = get(http, iss, TS, latest=1, **{"iss.only": "data", "iss.meta": "off",
                                           "data.columns": "tradetime,secid,systime"}).json()
    assert set(body) == {"data"} and "metadata" not in body["data"]
    assert body["data"]["columns"] == ["tradetime", "secid", "SYSTIME"]
    assert {row[0] for row in body["data"]["data"]} == {"11:55:00"}
    assert "SBER" in {row[1] for row in body["data"]["data"]}
    body = get(http, iss, TS, **{"iss.only": "data,data.cursor"}).json()
    assert set(body) == {"data", "data.cursor"}


def test_secid_routes_hi2_futoi(iss, http):
    body = get(http, iss, "/iss/datashop/algopack/eq/tradestats/SBER.json", **{"from": DAY, "till": DAY}).json()
    assert body["data.cursor"]["data"][0][1] == 23                  # 10:05 … 11:55, every bucket
    assert {row[2] for row in body["data"]["data"]} == {"SBER"}
    latest = get(http, iss, "/iss/datashop/algopack/eq/tradestats/SBER.json", latest=1).json()
    assert [row[1] for row in latest["data"]["data"]] == ["11:55:00"]
    fo = get(http, iss, "/iss/datashop/algopack/fo/tradestats.json", **{"iss.only": "data"}).json()["data"]
    assert fo["columns"][3] == "asset_code" and len(fo["columns"]) == 33
    for path in ("/iss/analyticalproducts/futoi/securities/RI.json", "/iss/analyticalproducts/futoi/securities/ri.json"):
        futoi = get(http, iss, path, latest=1).json()
        assert set(futoi) == {"futoi", "futoi.dates"}
        assert sorted(row[5] for row in futoi["futoi"]["data"]) == ["FIZ", "YUR"]
        assert {row[4] for row in futoi["futoi"]["data"]} == {"ri"}
    whole_day = get(http, iss, "/iss/analyticalproducts/futoi/securities.json", date=DAY).json()
    assert len(whole_day["futoi"]["data"]) == 1000                   # capped, no cursor
    hi2 = "/iss/datashop/algopack/eq/hi2.json"
    assert get(http, iss, hi2).json()["data.cursor"]["data"][0][1] == 0
    iss.clock.set(msk("18:45:40"))
    body = get(http, iss, hi2).json()
    assert body["data.cursor"]["data"][0][1] > 0
    assert body["data"]["data"][0][1] == "18:40:00" and body["data"]["data"][0][6] == f"{DAY} 18:45:40"
    assert body["data"]["columns"][6] == "SYSTIME"
    fo_hi2 = get(http, iss, "/iss/datashop/algopack/fo/hi2.json").json()["data"]
    assert fo_hi2["columns"][:4] == ["tradedate", "tradetime", "secid", "asset_code"]   # §11 HI2 (FO)
    iss.clock.set(msk("20:00", day=26))                              # holiday: nothing
    assert get(http, iss, TS).json()["data.cursor"]["data"][0][1] == 0
    assert get(http, iss, hi2).json()["data.cursor"]["data"][0][1] == 0
    assert get(http, iss, "/iss/datashop/algopack/eq/nope.json").status_code == 404


def test_calendar_routes_and_reload(iss, http, calendar_file):
    body = get(http, iss, "/iss/calendars.json", **{"from": "2026-11-26", "till": "2026-11-27"}).json()
    columns = body["off_days"]["columns"]
    row = dict(zip(columns, body["off_days"]["data"][0], strict=True))
    assert row["tradedate"] == "2026-11-26"
    assert (row["stock_workday"], row["futures_workday"], row["currency_workday"]) == (0, 0, 0)
    body = get(http, iss, "/iss/calendars/futures.json", show_all_days=1, **{"from": "2026-11-23",
                                                                             "till": "2026-11-29"}).json()
    assert [row[1] for row in body["off_days"]["data"]] == [1, 1, 1, 0, 1, 0, 0]
    # the sandbox follows calendar file changes (mtime)
    original = calendar_file.read_text()
    try:
        calendar_file.write_text(original.replace("2026-11-26: holiday", "2026-11-25: holiday"))
        os.utime(calendar_file, (time.time() + 5, time.time() + 5))
        deadline = time.monotonic() + 5
        while get(http, iss, TS).json()["data.cursor"]["data"][0][1] != 0:
            assert time.monotonic() < deadline, "calendar change not picked up"
            time.sleep(0.2)
    finally:
        calendar_file.write_text(original)
        os.utime(calendar_file, (time.time() + 10, time.time() + 10))
        time.sleep(0.6)
    assert get(http, iss, TS).json()["data.cursor"]["data"][0][1] > 0


def test_calendar_routes_are_the_isscalendar_fake(iss, http):
    from datetime import date

    from sandbox.isscalendar import calendar_answer
    for path in ("/iss/calendars.json", "/iss/calendars/futures.json", "/iss/calendars/stock/session.json",
                 "/iss/calendars/futures/session.json", "/iss/calendars/currency/session.json"):
        query = {"from": "2026-11-23", "till": "2026-11-29"}
        response = get(http, iss, path, **query)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
        assert response.json() == calendar_answer(iss.calendar, path, query, date(2026, 11, 25)), path
    assert get(http, iss, "/iss/calendars.json", **{"from": "2026-01-01", "till": "2027-06-01"}).status_code == 400
    assert get(http, iss, "/iss/calendars/bonds/session.json").status_code == 404
    routes = {(r["kind"], r["market"]): r["requests"] for r in iss.stats()["routes"]}
    assert routes[("calendar", "fo")] == 2 and routes[("calendar", "eq")] == 1 and routes[("calendar", None)] == 2


# ----- control API, stats ---------------------------------------------------------------

def test_control_api_stats_clock_health(iss, http):
    assert http.get(iss.url + "/sandbox/health").status_code == 200
    assert control(http, iss, "GET", "/sandbox/clock")["now"] == msk("12:00").isoformat()
    control(http, iss, "POST", "/sandbox/stats/reset")
    get(http, iss, TS)
    get(http, iss, TS, start=1000)
    get(http, iss, "/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json")
    stats = control(http, iss, "GET", "/sandbox/stats")
    eq = next(r for r in stats["routes"] if r["kind"] == "day" and r["dataset"] == "tradestats")
    assert eq["market"] == "eq" and eq["requests"] == 2 and eq["status"] == {"200": 2} and eq["bytes"] > 100000
    fx = next(r for r in stats["routes"] if r["kind"] == "secid")
    assert (fx["market"], fx["dataset"], fx["requests"]) == ("fx", "obstats", 1)
    assert stats["total"]["requests"] == 3 and iss.stats()["total"]["requests"] == 3
    control(http, iss, "POST", "/sandbox/stats/reset")
    assert control(http, iss, "GET", "/sandbox/stats")["total"]["requests"] == 0
    state = control(http, iss, "POST", "/sandbox/faults", {"empty": {"market": "fo"}, "slow": {"seconds": 60}})
    assert state["active"]["empty"][0]["market"] == "fo" and state["windows"][0]["knob"] == "slow"
    assert http.post(iss.url + "/sandbox/faults", data='{"bogus": {}}').status_code == 400
    assert http.post(iss.url + "/sandbox/faults", data='{"stop": {"market": "zz"}}').status_code == 400
    state = control(http, iss, "DELETE", "/sandbox/faults")
    assert state["active"] == {} and state["windows"][0]["until"] is not None
    assert control(http, iss, "DELETE", "/sandbox/faults?history=1")["windows"] == []


# ----- data knobs -------------------------------------------------------------------------

def test_stop_and_resume(iss, http):
    before, total, columns = fetch_all(http, iss, TS)
    control(http, iss, "POST", "/sandbox/faults", {"stop": {"market": "eq"}})
    iss.clock.set(msk("12:30"))
    assert fetch_all(http, iss, TS)[0] == before                     # nothing new, nothing lost
    assert get(http, iss, "/iss/datashop/algopack/fx/tradestats.json").json()["data.cursor"]["data"][0][1] > 0
    fx_latest = get(http, iss, "/iss/datashop/algopack/fx/tradestats.json", latest=1).json()["data"]["data"]
    assert fx_latest[0][1] == "12:25:00"                              # fx unaffected
    control(http, iss, "DELETE", "/sandbox/faults/stop")
    after, _, _ = fetch_all(http, iss, TS)
    assert after[:len(before)] == before and len(after) > len(before)
    sys_idx, t_idx = columns.index("SYSTIME"), columns.index("tradetime")
    backlog = {row[sys_idx] for row in after[len(before):] if row[t_idx] < "12:25:00"}
    assert backlog == {f"{DAY} 12:30:00"}                            # systime = resume moment


def test_slow_and_delay_profile(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"slow": {"market": "eq", "dataset": "tradestats",
                                                             "seconds": 600}})
    iss.clock.set(msk("12:08"))
    assert get(http, iss, TS, latest=1).json()["data"]["data"][0][1] == "11:55:00"
    assert get(http, iss, "/iss/datashop/algopack/eq/obstats.json", latest=1).json()["data"]["data"][0][1] == "12:05:00"
    iss.clock.set(msk("12:15:16"))
    assert get(http, iss, TS, latest=1).json()["data"]["data"][0][1] == "12:05:00"
    control(http, iss, "DELETE", "/sandbox/faults?history=1")
    control(http, iss, "POST", "/sandbox/faults", {"delay_profile": {"market": "fx", "never_share": 1.0}})
    assert get(http, iss, "/iss/datashop/algopack/fx/obstats.json").json()["data.cursor"]["data"][0][1] == 0


def test_drop_intervals_probe_and_all(iss, http):
    sber = "/iss/datashop/algopack/eq/tradestats/SBER.json"
    control(http, iss, "POST", "/sandbox/faults", {"drop_intervals": {"market": "eq", "dataset": "tradestats",
                                                                       "intervals": ["10:15", "11:00"]}})
    times = [row[1] for row in get(http, iss, sber).json()["data"]["data"]]
    assert len(times) == 21 and "10:15:00" not in times and "11:00:00" not in times
    day = get(http, iss, TS).json()
    assert "10:15:00" in {row[1] for row in fetch_all(http, iss, TS)[0]}   # others still there
    assert day["data.cursor"]["data"][0][1] > 0
    control(http, iss, "POST", "/sandbox/faults", {"drop_intervals": {"market": "eq", "dataset": "tradestats",
                                                                       "intervals": ["10:20"], "scope": "all"}})
    assert "10:20:00" not in {row[1] for row in fetch_all(http, iss, TS)[0]}


def test_drop_secids(iss, http):
    path = "/iss/datashop/algopack/fo/obstats.json"
    before = {row[2] for row in get(http, iss, path, latest=1).json()["data"]["data"]}
    control(http, iss, "POST", "/sandbox/faults", {"drop_secids": {"market": "fo", "dataset": "obstats",
                                                                    "count": 40, "since": "11:00"}})
    after_rows = fetch_all(http, iss, path)[0]
    latest = {row[2] for row in after_rows if row[1] == "11:55:00"}
    early = {row[2] for row in after_rows if row[1] == "10:55:00"}
    assert len(latest) <= len(before) - 30 and "SiZ6" in latest
    assert len(early) > len(latest)                                  # earlier buckets keep them


def test_hi2_late_hold_and_seconds(iss, http):
    hi2 = "/iss/datashop/algopack/eq/hi2.json"
    control(http, iss, "POST", "/sandbox/faults", {"hi2_late": {"market": "eq"}})
    iss.clock.set(msk("19:10"))
    assert get(http, iss, hi2).json()["data.cursor"]["data"][0][1] == 0
    assert get(http, iss, "/iss/datashop/algopack/fx/hi2.json").json()["data.cursor"]["data"][0][1] > 0
    control(http, iss, "DELETE", "/sandbox/faults/hi2_late")
    rows = get(http, iss, hi2).json()["data"]["data"]
    assert rows and rows[0][6] == f"{DAY} 19:10:00"
    control(http, iss, "DELETE", "/sandbox/faults?history=1")
    iss.clock.set(msk("18:00"))
    control(http, iss, "POST", "/sandbox/faults", {"hi2_late": {"market": "eq", "seconds": 1800}})
    iss.clock.set(msk("19:00"))
    assert get(http, iss, hi2).json()["data.cursor"]["data"][0][1] == 0
    iss.clock.set(msk("19:15:40"))
    assert get(http, iss, hi2).json()["data"]["data"][0][6] == f"{DAY} 19:15:40"


# ----- request knobs ----------------------------------------------------------------------

def test_http_error_counts_and_retry_after(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"http_error": {"status": 429, "retry_after": 7, "count": 2,
                                                                   "market": "eq"}})
    first = get(http, iss, TS)
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert get(http, iss, "/iss/datashop/algopack/fx/tradestats.json").status_code == 200
    assert get(http, iss, TS).status_code == 429
    assert get(http, iss, TS).status_code == 200
    control(http, iss, "POST", "/sandbox/faults", {"http_error": {"status": 502}})
    assert [get(http, iss, TS).status_code for _ in range(3)] == [502, 502, 502]
    control(http, iss, "DELETE", "/sandbox/faults/http_error")
    assert get(http, iss, TS).status_code == 200
    codes = next(r for r in iss.stats()["routes"] if (r["kind"], r["market"], r["dataset"]) == ("day", "eq", "tradestats"))["status"]
    assert codes.get("429") == 2 and codes.get("502") == 3


def test_hang(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"hang": {"seconds": 1.5, "count": 1}})
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(iss.url + TS, timeout=0.3)
    assert get(http, iss, TS).status_code == 200


def test_malformed_html_empty_missing_columns(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"malformed": {"count": 1}})
    bad = get(http, iss, TS)
    assert bad.status_code == 200
    with pytest.raises(ValueError):
        bad.json()
    control(http, iss, "POST", "/sandbox/faults", {"html": {"count": 1}})
    page = get(http, iss, TS)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert get(http, iss, TS).headers["Content-Type"].startswith("application/json")
    control(http, iss, "POST", "/sandbox/faults", {"empty": {"market": "eq"}})
    body = get(http, iss, TS).json()
    assert body["data"]["data"] == [] and body["data.cursor"]["data"][0][1] == 0
    assert get(http, iss, "/iss/datashop/algopack/fo/obstats.json").json()["data"]["data"]
    control(http, iss, "DELETE", "/sandbox/faults")
    control(http, iss, "POST", "/sandbox/faults", {"missing_columns": {"columns": ["systime"]}})
    body = get(http, iss, TS).json()
    assert "systime" not in body["data"]["columns"] and len(body["data"]["data"][0]) == 26


def test_break_paging(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"break_paging": {"market": "eq"}})
    assert get(http, iss, TS).status_code == 200
    assert get(http, iss, TS, start=1000).status_code == 500
    assert get(http, iss, "/iss/datashop/algopack/fx/obstats.json", start=1000).status_code == 200


# ----- auth ----------------------------------------------------------------------------------

def test_passport_cookie_flow_expiry_and_html(calendar_file):
    clock = ManualClock(msk("12:00"))
    with SandboxIss(str(calendar_file), clock, auth="passport", passport_login="user",
                    passport_password="secret") as iss, requests.Session() as http:
        assert http.get(iss.url + TS).status_code == 401
        assert http.get(iss.url + "/authenticate", auth=("user", "wrong")).status_code == 401
        assert "MicexPassportCert" not in http.cookies
        response = http.get(iss.url + "/authenticate", auth=("user", "secret"))
        assert response.status_code == 200 and http.cookies.get("MicexPassportCert")
        assert http.get(iss.url + TS).status_code == 200
        control(http, iss, "POST", "/sandbox/faults", {"expire_auth": {}})
        assert http.get(iss.url + TS).status_code == 401
        http.get(iss.url + "/authenticate", auth=("user", "secret"))
        assert http.get(iss.url + TS).status_code == 200
        control(http, iss, "POST", "/sandbox/faults", {"cookie_ttl": {"seconds": 3600}})
        clock.advance(3601)
        assert http.get(iss.url + TS).status_code == 401
        control(http, iss, "POST", "/sandbox/faults", {"auth_html": {}})
        page = http.get(iss.url + TS)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        http.get(iss.url + "/authenticate", auth=("user", "secret"))
        assert http.get(iss.url + TS).headers["Content-Type"].startswith("application/json")
        assert requests.get(iss.url + "/sandbox/health").status_code == 200   # control needs no auth


def test_apikey_bearer(calendar_file):
    with SandboxIss(str(calendar_file), ManualClock(msk("12:00")), auth="apikey", api_key="k-123") as iss:
        assert requests.get(iss.url + TS).status_code == 401
        assert requests.get(iss.url + TS, headers={"Authorization": "Bearer nope"}).status_code == 401   # §11
        ok = requests.get(iss.url + TS, headers={"Authorization": "Bearer k-123"})
        assert ok.status_code == 200 and ok.json()["data"]["data"]


# ----- the command line ---------------------------------------------------------------------

def test_cli_process(calendar_file, tmp_path):
    port = free_port()
    spec = f"start={msk('12:00').isoformat()},speed=1,anchor={time.time():.3f}"
    argv = python_module("sandbox.iss", "--listen", f"127.0.0.1:{port}", "--calendar", str(calendar_file),
                         "--clock", spec, "--auth", "apikey", "--publish-delay", "20:20")
    with ManagedProcess("sandbox-iss", argv, tmp_path / "iss.log", env={"SANDBOX_API_KEY": "cli-key"}) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/sandbox/health", timeout=20, proc=proc)
        assert f"sandbox-iss listening on {url}" in proc.tail()
        assert requests.get(url + "/sandbox/clock", timeout=5).json()["spec"].startswith("start=2026-11-25T12:00")
        body = requests.get(url + TS, params={"latest": 1}, headers={"Authorization": "Bearer cli-key"},
                            timeout=10).json()
        row = body["data"]["data"][0]
        assert row[1] == "11:55:00" and row[22] == f"{DAY} 11:55:20"
    assert "cli-key" not in (tmp_path / "iss.log").read_text()


# ----- real-ISS defaults (iss-api.md §11) ------------------------------------------------------

FUTOI_RI = "/iss/analyticalproducts/futoi/securities/ri.json"
FUTOI_DAY = "/iss/analyticalproducts/futoi/securities.json"


def _requests(iss, kind, market, dataset):
    return sum(r["requests"] for r in iss.stats()["routes"]
               if (r["kind"], r["market"], r["dataset"]) == (kind, market, dataset))


def _expected_futoi(iss, day, now, secid=None):
    """What §11 says FUTOI answers: newest bucket first, rows of a bucket together, <= 1000."""
    rows = []
    for segment_rows, systime in reversed(iss.published_segments("fo", "futoi", day, now.timestamp(), secid)):
        rows.extend([*row[:11], systime, row[12]] for row in segment_rows)
    return rows[:1000]


def test_futoi_one_page_newest_first_no_cursor(iss, http):
    from datetime import date
    body = get(http, iss, FUTOI_RI, **{"from": DAY, "till": DAY}).json()
    assert set(body) == {"futoi", "futoi.dates"}                    # no futoi.cursor
    assert body["futoi.dates"]["data"] == [[DAY, DAY]]
    columns = body["futoi"]["columns"]
    assert "systime" in columns and "SYSTIME" not in columns        # FUTOI keeps lower case
    rows = body["futoi"]["data"]
    t = columns.index("tradetime")
    times = [row[t] for row in rows]
    assert times[0] == "11:55:00" and times == sorted(times, reverse=True)
    assert len(rows) == 2 * len(set(times)) == 2 * 35                # 09:05 … 11:55, FIZ + YUR
    assert rows == _expected_futoi(iss, date(2026, 11, 25), msk("12:00"), "ri")
    # start is ignored, reversed=1 changes nothing (the default is already newest first)
    iss.reset_stats()
    assert get(http, iss, FUTOI_RI, start=70, **{"from": DAY, "till": DAY}).json() == body
    assert get(http, iss, FUTOI_RI, reversed=1, **{"from": DAY, "till": DAY}).json() == body
    assert _requests(iss, "secid", "fo", "futoi") == 2
    # whole day at the close: ~2 x buckets rows, far below the cap
    iss.clock.set(msk("23:59"))
    rows = get(http, iss, FUTOI_RI, **{"from": DAY, "till": DAY}).json()["futoi"]["data"]
    assert rows[0][t] == "23:50:00" and rows[-1][t] == "09:05:00" and len(rows) == 2 * 178


def test_futoi_all_instruments_newest_1000(iss, http):
    from datetime import date
    body = get(http, iss, FUTOI_DAY, date=DAY).json()
    assert set(body) == {"futoi", "futoi.dates"}
    rows = body["futoi"]["data"]
    assert len(rows) == 1000
    assert rows == _expected_futoi(iss, date(2026, 11, 25), msk("12:00"))
    t = body["futoi"]["columns"].index("tradetime")
    seen, last = [], None                                            # buckets stay grouped
    for row in rows:
        if row[t] != last:
            assert row[t] not in seen
            seen.append(row[t])
            last = row[t]
    assert seen[0] == "11:55:00" and seen == sorted(seen, reverse=True)
    assert get(http, iss, FUTOI_DAY, date=DAY, start=1000).json() == body


# ----- refusals ------------------------------------------------------------------------------

def test_throttle_no_subscription_error_message(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"throttle": {"market": "eq", "count": 2}})
    for _ in range(2):
        page = get(http, iss, TS)
        assert page.status_code == 403 and page.headers["Content-Type"].startswith("text/html")
        assert "Too Many Requests" in page.text
    assert get(http, iss, TS).status_code == 200
    control(http, iss, "POST", "/sandbox/faults", {"no_subscription": {"count": 1}})
    page = get(http, iss, TS)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "available only to subscribers" in page.text
    assert get(http, iss, TS).headers["Content-Type"].startswith("application/json")
    control(http, iss, "POST", "/sandbox/faults", {"error_message": {"text": "Нет данных: сбой", "count": 3}})
    body = get(http, iss, TS, **{"iss.only": "data"}).json()
    assert body == {"data": {"metadata": {"ERROR_MESSAGE": {"type": "string", "bytes": 765, "max_size": 0}},
                             "columns": ["ERROR_MESSAGE"], "data": [["Нет данных: сбой"]]}}
    futoi = get(http, iss, FUTOI_RI).json()
    assert futoi["futoi"]["columns"] == ["ERROR_MESSAGE"]
    session = get(http, iss, "/iss/calendars/stock/session.json", **{"iss.meta": "off"}).json()
    assert session == {"session_schedule": {"columns": ["ERROR_MESSAGE"], "data": [["Нет данных: сбой"]]}}
    assert get(http, iss, TS).json()["data"]["columns"][0] == "tradedate"
    assert http.post(iss.url + "/sandbox/faults", data='{"error_message": {"text": 5}}').status_code == 400


# ----- hostile answers -------------------------------------------------------------------------

def _raw_get(iss, path, timeout=5.0):
    import socket
    sock = socket.create_connection((iss.host, iss.port), timeout=timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock


def _read_for(sock, seconds):
    sock.settimeout(0.05)
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        got += chunk
    return got


def test_drip_is_slow_and_blocks_nobody(iss, http):
    import threading

    def settle(target):
        deadline = time.monotonic() + 3
        while threading.active_count() > target and time.monotonic() < deadline:
            time.sleep(0.05)
        return threading.active_count()

    get(http, iss, TS, latest=1)                                         # day frame generated: no first-use delay
    get(http, iss, "/iss/datashop/algopack/fx/tradestats.json", latest=1)
    baseline = settle(threading.active_count())
    control(http, iss, "POST", "/sandbox/faults", {"drip": {"market": "eq", "bytes_per_second": 400, "count": 1}})
    sock = _raw_get(iss, TS + "?latest=1")
    try:
        opened = time.monotonic()
        first = _read_for(sock, 0.5)
        assert first.startswith(b"HTTP/1.1 200 ") and b"\r\n\r\n" in first     # headers at once
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Length: "))[16:])
        started = time.monotonic()
        fast = get(http, iss, "/iss/datashop/algopack/fx/tradestats.json", latest=1)   # not blocked
        assert fast.status_code == 200 and time.monotonic() - started < 1.0
        assert get(http, iss, TS, latest=1).status_code == 200                        # count=1 used up
        body += _read_for(sock, 1.0)
        elapsed = time.monotonic() - opened
        assert length > 10000                                        # the whole answer would take > 25 s
        assert 0.8 * 400 <= len(body) <= 400 * elapsed + 40          # paced at ~400 B/s
    finally:
        sock.close()
    assert settle(baseline) <= baseline                                  # the dripping thread gave up
    # headers dripped too: not even the status line within 0.3 s at 10 B/s
    control(http, iss, "POST", "/sandbox/faults", {"drip": {"bytes_per_second": 10, "headers": True, "count": 1}})
    sock = _raw_get(iss, TS + "?latest=1")
    try:
        head = _read_for(sock, 0.35)
        assert 1 <= len(head) <= 6 and b"HTTP/1.1 200 OK".startswith(head)
        assert threading.active_count() == baseline + 1
    finally:
        sock.close()
    assert settle(baseline) <= baseline
    assert get(http, iss, TS, latest=1).status_code == 200


def test_redirect_location(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"redirect": {"location": "http://evil.example:8080/iss/x.json",
                                                                 "count": 1}})
    moved = http.get(iss.url + TS, allow_redirects=False, timeout=5)
    assert moved.status_code == 302 and moved.headers["Location"] == "http://evil.example:8080/iss/x.json"
    assert http.get(iss.url + TS, allow_redirects=False, timeout=5).status_code == 200
    control(http, iss, "POST", "/sandbox/faults", {"redirect": {"location": TS + "?latest=1", "status": 307,
                                                                 "market": "eq", "count": 1}})
    moved = http.get(iss.url + TS, allow_redirects=False, timeout=5)
    assert moved.status_code == 307 and moved.headers["Location"] == TS + "?latest=1"
    assert http.post(iss.url + "/sandbox/faults", data='{"redirect": {"location": "/x", "status": 200}}'
                     ).status_code == 400
    codes = next(r for r in iss.stats()["routes"] if (r["kind"], r["market"]) == ("day", "eq"))["status"]
    assert codes == {"302": 1, "200": 1, "307": 1}


def test_gzip_bomb_small_on_the_wire(iss, http):
    import struct
    import zlib
    control(http, iss, "POST", "/sandbox/faults", {"gzip_bomb": {"count": 1}})
    response = http.get(iss.url + TS, stream=True, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"].startswith("application/json")
    wire = response.raw.read(decode_content=False)
    assert len(wire) == int(response.headers["Content-Length"]) and len(wire) < 1_200_000
    assert struct.unpack("<I", wire[-4:])[0] == 1 << 30               # gzip ISIZE: 1 GiB unpacked
    assert get(http, iss, TS).headers.get("Content-Encoding") is None
    size = 48 << 20 | 12345                                            # streamed, never held whole
    control(http, iss, "POST", "/sandbox/faults", {"gzip_bomb": {"unpacked_bytes": size, "count": 1}})
    response = http.get(iss.url + TS, stream=True, timeout=10)
    inflate, total, peak = zlib.decompressobj(31), 0, 0
    for chunk in response.raw.stream(65536, decode_content=False):
        data = chunk
        while data:
            out = inflate.decompress(data, 1 << 20)
            total, peak = total + len(out), max(peak, len(out))
            data = inflate.unconsumed_tail
    total += len(inflate.flush())
    assert inflate.eof and total == size and peak <= 1 << 20


# ----- data knobs of §11 ---------------------------------------------------------------------

SBER = "/iss/datashop/algopack/eq/tradestats/SBER.json"


@pytest.mark.parametrize("kind", ["empty_time", "null_time", "other_day", "future_systime", "off_grid"])
def test_bad_row_kinds_fixed_place(iss, http, kind):
    before, _, columns = fetch_all(http, iss, TS)
    control(http, iss, "POST", "/sandbox/faults", {"bad_row": {"kind": kind, "market": "eq",
                                                                "dataset": "tradestats"}})
    td, tt, st, sec = (columns.index(c) for c in ("tradedate", "tradetime", "SYSTIME", "secid"))
    rows = get(http, iss, SBER).json()["data"]["data"]
    assert len(rows) == 24 and [r[tt] for r in rows[:23]] == sorted(r[tt] for r in rows[:23])
    bad, good = rows[23], rows[22]                                       # right after 11:55
    assert bad[sec] == "SBER" and good[tt] == "11:55:00"
    expected = {"empty_time": (DAY, "", good[st]), "null_time": (DAY, None, None),
                "other_day": ("2026-11-26", "11:55:00", good[st]),
                "future_systime": (DAY, "11:55:00", f"{DAY} 14:00:00"),
                "off_grid": (DAY, "11:57:30", good[st])}[kind]
    assert (bad[td], bad[tt], bad[st]) == expected
    latest = get(http, iss, SBER, latest=1).json()["data"]["data"]
    assert latest == [good, bad]                                         # latest=1: newest bucket + its bad row
    iss.clock.set(msk("12:30"))
    after, total, _ = fetch_all(http, iss, TS)
    assert after[:len(before)] == before and after[len(before)][sec] == "SBER"   # append-only
    assert after[len(before) + 1][tt] == "12:00:00" and len(after) == total
    assert [r[tt] for r in get(http, iss, SBER).json()["data"]["data"]][22:25] == ["11:55:00", expected[1],
                                                                                  "12:00:00"]
    control(http, iss, "DELETE", "/sandbox/faults/bad_row")
    assert len(get(http, iss, SBER).json()["data"]["data"]) == 29


def test_bad_row_futoi_and_validation(iss, http):
    control(http, iss, "POST", "/sandbox/faults", {"bad_row": {"kind": "other_day", "market": "fo",
                                                                "dataset": "futoi"}})
    rows = get(http, iss, FUTOI_RI).json()["futoi"]["data"]
    assert len(rows) == 71 and rows[0][3] == "11:55:00"                 # newest first, bad row with 11:55
    dated = [r for r in rows if r[2] == "2026-11-26"]
    assert len(dated) == 1 and dated[0][3] == "11:55:00" and dated[0][4] == "ri"
    assert http.post(iss.url + "/sandbox/faults", data='{"bad_row": {"kind": "bogus"}}').status_code == 400


def test_expire_probe_successor(iss, http):
    fo = "/iss/datashop/algopack/fo/tradestats.json"
    control(http, iss, "POST", "/sandbox/faults", {"expire": {"market": "fo"}})   # SiZ6, from today
    rows, _, columns = fetch_all(http, iss, fo)
    sec, val, tt = columns.index("secid"), columns.index("val"), columns.index("tradetime")
    assert "SiZ6" not in {r[sec] for r in rows}
    by_bucket: dict[str, list] = {}
    for row in rows:
        by_bucket.setdefault(row[tt], []).append(row)
    assert len(by_bucket) == 35
    for bucket in by_bucket.values():
        top = max(bucket, key=lambda r: r[val])
        assert top[sec] == "SiH7"                                       # takes the probe's liquidity/weight
        secids = [r[sec] for r in bucket]
        assert secids == sorted(secids) and secids.count("SiH7") == 1
    assert get(http, iss, "/iss/datashop/algopack/fo/tradestats/SiZ6.json").json()["data"]["data"] == []
    assert len(get(http, iss, "/iss/datashop/algopack/fo/obstats/SiH7.json").json()["data"]["data"]) == 35
    yesterday = fetch_all(http, iss, fo, date="2026-11-24")[0]
    last = [r for r in yesterday if r[tt] == "23:50:00"]
    assert max(last, key=lambda r: r[val])[sec] == "SiZ6"               # the day before: SiZ6 leads
    assert http.post(iss.url + "/sandbox/faults", data='{"expire": {"market": "eq"}}').status_code == 400


def test_secid_daypattern(iss, http):
    iss.clock.set(msk("20:01"))
    obstats = "/iss/datashop/algopack/eq/obstats.json"

    def counts(path):
        rows, start = [], 0
        while True:
            page = get(http, iss, path, start=start, **{"iss.only": "data", "iss.meta": "off",
                                                         "data.columns": "tradetime,secid"}).json()["data"]["data"]
            if not page:
                break
            rows.extend(page)
            start += len(page)
        out: dict[str, set] = {}
        for tradetime, secid in rows:
            out.setdefault(tradetime, set()).add(secid)
        return out

    plain = counts(obstats)
    assert len(plain["20:00:00"]) > 0.9 * len(plain["18:00:00"])
    control(http, iss, "POST", "/sandbox/faults", {"secid_daypattern": {}})
    eq = counts(obstats)
    assert eq["18:40:00"] == plain["18:40:00"]
    assert "SBER" in eq["20:00:00"] and len(eq["20:00:00"]) < 0.5 * len(eq["18:00:00"])
    fx = counts("/iss/datashop/algopack/fx/tradestats.json")
    assert "CNY000000TOD" in fx["15:00:00"] and "CNY000000TOD" not in fx["15:05:00"]
    assert "USD000000TOD" in fx["17:45:00"] and "USD000000TOD" not in fx["17:50:00"]
    assert "CNYRUB_TOM" in fx["18:55:00"]


WEEKEND_CALENDAR = calendar_text("2026-11-28: working")   # Saturday session, Sunday closed


def test_weekend_tradedate_next(tmp_path):
    path = tmp_path / "calendar.yml"
    path.write_text(WEEKEND_CALENDAR)
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=MSK))
    with SandboxIss(str(path), clock, scale=0.2) as iss, requests.Session() as http:
        sat, mon = "2026-11-28", "2026-11-30"
        default = fetch_all(http, iss, TS, date=sat)[0]
        assert default and {r[0] for r in default} == {sat}                  # default: calendar date
        assert fetch_all(http, iss, TS, date=mon)[1] == 0
        control(http, iss, "POST", "/sandbox/faults", {"weekend_tradedate": {"mode": "next"}})
        assert fetch_all(http, iss, TS, date=sat)[1] == 0
        filed = fetch_all(http, iss, TS, date=mon)[0]
        assert [r[1:] for r in filed] == [r[1:] for r in default] and {r[0] for r in filed} == {mon}
        sber = get(http, iss, SBER, **{"from": mon, "till": mon}).json()["data"]["data"]
        assert len(sber) == 23 and {r[0] for r in sber} == {mon}
        assert get(http, iss, SBER, **{"from": sat, "till": sat}).json()["data"]["data"] == []
        futoi = get(http, iss, FUTOI_RI, **{"from": mon, "till": mon}).json()["futoi"]
        cols = futoi["columns"]
        assert {(r[cols.index("tradedate")], r[cols.index("trade_session_date")]) for r in futoi["data"]} == {(mon, mon)}
        clock.set(datetime(2026, 11, 30, 11, 0, tzinfo=MSK))                  # Monday: appended after Saturday
        monday = fetch_all(http, iss, TS, date=mon)[0]
        assert monday[:len(filed)] == filed                                    # append-only across the days
        assert len(monday) > len(filed) and {r[0] for r in monday} == {mon}
        assert fetch_all(http, iss, TS, date=sat)[1] == 0
        control(http, iss, "DELETE", "/sandbox/faults/weekend_tradedate")        # back to calendar dates
        assert {r[0] for r in fetch_all(http, iss, TS, date=sat)[0]} == {sat}


@pytest.mark.parametrize("mode", ["honoured", "ignored", "refused"])
def test_latest_per_instrument_knob(iss, http, mode):
    """`latest=1` on per-instrument routes is unverified (iss-api.md §3): honoured by default,
    or ignored (the whole day), or refused (400); the all-instruments route always honours it."""
    if mode != "honoured":
        iss.faults.set("latest_per_instrument", market="fo", dataset="futoi", mode=mode)
    whole = get(http, iss, FUTOI_RI).json()["futoi"]["data"]
    answer = http.get(iss.url + FUTOI_RI, params={"latest": 1}, timeout=10)
    if mode == "refused":
        assert answer.status_code == 400
    else:
        rows = answer.json()["futoi"]["data"]
        assert rows == (whole[:2] if mode == "honoured" else whole)
    # other routes keep honouring it
    day = get(http, iss, TS, latest=1, date=DAY).json()["data"]["data"]
    assert len({(row[0], row[1]) for row in day}) == 1
    with pytest.raises(FaultError, match="mode must be one of"):
        iss.faults.set("latest_per_instrument", mode="sometimes")
