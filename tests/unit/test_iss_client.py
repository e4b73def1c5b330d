"""IssClient against a tiny scripted ISS on 127.0.0.1 (real HTTP, real sockets, real retries)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from exporter.config import IssConfig
from exporter.iss import (
    ERROR_REASONS,
    IssClient,
    IssError,
    IssStats,
    describe_url,
    iss_error_text,
    mask_secrets,
    parse_block,
    parse_retry_after,
)
from sandbox.procs import free_port
from tests.support import FakeIss, RawServer, Reply, Seen, js

LOGIN, PASSWORD, API_KEY = "robot@example.com", "pa55-Very-Secret", "key-0123456789abcdef"
COLUMNS = ["TRADEDATE", "TRADETIME", "SECID", "SYSTIME"]


def rows(n: int, first: int = 0) -> list[list]:
    return [["2026-11-25", f"10:{(first + i) % 60:02d}:00", "SBER", "2026-11-25 10:05:11"]
            for i in range(n)]


def page(data: list[list], cursor: tuple[int, int, int] | None | str = "one-page", columns=COLUMNS) -> dict:
    """A `data` block; by default with a cursor saying this is the whole set."""
    payload: dict = {"data": {"columns": columns, "data": data}}
    if cursor == "one-page":
        cursor = (0, len(data), 1000)
    if cursor is not None:
        payload["data.cursor"] = {"columns": ["INDEX", "TOTAL", "PAGESIZE"], "data": [list(cursor)]}
    return payload


@pytest.fixture
def fake():
    server = FakeIss()
    yield server
    server.close()


def client_for(fake: FakeIss, **overrides) -> IssClient:
    values = dict(base_url=fake.url, timeout_seconds=2.0, retries=2, backoff_seconds=0.0)
    values.update(overrides)
    return IssClient(IssConfig(**values), IssStats())


PATH = "/iss/datashop/algopack/eq/tradestats/SBER.json"


# --------------------------------------------------------------------------- paging


def test_paging_with_cursor_three_pages(fake):
    all_rows = rows(5)

    def route(seen: Seen) -> Reply:
        start = int(seen.params["start"])
        return js(page(all_rows[start:start + 2], cursor=(start, 5, 2)))

    fake.reply = route
    with client_for(fake) as client:
        result = client.get_block(PATH, {"from": "2026-11-25", "till": "2026-11-25"},
                                  required_columns=("tradedate", "tradetime", "systime"))
    assert [s.params["start"] for s in fake.seen] == ["0", "2", "4"]
    assert all(s.params["iss.meta"] == "off" for s in fake.seen)
    assert all(s.params["iss.only"] == "data,data.cursor" for s in fake.seen)
    assert all(s.params["from"] == "2026-11-25" for s in fake.seen)
    assert all(s.headers["cache-control"] == "no-cache" for s in fake.seen)
    assert fake.seen[0].headers["user-agent"].startswith("algopack-monitor/")
    assert list(result.table.columns) == ["tradedate", "tradetime", "secid", "systime"]
    assert list(result.table["tradetime"]) == [r[1] for r in all_rows]
    assert (result.total, result.pages, result.status, result.truncated) == (5, 3, 200, False)


def test_answer_without_cursor_is_one_page_even_if_full(fake):
    # iss-api §11: routes without a cursor block (FUTOI) ignore `start`; paging them fetched
    # the same rows again and again (old main: 100 requests, the page cap)
    fake.reply = lambda seen: js(page(rows(3), cursor=None))
    with client_for(fake) as client:
        result = client.get_block(PATH)
    assert [s.params["start"] for s in fake.seen] == ["0"]
    assert len(result.table) == 3 and result.total is None and result.pages == 1
    assert not result.truncated


def test_answer_without_cursor_at_the_1000_row_cap_is_truncated_and_logged_once(fake, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.iss")
    fake.reply = lambda seen: js(page(rows(1000), cursor=None))
    with client_for(fake) as client:
        first = client.get_block(PATH)
        second = client.get_block(PATH)
    assert len(fake.seen) == 2  # one request per call
    assert first.truncated and second.truncated and len(first.table) == 1000
    assert caplog.text.count("iss_answer_truncated") == 1


def test_paging_advances_by_rows_returned_not_by_pagesize(fake):
    # the cursor claims PAGESIZE 4 but the server hands out 4, then 4, then 1 of 9
    all_rows = rows(9)
    fake.reply = lambda seen: js(page(all_rows[int(seen.params["start"]):int(seen.params["start"]) + 4],
                                      cursor=(int(seen.params["start"]), 9, 4)))
    with client_for(fake) as client:
        result = client.get_block(PATH, start=0)
    assert [s.params["start"] for s in fake.seen] == ["0", "4", "8"]
    assert len(result.table) == 9 and result.total == 9


def test_max_pages_guard_when_server_ignores_start(fake):
    fake.reply = lambda seen: js(page(rows(2), cursor=(0, 1000, 2)))
    with client_for(fake) as client:
        result = client.get_block(PATH, max_pages=4)
    assert len(fake.seen) == 4
    assert result.truncated and result.pages == 4 and len(result.table) == 8


def test_first_page_only(fake):
    fake.reply = lambda seen: js(page(rows(2), cursor=(0, 10, 2)))
    with client_for(fake) as client:
        result = client.get_block(PATH, all_pages=False, start=6)
    assert [s.params["start"] for s in fake.seen] == ["6"]
    assert result.total == 10 and len(result.table) == 2


def test_columns_param_sent_and_frame_trimmed_even_if_ignored(fake):
    fake.reply = lambda seen: js(page(rows(1)))
    with client_for(fake) as client:
        result = client.get_block(PATH, columns=("tradetime", "systime"), required_columns=("secid",))
    assert fake.seen[0].params["data.columns"] == "tradetime,systime,secid"
    assert list(result.table.columns) == ["tradetime", "systime", "secid"]


def test_columns_trimmed_away_by_iss_are_asked_again_untrimmed_and_never_trimmed_again(fake, caplog):
    """A `data.columns` that ISS matched case-sensitively (`systime` vs `SYSTIME`) and so
    answered without a needed column: the poll is not lost, the page is asked again without
    trimming, and this path is not trimmed again (one extra request, once per path)."""
    def route(seen: Seen) -> Reply:
        wanted = seen.params.get("data.columns")
        if wanted is None:
            return js(page(rows(2)))
        keep = [i for i, name in enumerate(COLUMNS) if name in wanted.split(",")]  # case-sensitive
        return js(page([[row[i] for i in keep] for row in rows(2)], columns=[COLUMNS[i] for i in keep]))

    fake.reply = route
    required = ("tradedate", "tradetime", "systime")
    with client_for(fake) as client, caplog.at_level(logging.WARNING, logger="exporter.iss"):
        first = client.get_block(PATH, columns=required, required_columns=required)
        second = client.get_block(PATH, columns=required, required_columns=required)
        other = client.get_block(PATH.replace("SBER", "GAZP"), columns=required, required_columns=required)
    # remembered per path: another instrument's route is tried trimmed once
    assert [s.params.get("data.columns") for s in fake.seen] == [
        "tradedate,tradetime,systime", None, None, "tradedate,tradetime,systime", None]
    for result in (first, second, other):
        assert list(result.table.columns) == ["tradedate", "tradetime", "systime"]  # trimmed client-side
        assert len(result.table) == 2
    assert sum("iss_columns_refused" in r.getMessage() for r in caplog.records) == 2


def test_other_block_name(fake):
    futoi_rows = [["ri", "x"], ["ri", "y"]]
    # no cursor block (FUTOI, iss-api §11): one request, `start` ignored by ISS
    fake.reply = lambda seen: js({"futoi": {"columns": ["ticker", "systime"],
                                            "data": futoi_rows[int(seen.params["start"]):]}})
    with client_for(fake) as client:
        result = client.get_block("/iss/analyticalproducts/futoi/securities/ri.json", block="futoi")
    assert fake.seen[0].params["iss.only"] == "futoi,futoi.cursor"
    assert [s.params["start"] for s in fake.seen] == ["0"]
    assert list(result.table["systime"]) == ["x", "y"]


# --------------------------------------------------------------------------- errors


def test_missing_required_column_is_parse_error(fake):
    fake.reply = lambda seen: js(page(rows(1)))
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH, required_columns=("tradedate", "pr_close"))
    assert info.value.reason == "parse" and "pr_close" in info.value.message


def test_malformed_json_is_parse_error(fake):
    fake.reply = lambda seen: (200, {"Content-Type": "application/json"}, b'{"data": {"columns": [')
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "parse"


def test_missing_block_is_parse_error(fake):
    fake.reply = lambda seen: js({"other": {"columns": [], "data": []}})
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "parse"


def test_parse_block_pure():
    table = parse_block(page(rows(2)), "data", ("SYSTIME",))
    assert list(table.columns) == ["tradedate", "tradetime", "secid", "systime"] and len(table) == 2
    empty = parse_block(page([]), "data", ("systime",))
    assert empty.empty and "systime" in empty.columns
    with pytest.raises(IssError, match="row 1") as info:
        parse_block({"data": {"columns": ["a", "b"], "data": [[1, 2], [1]]}}, "data", ())
    assert info.value.reason == "parse"
    with pytest.raises(IssError) as info:
        parse_block(["not", "a", "dict"], "data", ())  # type: ignore[arg-type]
    assert info.value.reason == "parse"


def test_html_answer_is_auth_error(fake):
    fake.reply = lambda seen: (200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>login</html>")
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "auth" and "text/html" in info.value.message


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_auth_errors(fake, status):
    fake.reply = lambda seen: js({"error": "no"}, status=status)
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "auth" and info.value.status == status
    assert len(fake.seen) == 1


def test_500_retried_then_success(fake):
    def route(seen: Seen) -> Reply:
        if len(fake.seen) == 1:
            return js({"error": "boom"}, status=500)
        return js(page(rows(1)))

    fake.reply = route
    with client_for(fake) as client:
        result = client.get_block(PATH)
        snap = client.stats.snapshot()
    assert len(fake.seen) == 2 and len(result.table) == 1
    assert snap["requests"] == {"500": 1, "200": 1}


def test_503_forever_is_http_error_after_retries(fake):
    fake.reply = lambda seen: js({"error": "busy"}, status=503, extra={"Retry-After": "0"})
    with client_for(fake, retries=2) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "http" and info.value.status == 503
    assert len(fake.seen) == 3
    assert client.stats.snapshot()["requests"] == {"503": 3}


def test_429_is_throttled_and_not_retried(fake):
    fake.reply = lambda seen: js({"error": "slow down"}, status=429, extra={"Retry-After": "3600"})
    with client_for(fake, retries=2) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "throttled" and info.value.status == 429
    assert len(fake.seen) == 1


def test_read_timeout_is_timeout_error(fake):
    def route(seen: Seen) -> Reply:
        time.sleep(0.6)
        return js(page(rows(1)))

    fake.reply = route
    with client_for(fake, timeout_seconds=0.2, retries=1) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "timeout"
    assert len(fake.seen) == 2  # one retry of an idempotent GET
    assert client.stats.snapshot()["requests"] == {"error": 2}


def test_connection_refused_is_timeout_reason():
    # reason "timeout" means "no HTTP answer at all", refused connections included
    client = IssClient(IssConfig(base_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1.0, retries=1,
                                 backoff_seconds=0.0), IssStats())
    with pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "timeout"
    assert client.stats.snapshot()["requests"] == {"error": 2}


def test_stats_count_bytes_and_statuses(fake):
    bodies: list[int] = []

    def route(seen: Seen) -> Reply:
        start = int(seen.params["start"])
        reply = js(page(rows(5)[start:start + 2], cursor=(start, 5, 2)))
        bodies.append(len(reply[2]))
        return reply

    fake.reply = route
    stats = IssStats()
    client = IssClient(IssConfig(base_url=fake.url, retries=0), stats)
    result = client.get_block(PATH)
    assert result.bytes == sum(bodies)
    assert stats.snapshot() == {"requests": {"200": 3}, "bytes": sum(bodies)}


def test_describe_url_masks_secrets():
    text = describe_url("/iss/x.json", {"date": "2026-11-25", "apikey": API_KEY, "iss.only": "data,data.cursor"})
    assert API_KEY not in text and "date=2026-11-25" in text and "iss.only=data,data.cursor" in text


# --------------------------------------------------------------------------- auth


def test_bearer_header_in_apikey_mode(fake):
    fake.reply = lambda seen: js(page(rows(1)))
    with client_for(fake, auth="apikey", api_key=API_KEY) as client:
        client.get_block(PATH)
    assert fake.seen[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in repr(client.cfg)


def test_no_authorization_header_in_none_mode(fake):
    fake.reply = lambda seen: js(page(rows(1)))
    with client_for(fake) as client:
        client.get_block(PATH)
    assert "authorization" not in fake.seen[0].headers


class Passport:
    """Passport + ISS routes: one valid certificate at a time; `expire()` invalidates it."""

    def __init__(self, fake: FakeIss, refusal: str = "401"):
        self.fake, self.refusal = fake, refusal
        self.logins = 0
        self.valid: str | None = None
        self.lock = threading.Lock()
        fake.reply = self.route

    def expire(self) -> None:
        with self.lock:
            self.valid = None

    def route(self, seen: Seen) -> Reply:
        if seen.path == "/authenticate":
            expected = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
            if seen.headers.get("authorization") != expected:
                return 401, {"Content-Type": "text/plain"}, b"bad credentials"
            with self.lock:
                self.logins += 1
                self.valid = f"cert-{self.logins}"
                return 200, {"Set-Cookie": f"MicexPassportCert={self.valid}; Path=/",
                             "Content-Type": "text/plain"}, b"ok"
        cookie = seen.headers.get("cookie", "")
        with self.lock:
            ok = self.valid is not None and f"MicexPassportCert={self.valid}" in cookie
        if ok:
            return js(page(rows(1)))
        if self.refusal == "html":
            return 200, {"Content-Type": "text/html"}, b"<html><form>login</form></html>"
        return js({"error": "expired"}, status=401)


def passport_client(fake: FakeIss, password: str = PASSWORD) -> IssClient:
    return client_for(fake, auth="passport", passport_url=f"{fake.url}/authenticate",
                      passport_login=LOGIN, passport_password=password)


def test_passport_cookie_obtained_and_sent(fake):
    passport = Passport(fake)
    with passport_client(fake) as client:
        client.get_block(PATH)
        client.get_block(PATH)
    assert passport.logins == 1
    assert [s.path for s in fake.seen] == ["/authenticate", PATH, PATH]
    assert "MicexPassportCert=cert-1" in fake.seen[1].headers["cookie"]
    assert "authorization" not in fake.seen[1].headers  # Basic auth goes to the passport only


@pytest.mark.parametrize("refusal", ["401", "html"])
def test_passport_expired_cookie_reauthenticates_once(fake, refusal):
    passport = Passport(fake, refusal=refusal)
    with passport_client(fake) as client:
        client.get_block(PATH)
        passport.expire()
        result = client.get_block(PATH)
    assert len(result.table) == 1
    assert passport.logins == 2
    assert [s.path for s in fake.seen] == ["/authenticate", PATH, PATH, "/authenticate", PATH]
    assert "MicexPassportCert=cert-2" in fake.seen[-1].headers["cookie"]


def test_passport_refused_twice_is_auth(fake):
    passport = Passport(fake)
    original = passport.route

    def route(seen: Seen) -> Reply:
        if seen.path == PATH:  # ISS refuses every certificate (e.g. no entitlement)
            return js({"error": "forbidden"}, status=403)
        return original(seen)

    fake.reply = route
    with passport_client(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "auth"
    assert passport.logins == 2 and len(fake.data_requests()) == 2


def test_passport_wrong_password_is_auth_and_leaks_nothing(fake, caplog):
    caplog.set_level(logging.DEBUG)
    Passport(fake)
    wrong = "wrong-Secret-42"
    with passport_client(fake, password=wrong) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "auth"
    assert fake.data_requests() == []
    texts = [str(info.value), info.value.message, repr(info.value), caplog.text, repr(client.cfg)]
    for text in texts:
        for secret in (wrong, LOGIN, base64.b64encode(f"{LOGIN}:{wrong}".encode()).decode()):
            assert secret not in text


def test_passport_logs_carry_no_cookie_or_password(fake, caplog):
    caplog.set_level(logging.DEBUG)
    passport = Passport(fake)
    with passport_client(fake) as client:
        client.get_block(PATH)
        passport.expire()
        client.get_block(PATH)
    assert "iss_passport_login" in caplog.text  # the login is logged, without what it used
    for secret in (PASSWORD, LOGIN, "cert-1", "cert-2"):
        assert secret not in caplog.text


def test_passport_concurrent_refusals_reauthenticate_once(fake):
    passport = Passport(fake)
    with passport_client(fake) as client:
        client.get_block(PATH)
        passport.expire()
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def worker() -> None:
            barrier.wait()
            try:
                client.get_block(PATH)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert passport.logins == 2


# --------------------------------------------------------------------------- reasons, ERROR_MESSAGE


def test_error_reasons_is_the_one_list():
    assert ERROR_REASONS == ("http", "timeout", "auth", "parse", "throttled", "iss_error", "too_large", "redirect")
    for reason in ERROR_REASONS:
        assert IssError(reason, "x").reason == reason
    with pytest.raises(ValueError):
        IssError("block_missing", "x")


def test_error_message_answer_is_iss_error_with_its_text_masked_and_capped(fake, caplog):
    caplog.set_level(logging.DEBUG)
    text = (f"Неверный параметр date: 2026-13-01 (apikey={API_KEY}, Bearer {API_KEY}, ключ {API_KEY}) "
            "\u2028second line " + "x" * 600)
    fake.reply = lambda seen: js({"data": {"columns": ["ERROR_MESSAGE"], "data": [[text]]}})
    with client_for(fake, auth="apikey", api_key=API_KEY) as client, pytest.raises(IssError) as info:
        client.get_block(PATH, required_columns=("tradedate", "systime"))
    exc = info.value
    assert exc.reason == "iss_error" and exc.status == 200
    assert "Неверный параметр date: 2026-13-01" in str(exc)  # what the poller logs and /jobs shows
    assert "block" not in exc.message.split("ISS:")[1][:40]  # not "block missing"
    assert API_KEY not in str(exc) and API_KEY not in caplog.text
    assert "\u2028" not in str(exc) and len(exc.message) < 400
    assert "Неверный параметр" in caplog.text
    assert len(fake.seen) == 1  # not retried


def test_mask_secrets_and_iss_error_text_pure():
    assert mask_secrets("cookie MicexPassportCert=abc123; x", ()) == "cookie MicexPassportCert=***; x"
    assert mask_secrets("login robot@example.com failed", ("robot@example.com",)) == "login *** failed"
    assert len(mask_secrets("y" * 1000)) == 300
    assert iss_error_text({"data": {"columns": ["ERROR_MESSAGE"], "data": [["no such date"]]}}, "data") == \
        "no such date"
    assert iss_error_text({"futoi": {"columns": ["ERROR_MESSAGE"], "data": [["bad"]]}}, "data") == "bad"
    assert iss_error_text({"data": {"columns": ["ERROR_MESSAGE", "x"], "data": []}}, "data") is None
    assert iss_error_text(page(rows(1)), "data") is None


# --------------------------------------------------------------------------- throttling


TOO_MANY = (403, {"Content-Type": "text/html; charset=utf-8"},
            b"<html><head><title>403 Forbidden</title></head><body>Too Many Requests</body></html>")


def test_403_too_many_requests_is_throttled_never_a_relogin(fake):
    passport = Passport(fake)
    original = passport.route
    throttle = {"on": False}

    def route(seen: Seen) -> Reply:
        if throttle["on"] and seen.path == PATH:
            return TOO_MANY
        return original(seen)

    fake.reply = route
    with passport_client(fake) as client:
        client.get_block(PATH)
        throttle["on"] = True
        with pytest.raises(IssError) as info:
            client.get_block(PATH)
    assert info.value.reason == "throttled" and info.value.status == 403
    assert passport.logins == 1  # old main: counted as auth and logged in again
    assert len(fake.data_requests()) == 2


@pytest.mark.parametrize("retry_after", ["30", "http-date"])
def test_retry_after_backs_off_the_whole_client(fake, retry_after):
    from email.utils import formatdate
    value = formatdate(time.time() + 30, usegmt=True) if retry_after == "http-date" else retry_after
    fake.reply = lambda seen: (js({"e": 1}, status=429, extra={"Retry-After": value}) if seen.path == PATH
                               else js(page(rows(1))))
    other = "/iss/datashop/algopack/fx/obstats/CNYRUB_TOM.json"
    with client_for(fake) as client:
        with pytest.raises(IssError) as first:
            client.get_block(PATH)
        assert first.value.reason == "throttled"
        assert 25 <= client.throttle_remaining() <= 31
        errors: list[IssError] = []

        def worker() -> None:
            try:
                client.get_block(other)
            except IssError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    assert len(fake.seen) == 1  # nothing else was sent while the back-off holds
    assert [e.reason for e in errors] == ["throttled"] * 4
    assert "not sent" in errors[0].message
    assert client.stats.snapshot()["requests"] == {"429": 1}


def test_throttle_backoff_without_retry_after_grows_waits_when_short_and_resets_on_success(fake):
    state = {"throttle": True}
    fake.reply = lambda seen: TOO_MANY if state["throttle"] else js(page(rows(1)))
    with client_for(fake) as client:
        client.throttle_backoff_base = 0.4
        delays = []
        for _ in range(3):
            with pytest.raises(IssError) as info:
                client.get_block(PATH)  # a back-off under 1 s is waited out, then sent
            assert info.value.reason == "throttled"
            delays.append(client.throttle_remaining())
        assert len(fake.seen) == 3
        assert 0.25 <= delays[0] <= 0.41 and 0.5 <= delays[1] <= 0.81 and 1.0 <= delays[2] <= 1.61
        with pytest.raises(IssError) as info:
            client.get_block(PATH)  # over 1 s left: fails fast, nothing sent
        assert info.value.reason == "throttled" and len(fake.seen) == 3
        state["throttle"] = False
        deadline = time.monotonic() + 5
        while client.throttle_remaining() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(client.get_block(PATH).table) == 1
        state["throttle"] = True
        with pytest.raises(IssError):
            client.get_block(PATH)
        assert client.throttle_remaining() <= 0.41  # the streak was reset by the success


def test_parse_retry_after():
    from email.utils import formatdate
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert 55 <= parse_retry_after(formatdate(time.time() + 60, usegmt=True)) <= 61


# --------------------------------------------------------------------------- one login per episode


def test_passport_refusal_episode_logs_in_once_for_the_whole_client(fake):
    passport = Passport(fake)
    original = passport.route
    refuse = {"on": False}

    def route(seen: Seen) -> Reply:
        if refuse["on"] and seen.path == PATH:
            return js({"error": "forbidden"}, status=401)
        return original(seen)

    fake.reply = route
    with passport_client(fake) as client:
        client.get_block(PATH)
        refuse["on"] = True  # ISS refuses every certificate, old and fresh
        errors: list[IssError] = []
        barrier = threading.Barrier(6)

        def worker() -> None:
            barrier.wait()
            try:
                client.get_block(PATH)
            except IssError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert [e.reason for e in errors] == ["auth"] * 6
        assert passport.logins == 2  # the first login + ONE re-login (old main: up to 7)
        for _ in range(3):  # later polls of the same episode: no login at all
            with pytest.raises(IssError):
                client.get_block(PATH)
        assert passport.logins == 2
        # a bounded cool-down: then one more login is allowed
        client.reauth_cooldown = 0.0
        with pytest.raises(IssError):
            client.get_block(PATH)
        assert passport.logins == 3
        # a success ends the episode: the next expiry gets its own single re-login
        client.reauth_cooldown = 300.0
        refuse["on"] = False
        client.get_block(PATH)
        passport.expire()
        assert len(client.get_block(PATH).table) == 1
        assert passport.logins == 4


def test_subscribers_page_is_auth_with_one_relogin(fake):
    passport = Passport(fake)
    original = passport.route

    def route(seen: Seen) -> Reply:
        if seen.path == PATH:
            return 200, {"Content-Type": "text/html; charset=utf-8"}, \
                "<html><body>Данные доступны только подписчикам / available only to subscribers</body></html>".encode()
        return original(seen)

    fake.reply = route
    with passport_client(fake) as client:
        for _ in range(3):
            with pytest.raises(IssError) as info:
                client.get_block(PATH)
            assert info.value.reason == "auth" and "subscribers" in info.value.message
    assert passport.logins == 2


def test_wrong_password_is_not_tried_again_every_poll(fake):
    passport = Passport(fake)
    with passport_client(fake, password="wrong-Secret-42") as client:
        for _ in range(3):
            with pytest.raises(IssError) as info:
                client.get_block(PATH)
            assert info.value.reason == "auth"
    assert passport.logins == 0 and [s.path for s in fake.seen] == ["/authenticate"]


# --------------------------------------------------------------------------- hostile upstream


def _ok_answer(handler: BaseHTTPRequestHandler, body: bytes | None = None) -> None:
    body = json.dumps(page(rows(1))).encode() if body is None else body
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _drip(handler: BaseHTTPRequestHandler, data: bytes, seconds_per_byte: float = 0.05) -> None:
    for index in range(len(data)):
        handler.wfile.write(data[index:index + 1])
        handler.wfile.flush()
        time.sleep(seconds_per_byte)


@pytest.mark.parametrize("where", ["headers", "body"])
def test_trickling_answer_hits_the_whole_request_deadline(where):
    body = json.dumps(page(rows(3))).encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    calls = {"n": 0}

    def handle(handler: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        if calls["n"] > 1:  # the next request gets a normal answer
            _ok_answer(handler)
            return
        if where == "headers":
            _drip(handler, head + body)  # 1 byte per 50 ms: every read is "on time"
        else:
            handler.wfile.write(head)
            handler.wfile.flush()
            _drip(handler, body)

    server = RawServer(handle)
    threads_before = threading.active_count()
    try:
        client = IssClient(IssConfig(base_url=server.url, timeout_seconds=0.6, retries=0), IssStats())
        started = time.monotonic()
        with pytest.raises(IssError) as info:
            client.get_block(PATH)
        elapsed = time.monotonic() - started
        assert info.value.reason == "timeout"
        assert elapsed < 1.5, f"the deadline is 0.6 s, the request took {elapsed:.1f} s"
        assert client.stats.snapshot()["requests"] == {"error": 1}
        # the cut connection is not reused: the next request opens a new one and succeeds
        assert len(client.get_block(PATH).table) == 1
        assert server.connections == 2
        for _ in range(5):
            client.get_block(PATH)
        assert threading.active_count() <= threads_before + 4  # one watchdog, server threads
        watchdog = client._watchdog._thread
        assert watchdog is not None and watchdog.is_alive()
        client.close()
        watchdog.join(3)
        assert not watchdog.is_alive()  # no thread left behind
    finally:
        server.close()


def test_deadline_expiry_is_retried_like_any_timeout():
    body = json.dumps(page(rows(1))).encode()
    calls = {"n": 0}

    def handle(handler: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            _drip(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 5)
        else:
            _ok_answer(handler, body)

    server = RawServer(handle)
    try:
        with IssClient(IssConfig(base_url=server.url, timeout_seconds=0.4, retries=1, backoff_seconds=0.0),
                       IssStats()) as client:
            started = time.monotonic()
            assert len(client.get_block(PATH).table) == 1
            assert time.monotonic() - started < 2.0  # old main: the trickle ran its whole 12 s
            assert client.stats.snapshot()["requests"] == {"error": 1, "200": 1}
    finally:
        server.close()


def _redirect(location: str, status: int = 302) -> Reply:
    return status, {"Location": location, "Content-Type": "text/html"}, b"moved"


@pytest.mark.parametrize("auth", ["passport", "apikey"])
def test_redirect_to_another_port_is_refused_and_sends_no_credentials(fake, auth, caplog):
    caplog.set_level(logging.DEBUG)
    foreign = FakeIss(reply=lambda seen: js(page(rows(1))))
    try:
        passport = Passport(fake)
        original = passport.route
        fake.reply = lambda seen: (_redirect(f"{foreign.url}/steal?token=xyz&cert=abc") if seen.path == PATH
                                   else original(seen))
        client = passport_client(fake) if auth == "passport" else client_for(fake, auth="apikey", api_key=API_KEY)
        with client, pytest.raises(IssError) as info:
            client.get_block(PATH)
        assert info.value.reason == "redirect"
        assert foreign.seen == []  # old main followed it with the cookie / key
        host = foreign.url.split("//")[1]
        assert host in info.value.message and host in caplog.text
        assert "xyz" not in info.value.message and "steal" not in caplog.text
        assert API_KEY not in caplog.text
    finally:
        foreign.close()


@pytest.mark.parametrize("location", ["https://127.0.0.1:{port}/iss/x.json", "http://localhost:{port}/iss/x.json"])
def test_redirect_to_another_scheme_or_host_is_refused(fake, location):
    port = fake.server.server_address[1]
    fake.reply = lambda seen: _redirect(location.format(port=port)) if seen.path == PATH else js(page(rows(1)))
    with client_for(fake, auth="apikey", api_key=API_KEY) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "redirect"
    assert len(fake.seen) == 1


def test_same_host_redirect_is_followed_with_credentials_and_bounded(fake):
    passport = Passport(fake)
    original = passport.route
    moved = "/iss/datashop/algopack/eq/tradestats/SBER-moved.json"

    def route(seen: Seen) -> Reply:
        if seen.path == PATH:
            return _redirect(f"{fake.url}{moved}?from=2026-11-25", status=301)
        if seen.path == moved:
            return original(Seen(PATH, seen.params, seen.headers))
        if seen.path.startswith("/loop"):
            return _redirect(f"/loop{len(fake.seen)}")
        return original(seen)

    fake.reply = route
    with passport_client(fake) as client:
        result = client.get_block(PATH)
        assert len(result.table) == 1
        assert [s.path for s in fake.seen] == ["/authenticate", PATH, moved]
        assert "MicexPassportCert=cert-1" in fake.seen[-1].headers["cookie"]
        with pytest.raises(IssError) as info:
            client.get_block("/loop")
        assert info.value.reason == "redirect" and "more than 5" in info.value.message
        assert sum(s.path.startswith("/loop") for s in fake.seen) == 6
        assert client.stats.snapshot()["requests"]["301"] == 1


def test_passport_login_redirect_to_another_host_is_refused(fake):
    foreign = FakeIss(reply=lambda seen: (200, {"Set-Cookie": "MicexPassportCert=evil; Path=/",
                                                "Content-Type": "text/plain"}, b"ok"))
    try:
        fake.reply = lambda seen: _redirect(f"{foreign.url}/authenticate")
        with passport_client(fake) as client, pytest.raises(IssError) as info:
            client.get_block(PATH)
        assert info.value.reason == "redirect"
        assert foreign.seen == []  # old main followed it: Basic auth stripped, but the answer's cookie used
    finally:
        foreign.close()


def test_plain_answer_over_the_cap_is_too_large(fake):
    big = page(rows(2000))
    fake.reply = lambda seen: js(big)
    with client_for(fake) as client:
        client.max_response_bytes = 10_000
        with pytest.raises(IssError) as info:
            client.get_block(PATH)
    assert info.value.reason == "too_large"
    assert client.stats.snapshot()["bytes"] == 0  # Content-Length said so: nothing read


def test_chunked_answer_over_the_cap_is_too_large_and_connection_closed():
    body = json.dumps(page(rows(3000))).encode()

    def handle(handler: BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/small"):
            _ok_answer(handler)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for offset in range(0, len(body), 4096):
            chunk = body[offset:offset + 4096]
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    server = RawServer(handle)
    try:
        with IssClient(IssConfig(base_url=server.url, retries=0), IssStats()) as client:
            client.max_response_bytes = 50_000
            with pytest.raises(IssError) as info:
                client.get_block(PATH)
            assert info.value.reason == "too_large"
            read = client.stats.snapshot()["bytes"]
            assert 50_000 <= read < 50_000 + 2 * 65536 + 4096
            client.get_block("/small")
            assert server.connections == 2
    finally:
        server.close()


BOMB_SCRIPT = r'''
import gzip, json, resource, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # old code: MemoryError, not a dead host
member = gzip.compress(b" " * (1 << 20), 9)
body = member * 1024  # gzip members concatenate: ~1 MB on the wire, 1 GiB unpacked

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass
    def log_message(self, *a):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), H)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
from exporter.config import IssConfig
from exporter.iss import IssClient, IssError, IssStats
client = IssClient(IssConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}", retries=0,
                             timeout_seconds=30), IssStats())
reason = None
try:
    client.get_block("/iss/datashop/algopack/eq/tradestats.json")
except IssError as exc:
    reason = exc.reason
except MemoryError:
    reason = "MemoryError"
from tests.rss import peak_rss_kb
print(json.dumps({"reason": reason, "maxrss_kb": peak_rss_kb(),
                  "bytes": client.stats.snapshot()["bytes"], "wire": len(body),
                  "cap": client.max_response_bytes}))
'''


def test_gzip_bomb_is_too_large_with_bounded_memory():
    import subprocess
    import sys

    from sandbox.procs import REPO_ROOT
    done = subprocess.run([sys.executable, "-c", BOMB_SCRIPT], capture_output=True, text=True, timeout=60,
                          cwd=str(REPO_ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["reason"] == "too_large"
    assert report["cap"] == 64 * 1024 * 1024  # the default iss.max_response_bytes
    assert report["maxrss_kb"] < 200 * 1024, report
    assert 0 < report["bytes"] <= report["wire"]  # wire bytes read, not the unpacked size


def test_deadline_watchdog_thread_ends_when_idle(fake, monkeypatch):
    import exporter.iss.watch as iss_watch  # the watchdog reads its idle time there
    monkeypatch.setattr(iss_watch, "WATCHDOG_IDLE_SECONDS", 0.05)
    fake.reply = lambda seen: js(page(rows(1)))
    client = client_for(fake)  # never closed, as a long-lived client would be
    client.get_block(PATH)
    thread = client._watchdog._thread
    assert thread is not None
    thread.join(3)
    assert not thread.is_alive() and client._watchdog._thread is None
    client.get_block(PATH)  # started again on demand
    assert client._watchdog._thread is not None
    client.close()


def test_passport_login_same_host_redirect_is_followed_with_basic_auth(fake):
    passport = Passport(fake)
    original = passport.route

    def route(seen: Seen) -> Reply:
        if seen.path == "/login-start":
            return _redirect("/authenticate")
        return original(seen)

    fake.reply = route
    client = client_for(fake, auth="passport", passport_url=f"{fake.url}/login-start",
                        passport_login=LOGIN, passport_password=PASSWORD)
    with client:
        assert len(client.get_block(PATH).table) == 1
    assert [s.path for s in fake.seen] == ["/login-start", "/authenticate", PATH]
    assert passport.logins == 1


def test_credentials_never_go_to_a_host_other_than_base_url(fake):
    foreign = FakeIss(reply=lambda seen: js(page(rows(1))))
    try:
        fake.reply = lambda seen: js(page(rows(1)))
        with client_for(fake, auth="apikey", api_key=API_KEY) as client:
            client.get_block(f"{foreign.url}{PATH}")  # an absolute URL elsewhere: sent bare
            client.get_block(PATH)
        assert "authorization" not in foreign.seen[0].headers
        assert fake.seen[0].headers["authorization"] == f"Bearer {API_KEY}"
    finally:
        foreign.close()


def test_throttled_passport_login_is_throttled_and_not_hammered(fake):
    fake.reply = lambda seen: TOO_MANY
    with passport_client(fake) as client:
        for _ in range(3):
            with pytest.raises(IssError) as info:
                client.get_block(PATH)
            assert info.value.reason == "throttled"  # not "auth: login refused"
    assert [s.path for s in fake.seen] == ["/authenticate"]
