"""IssClient against the sandbox ISS process (passport auth, real paging, fault knobs)."""

from __future__ import annotations

import math

import pytest
import requests

from exporter.config import IssConfig
from exporter.iss import IssClient, IssError, IssStats
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, python_module, wait_http

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "robot", "sandbox-Secret-1"
DAY = "2026-11-25"  # a Wednesday: a working day in the committed calendar


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("sandbox-iss") / "iss.log"
    proc = ManagedProcess("sandbox-iss", python_module(
        "sandbox.iss", "--listen", f"127.0.0.1:{port}", "--calendar", str(REPO_ROOT / "calendar.yml"),
        "--clock", f"start={DAY}T12:00:00+03:00,speed=1", "--auth", "passport",
        "--passport-login", LOGIN, "--passport-password", PASSWORD), log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/sandbox/clock", timeout=30, proc=proc)
        yield url
    finally:
        proc.stop()


def make_client(url: str, password: str = PASSWORD) -> IssClient:
    return IssClient(IssConfig(base_url=url, auth="passport", passport_url=f"{url}/authenticate",
                               timeout_seconds=5, retries=1, backoff_seconds=0.1,
                               passport_login=LOGIN, passport_password=password), IssStats())


def test_probe_rows_with_passport(sandbox):
    with make_client(sandbox) as client:
        result = client.get_block("/iss/datashop/algopack/eq/tradestats/SBER.json", {"from": DAY, "till": DAY},
                                  required_columns=("tradedate", "tradetime", "secid", "systime"))
    frame = result.table
    assert len(frame) > 0 and set(frame["secid"]) == {"SBER"}
    assert set(frame["tradedate"]) == {DAY}
    assert max(frame["tradetime"]) <= "12:00:00"


def test_full_market_day_pages_to_the_total(sandbox):
    with make_client(sandbox) as client:
        result = client.get_block("/iss/datashop/algopack/eq/tradestats.json", {"date": DAY},
                                  columns=("tradetime", "secid", "systime"))
    assert result.total is not None and result.total > 1000, "expected a multi-page day"
    assert len(result.table) == result.total
    assert result.pages == math.ceil(result.total / 1000)
    assert list(result.table.columns) == ["tradetime", "secid", "systime"]
    pairs = list(result.table.values("tradetime", "secid"))
    assert len(set(pairs)) == len(pairs)  # no duplicated (tradetime, secid)


def test_expired_cookie_reauthenticates(sandbox):
    with make_client(sandbox) as client:
        client.get_block("/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json", {"from": DAY, "till": DAY})
        requests.post(f"{sandbox}/sandbox/faults", json={"expire_auth": {}}, timeout=5).raise_for_status()
        result = client.get_block("/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json", {"from": DAY, "till": DAY})
        assert len(result.table) > 0
        assert client._auth_generation == 2


def test_wrong_password_is_auth(sandbox):
    with make_client(sandbox, password="not-it") as client, pytest.raises(IssError) as info:
        client.get_block("/iss/datashop/algopack/eq/hi2.json")
    assert info.value.reason == "auth" and "not-it" not in str(info.value)


# --------------------------------------------------------------------------- §11 refusals and hostile upstream


SBER = "/iss/datashop/algopack/eq/tradestats/SBER.json"
CNY = "/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json"
ONE_DAY = {"from": DAY, "till": DAY}


def set_fault(url: str, name: str, **params) -> None:
    requests.post(f"{url}/sandbox/faults", json={name: params}, timeout=5).raise_for_status()


def sandbox_stats(url: str) -> dict:
    return requests.get(f"{url}/sandbox/stats", timeout=5).json()


def requests_of(stats: dict, kind: str | None = None, dataset: str | None = None) -> int:
    return sum(row["requests"] for row in stats["routes"]
               if (kind is None or row["kind"] == kind) and (dataset is None or row["dataset"] == dataset))


def logins(url: str) -> int:
    return requests_of(sandbox_stats(url), kind="authenticate")


@pytest.fixture
def clean(sandbox):
    requests.delete(f"{sandbox}/sandbox/faults", timeout=5).raise_for_status()
    requests.post(f"{sandbox}/sandbox/stats/reset", timeout=5).raise_for_status()
    yield sandbox
    requests.delete(f"{sandbox}/sandbox/faults", timeout=5).raise_for_status()


def test_throttle_knob_is_throttled_no_relogin_and_pauses_every_pair(clean):
    with make_client(clean) as client:
        client.get_block(SBER, ONE_DAY)
        set_fault(clean, "throttle", market="eq", dataset="tradestats", count=1)
        with pytest.raises(IssError) as info:
            client.get_block(SBER, ONE_DAY)
        assert info.value.reason == "throttled" and info.value.status == 403
        sent = requests_of(sandbox_stats(clean))
        with pytest.raises(IssError) as other:
            client.get_block(CNY, ONE_DAY)  # another pair: not sent during the back-off
        assert other.value.reason == "throttled"
        assert requests_of(sandbox_stats(clean)) == sent
    assert logins(clean) == 1  # old main: the 403 counted as auth and set off a re-login


def test_429_retry_after_is_honoured_by_the_whole_client(clean):
    with make_client(clean) as client:
        client.get_block(SBER, ONE_DAY)
        set_fault(clean, "http_error", market="eq", dataset="tradestats", status=429, retry_after=20, count=1)
        with pytest.raises(IssError) as info:
            client.get_block(SBER, ONE_DAY)
        assert info.value.reason == "throttled"
        assert 15 <= client.throttle_remaining() <= 20.5
        sent = requests_of(sandbox_stats(clean))
        for path in (CNY, "/iss/datashop/algopack/fo/obstats.json"):
            with pytest.raises(IssError) as other:
                client.get_block(path, ONE_DAY)
            assert other.value.reason == "throttled"
        assert requests_of(sandbox_stats(clean)) == sent
    assert logins(clean) == 1


def test_error_message_knob_is_iss_error_with_its_text(clean):
    set_fault(clean, "error_message", market="eq", dataset="tradestats", text="Сервис временно недоступен (42)",
              count=1)
    with make_client(clean) as client, pytest.raises(IssError) as info:
        client.get_block(SBER, ONE_DAY, required_columns=("tradedate", "tradetime", "systime"))
    assert info.value.reason == "iss_error"
    assert "Сервис временно недоступен (42)" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_concurrent_refusals_log_in_once_per_episode(clean):
    import threading

    paths = [f"/iss/datashop/algopack/{m}/{d}.json" for m in ("eq", "fx", "fo")
             for d in ("tradestats", "obstats")] * 2
    with make_client(clean) as client:
        client.get_block(SBER, ONE_DAY)
        assert logins(clean) == 1
        # every request now gets the "available only to subscribers" page, even with a fresh cookie
        set_fault(clean, "no_subscription")
        errors: list[str] = []
        barrier = threading.Barrier(len(paths))

        def pair(path: str) -> None:
            barrier.wait()
            try:
                client.get_block(path, {"date": DAY}, all_pages=False)
            except IssError as exc:
                errors.append(exc.reason)

        threads = [threading.Thread(target=pair, args=(path,)) for path in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert errors == ["auth"] * len(paths)
        assert logins(clean) == 2  # ONE re-login for 12 refused pairs (old main: one per pair)
        for path in paths[:4]:  # later polls of the same episode: no login
            with pytest.raises(IssError):
                client.get_block(path, {"date": DAY}, all_pages=False)
        assert logins(clean) == 2
        # the episode ends with a success; an expired cookie then costs exactly one login again
        requests.delete(f"{clean}/sandbox/faults/no_subscription", timeout=5).raise_for_status()
        client.get_block(SBER, ONE_DAY)
        set_fault(clean, "expire_auth")
        client.get_block(SBER, ONE_DAY)
        assert logins(clean) == 3


@pytest.mark.parametrize("headers", [True, False])
def test_drip_knob_fails_on_the_whole_request_deadline(clean, headers):
    import time

    set_fault(clean, "drip", market="eq", dataset="tradestats", bytes_per_second=2, headers=headers, count=1)
    client = IssClient(IssConfig(base_url=clean, auth="passport", passport_url=f"{clean}/authenticate",
                                 timeout_seconds=1.0, retries=0, passport_login=LOGIN, passport_password=PASSWORD),
                       IssStats())
    with client:
        client.get_block(CNY, ONE_DAY)  # log in first
        started = time.monotonic()
        with pytest.raises(IssError) as info:
            client.get_block(SBER, ONE_DAY)
        assert info.value.reason == "timeout"
        assert time.monotonic() - started < 2.5  # old main: until the drip ends (many minutes)
        assert len(client.get_block(SBER, ONE_DAY).table) > 0  # a fresh connection, a normal answer


def test_redirect_knob_same_host_followed_other_host_refused(clean):
    from tests.support import FakeIss, js
    foreign = FakeIss(reply=lambda seen: js({"data": {"columns": ["tradedate"], "data": []}}))
    try:
        with make_client(clean) as client:
            set_fault(clean, "redirect", market="eq", dataset="tradestats",
                      location=f"/iss/datashop/algopack/eq/tradestats/SBER.json?from={DAY}&till={DAY}", count=1)
            assert len(client.get_block(SBER, ONE_DAY).table) > 0
            set_fault(clean, "redirect", market="eq", dataset="tradestats",
                      location=f"{foreign.url}/collect?token=t0ps3cret", count=1)
            with pytest.raises(IssError) as info:
                client.get_block(SBER, ONE_DAY)
            assert info.value.reason == "redirect"
            assert foreign.url.split("//")[1] in info.value.message and "t0ps3cret" not in info.value.message
        assert foreign.seen == []  # old main followed it with Cookie: MicexPassportCert=…
    finally:
        foreign.close()


BOMB_CLIENT = r'''
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from exporter.config import IssConfig
from exporter.iss import IssClient, IssError, IssStats
url, login, password = sys.argv[1:4]
client = IssClient(IssConfig(base_url=url, auth="passport", passport_url=url + "/authenticate", retries=0,
                             timeout_seconds=30, passport_login=login, passport_password=password), IssStats())
reason = None
try:
    client.get_block("/iss/datashop/algopack/eq/tradestats/SBER.json")
except IssError as exc:
    reason = exc.reason
except MemoryError:
    reason = "MemoryError"
from tests.rss import peak_rss_kb
print(json.dumps({"reason": reason, "maxrss_kb": peak_rss_kb(),
                  "bytes": client.stats.snapshot()["bytes"]}))
'''


def test_gzip_bomb_knob_is_too_large_with_bounded_memory(clean):
    import json
    import subprocess
    import sys

    set_fault(clean, "gzip_bomb", market="eq", dataset="tradestats", unpacked_bytes=1 << 30, count=1)
    done = subprocess.run([sys.executable, "-c", BOMB_CLIENT, clean, LOGIN, PASSWORD], capture_output=True,
                          text=True, timeout=90, cwd=str(REPO_ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["reason"] == "too_large"
    assert report["maxrss_kb"] < 200 * 1024, report
    assert 0 < report["bytes"] < 2 * 1024 * 1024  # wire bytes read (~1 MB bomb), not 1 GiB
