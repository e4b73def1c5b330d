"""ISS-shaped answers written from iss-api.md §11 (and §4 where §11 does not contradict it)
go through the real IssClient over HTTP. Each fixture's docstring names the fact it encodes.

The stand-in ISS is the shared scripted loopback server (`tests.support.FakeIss`, the `iss`
fixture of tests/conformance/conftest.py): it answers what the fixture says and records every
request.
"""

from __future__ import annotations

import json
import threading

import pytest

from exporter.config import IssConfig
from exporter.iss import IssClient, IssError, IssStats
from tests.support import FakeIss, Reply, Seen, js

DAY = "2026-11-25"
EQ_TRADESTATS = ["tradedate", "tradetime", "secid", "pr_open", "pr_high", "pr_low", "pr_close", "pr_std", "vol",
                 "val", "trades", "pr_vwap", "pr_change", "trades_b", "trades_s", "val_b", "val_s", "vol_b",
                 "vol_s", "disb", "pr_vwap_b", "pr_vwap_s", "SYSTIME", "sec_pr_open", "sec_pr_high",
                 "sec_pr_low", "sec_pr_close"]
FUTOI = ["sess_id", "seqnum", "tradedate", "tradetime", "ticker", "clgroup", "pos", "pos_long", "pos_short",
         "pos_long_num", "pos_short_num", "systime", "trade_session_date"]
FUTOI_PATH = "/iss/analyticalproducts/futoi/securities/ri.json"
SBER_PATH = "/iss/datashop/algopack/eq/tradestats/SBER.json"
HTML = {"Content-Type": "text/html; charset=utf-8"}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def futoi_answer(seen: Seen) -> Reply:
    """§11 FUTOI paging + order: `/iss/analyticalproducts/futoi/securities/{ticker}.json` has NO
    cursor block and IGNORES `start`; blocks are `futoi` and `futoi.dates`; rows come NEWEST
    FIRST (the first row of a day is 23:50); lower-case `systime`; two clgroups (FIZ, YUR)."""
    rows = []
    for minutes in range(23 * 60 + 50, 9 * 60, -5):  # 23:50 down to 09:05: 178 buckets
        for clgroup in ("FIZ", "YUR"):
            rows.append([1, minutes, DAY, _hhmm(minutes), "RI", clgroup, 100, 200, -100, 10, 5,
                         f"{DAY} {_hhmm(minutes)[:5]}:07", DAY])
    return js({"futoi": {"columns": FUTOI, "data": rows},
               "futoi.dates": {"columns": ["from", "till"], "data": [["2020-07-01", DAY]]}})


def futoi_full_answer(seen: Seen) -> Reply:
    """§11 FUTOI: one answer is capped at 1000 rows, whatever `start` says."""
    row = [1, 1, DAY, "10:00:00", "RI", "FIZ", 1, 1, -1, 1, 1, f"{DAY} 10:00:07", DAY]
    return js({"futoi": {"columns": FUTOI, "data": [row] * 1000},
               "futoi.dates": {"columns": ["from", "till"], "data": [["2020-07-01", DAY]]}})


