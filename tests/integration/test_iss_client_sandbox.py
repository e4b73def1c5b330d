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
    frame = result.frame
    assert len(frame) > 0 and set(frame["secid"]) == {"SBER"}
    assert set(frame["tradedate"]) == {DAY}
    assert frame["tradetime"].max() <= "12:00:00"


def test_full_market_day_pages_to_the_total(sandbox):
    with make_client(sandbox) as client:
        result = client.get_block("/iss/datashop/algopack/eq/tradestats.json", {"date": DAY},
                                  columns=("tradetime", "secid", "systime"))
    assert result.total is not None and result.total > 1000, "expected a multi-page day"
    assert len(result.frame) == result.total
    assert result.pages == math.ceil(result.total / 1000)
    assert list(result.frame.columns) == ["tradetime", "secid", "systime"]
    assert not result.frame.duplicated(["tradetime", "secid"]).any()


def test_expired_cookie_reauthenticates(sandbox):
    with make_client(sandbox) as client:
        client.get_block("/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json", {"from": DAY, "till": DAY})
        requests.post(f"{sandbox}/sandbox/faults", json={"expire_auth": {}}, timeout=5).raise_for_status()
        result = client.get_block("/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json", {"from": DAY, "till": DAY})
        assert len(result.frame) > 0
        assert client._auth_generation == 2


def test_wrong_password_is_auth(sandbox):
    with make_client(sandbox, password="not-it") as client, pytest.raises(IssError) as info:
        client.get_block("/iss/datashop/algopack/eq/hi2.json")
    assert info.value.reason == "auth" and "not-it" not in str(info.value)