def supercandles_answer(total: int = 2500):
    """§11 SuperCandles paging + casing: per-instrument routes page with `start` (1000 rows),
    return `data.cursor` (INDEX = requested start, TOTAL, PAGESIZE), rows ascending by
    tradetime; the answer carries `SYSTIME` in upper case (eq tradestats: index 22)."""
    def route(seen: Seen) -> Reply:
        start = int(seen.params.get("start", 0))
        rows = []
        for index in range(start, min(start + 1000, total)):
            row = [None] * len(EQ_TRADESTATS)
            row[0], row[1], row[2] = DAY, f"{index:08d}", "SBER"
            row[22] = f"{DAY} 10:05:11"
            rows.append(row)
        return js({"data": {"columns": EQ_TRADESTATS, "data": rows},
                   "data.cursor": {"columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [[start, total, 1000]]}})
    return route


def apim_bad_key(seen: Seen) -> Reply:
    """§11 refusals: apim with a bad or missing key answers 401."""
    return 401, {"Content-Type": "application/json"}, b'{"message": "Unauthorized"}'


def subscribers_page(seen: Seen) -> Reply:
    """§11 refusals: iss.moex.com without the subscription answers 200 with `text/html`
    ("available only to subscribers")."""
    return 200, HTML, "<html><body><h1>Данные доступны только подписчикам</h1><p>This data is available " \
                      "only to subscribers.</p></body></html>".encode()


def throttling_403(seen: Seen) -> Reply:
    """§11 refusals + §9: a 403 can be throttling ("Too Many Requests"), answered as text/html."""
    return 403, HTML, b"<html><head><title>403</title></head><body><h1>Too Many Requests</h1></body></html>"


def rate_limit_429(seen: Seen) -> Reply:
    """§11 refusals: 429 is the rate limit, with `Retry-After`."""
    return 429, {"Content-Type": "text/plain", "Retry-After": "120"}, b"Too Many Requests"


def error_message_answer(seen: Seen) -> Reply:
    """§11 refusals: some errors come as JSON with a single `ERROR_MESSAGE` column (in the block
    that was asked for)."""
    block = seen.params.get("iss.only", "data").split(",")[0]
    return js({block: {"columns": ["ERROR_MESSAGE"],
                       "data": [["Неверное значение параметра date: 2026-02-30"]]}})


def client(iss: FakeIss, **overrides) -> IssClient:
    values = dict(base_url=iss.url, timeout_seconds=5.0, retries=2, backoff_seconds=0.0)
    values.update(overrides)
    return IssClient(IssConfig(**values), IssStats())


def test_futoi_is_read_in_one_request_whatever_start_says(iss):
    iss.reply = futoi_answer
    with client(iss) as c:
        result = c.get_block(FUTOI_PATH, {"from": DAY, "till": DAY}, block="futoi",
                             required_columns=("tradedate", "tradetime", "systime"))
    assert len(iss.seen) == 1  # old main: 100 requests (the page cap), the same rows each time
    assert len(result.table) == 356 and not result.truncated
    assert result.table["tradetime"][0] == "23:50:00"  # newest first, as ISS sent it
    assert max(result.table["tradetime"]) == "23:50:00"


def test_futoi_at_the_1000_row_cap_is_marked_truncated(iss):
    iss.reply = futoi_full_answer
    with client(iss) as c:
        result = c.get_block("/iss/analyticalproducts/futoi/securities.json", {"date": DAY}, block="futoi")
    assert len(iss.seen) == 1 and len(result.table) == 1000 and result.truncated


def test_supercandles_page_across_the_cursor_and_upper_case_systime(iss):
    iss.reply = supercandles_answer(2500)
    with client(iss) as c:
        result = c.get_block(SBER_PATH, {"from": DAY, "till": DAY},
                             required_columns=("tradedate", "tradetime", "systime"))
    assert [s.params["start"] for s in iss.seen] == ["0", "1000", "2000"]
    assert result.total == 2500 and len(result.table) == 2500
    assert "systime" in result.table.columns and all(v is not None for v in result.table["systime"])


def test_apim_401_is_auth(iss):
    iss.reply = apim_bad_key
    with client(iss, auth="apikey", api_key="k-0123456789") as c, pytest.raises(IssError) as info:
        c.get_block(SBER_PATH)
    assert info.value.reason == "auth" and info.value.status == 401


def test_subscribers_page_is_auth_and_named(iss):
    iss.reply = subscribers_page
    with client(iss) as c, pytest.raises(IssError) as info:
        c.get_block(SBER_PATH)
    assert info.value.reason == "auth" and "subscribers" in info.value.message


@pytest.mark.parametrize("fixture", [throttling_403, rate_limit_429])
def test_throttling_is_throttled_and_pauses_the_whole_client(iss, fixture):
    iss.reply = fixture
    with client(iss) as c:
        with pytest.raises(IssError) as info:
            c.get_block(SBER_PATH)
        assert info.value.reason == "throttled"  # old main: "auth" (403) / "http" (429)
        errors = []

        def other_pair() -> None:
            try:
                c.get_block("/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json")
            except IssError as exc:
                errors.append(exc.reason)

        threads = [threading.Thread(target=other_pair) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    assert errors == ["throttled"] * 3 and len(iss.seen) == 1


def test_throttling_403_never_logs_in_again(iss):
    cert = {"value": None}

    def route(seen: Seen) -> Reply:
        if seen.path == "/authenticate":
            cert["value"] = "c1"
            return 200, {"Set-Cookie": "MicexPassportCert=c1; Path=/", "Content-Type": "text/plain"}, b"ok"
        return throttling_403(seen)

    iss.reply = route
    with client(iss, auth="passport", passport_url=f"{iss.url}/authenticate", passport_login="u",
                passport_password="p-secret") as c, pytest.raises(IssError) as info:
        c.get_block(SBER_PATH)
    assert info.value.reason == "throttled"
    assert [s.path for s in iss.seen].count("/authenticate") == 1


@pytest.mark.parametrize("block,path", [("data", SBER_PATH), ("futoi", FUTOI_PATH)])
def test_error_message_answer_is_iss_error_with_iss_text(iss, block, path):
    iss.reply = error_message_answer
    with client(iss) as c, pytest.raises(IssError) as info:
        c.get_block(path, block=block, required_columns=("tradedate", "tradetime", "systime"))
    assert info.value.reason == "iss_error"  # old main: "parse", block/columns missing
    assert "Неверное значение параметра date: 2026-02-30" in str(info.value)
    assert "lacks required column" not in str(info.value)


def test_fixtures_are_iss_shaped():
    """The fixtures themselves follow §11: FUTOI has no cursor; SuperCandles has one."""
    futoi = json.loads(futoi_answer(Seen(FUTOI_PATH, {}, {}))[2])
    assert set(futoi) == {"futoi", "futoi.dates"}
    candles = json.loads(supercandles_answer(10)(Seen(SBER_PATH, {"start": "0"}, {}))[2])
    assert candles["data.cursor"]["data"] == [[0, 10, 1000]]
    assert candles["data"]["columns"][22] == "SYSTIME"
