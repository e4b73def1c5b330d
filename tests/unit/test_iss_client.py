"""IssClient against a tiny scripted ISS on 127.0.0.1 (real HTTP, real sockets, real retries)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from exporter.config import IssConfig
from exporter.iss import IssClient, IssError, IssStats, describe_url, parse_block
from sandbox.procs import free_port

LOGIN, PASSWORD, API_KEY = "robot@example.com", "pa55-Very-Secret", "key-0123456789abcdef"
COLUMNS = ["TRADEDATE", "TRADETIME", "SECID", "SYSTIME"]


def rows(n: int, first: int = 0) -> list[list]:
    return [["2026-11-25", f"10:{(first + i) % 60:02d}:00", "SBER", "2026-11-25 10:05:11"]
            for i in range(n)]


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class FakeIss:
    """`route(seen) -> (status, headers, body)`; every request is recorded in `seen`."""

    route: Callable[[Seen], Reply] | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                seen = Seen(parts.path, params, {k.lower(): v for k, v in self.headers.items()})
                fake.seen.append(seen)
                status, headers, body = fake.route(seen)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def data_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/iss/")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def js(payload: object, status: int = 200, extra: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json; charset=utf-8", **(extra or {})}, json.dumps(payload).encode()


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

    fake.route = route
    with client_for(fake) as client:
        result = client.get_block(PATH, {"from": "2026-11-25", "till": "2026-11-25"},
                                  required_columns=("tradedate", "tradetime", "systime"))
    assert [s.params["start"] for s in fake.seen] == ["0", "2", "4"]
    assert all(s.params["iss.meta"] == "off" for s in fake.seen)
    assert all(s.params["iss.only"] == "data,data.cursor" for s in fake.seen)
    assert all(s.params["from"] == "2026-11-25" for s in fake.seen)
    assert all(s.headers["cache-control"] == "no-cache" for s in fake.seen)
    assert fake.seen[0].headers["user-agent"].startswith("algopack-monitor/")
    assert list(result.frame.columns) == ["tradedate", "tradetime", "secid", "systime"]
    assert list(result.frame["tradetime"]) == [r[1] for r in all_rows]
    assert (result.total, result.pages, result.status, result.truncated) == (5, 3, 200, False)


def test_answer_without_cursor_is_one_page_even_if_full(fake):
    # iss-api §11: routes without a cursor block (FUTOI) ignore `start`; paging them fetched
    # the same rows again and again (old main: 100 requests, the page cap)
    fake.route = lambda seen: js(page(rows(3), cursor=None))
    with client_for(fake) as client:
        result = client.get_block(PATH)
    assert [s.params["start"] for s in fake.seen] == ["0"]
    assert len(result.frame) == 3 and result.total is None and result.pages == 1
    assert not result.truncated


def test_answer_without_cursor_at_the_1000_row_cap_is_truncated_and_logged_once(fake, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.iss")
    fake.route = lambda seen: js(page(rows(1000), cursor=None))
    with client_for(fake) as client:
        first = client.get_block(PATH)
        second = client.get_block(PATH)
    assert len(fake.seen) == 2  # one request per call
    assert first.truncated and second.truncated and len(first.frame) == 1000
    assert caplog.text.count("iss_answer_truncated") == 1


def test_paging_advances_by_rows_returned_not_by_pagesize(fake):
    # the cursor claims PAGESIZE 4 but the server hands out 4, then 4, then 1 of 9
    all_rows = rows(9)
    fake.route = lambda seen: js(page(all_rows[int(seen.params["start"]):int(seen.params["start"]) + 4],
                                      cursor=(int(seen.params["start"]), 9, 4)))
    with client_for(fake) as client:
        result = client.get_block(PATH, start=0)
    assert [s.params["start"] for s in fake.seen] == ["0", "4", "8"]
    assert len(result.frame) == 9 and result.total == 9


def test_max_pages_guard_when_server_ignores_start(fake):
    fake.route = lambda seen: js(page(rows(2), cursor=(0, 1000, 2)))
    with client_for(fake) as client:
        result = client.get_block(PATH, max_pages=4)
    assert len(fake.seen) == 4
    assert result.truncated and result.pages == 4 and len(result.frame) == 8


def test_first_page_only(fake):
    fake.route = lambda seen: js(page(rows(2), cursor=(0, 10, 2)))
    with client_for(fake) as client:
        result = client.get_block(PATH, all_pages=False, start=6)
    assert [s.params["start"] for s in fake.seen] == ["6"]
    assert result.total == 10 and len(result.frame) == 2


def test_columns_param_sent_and_frame_trimmed_even_if_ignored(fake):
    fake.route = lambda seen: js(page(rows(1)))
    with client_for(fake) as client:
        result = client.get_block(PATH, columns=("tradetime", "systime"), required_columns=("secid",))
    assert fake.seen[0].params["data.columns"] == "tradetime,systime,secid"
    assert list(result.frame.columns) == ["tradetime", "systime", "secid"]


def test_other_block_name(fake):
    futoi_rows = [["ri", "x"], ["ri", "y"]]
    # no cursor block (FUTOI, iss-api §11): one request, `start` ignored by ISS
    fake.route = lambda seen: js({"futoi": {"columns": ["ticker", "systime"],
                                            "data": futoi_rows[int(seen.params["start"]):]}})
    with client_for(fake) as client:
        result = client.get_block("/iss/analyticalproducts/futoi/securities/ri.json", block="futoi")
    assert fake.seen[0].params["iss.only"] == "futoi,futoi.cursor"
    assert [s.params["start"] for s in fake.seen] == ["0"]
    assert list(result.frame["systime"]) == ["x", "y"]


# --------------------------------------------------------------------------- errors


def test_missing_required_column_is_parse_error(fake):
    fake.route = lambda seen: js(page(rows(1)))
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH, required_columns=("tradedate", "pr_close"))
    assert info.value.reason == "parse" and "pr_close" in info.value.message


def test_malformed_json_is_parse_error(fake):
    fake.route = lambda seen: (200, {"Content-Type": "application/json"}, b'{"data": {"columns": [')
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "parse"


def test_missing_block_is_parse_error(fake):
    fake.route = lambda seen: js({"other": {"columns": [], "data": []}})
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "parse"


def test_parse_block_pure():
    frame = parse_block(page(rows(2)), "data", ("SYSTIME",))
    assert list(frame.columns) == ["tradedate", "tradetime", "secid", "systime"] and len(frame) == 2
    empty = parse_block(page([]), "data", ("systime",))
    assert empty.empty and "systime" in empty.columns
    with pytest.raises(IssError, match="row 1") as info:
        parse_block({"data": {"columns": ["a", "b"], "data": [[1, 2], [1]]}}, "data", ())
    assert info.value.reason == "parse"
    with pytest.raises(IssError) as info:
        parse_block(["not", "a", "dict"], "data", ())  # type: ignore[arg-type]
    assert info.value.reason == "parse"


def test_html_answer_is_auth_error(fake):
    fake.route = lambda seen: (200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>login</html>")
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "auth" and "text/html" in info.value.message


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_auth_errors(fake, status):
    fake.route = lambda seen: js({"error": "no"}, status=status)
    with client_for(fake) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "auth" and info.value.status == status
    assert len(fake.seen) == 1


def test_500_retried_then_success(fake):
    def route(seen: Seen) -> Reply:
        if len(fake.seen) == 1:
            return js({"error": "boom"}, status=500)
        return js(page(rows(1)))

    fake.route = route
    with client_for(fake) as client:
        result = client.get_block(PATH)
        snap = client.stats.snapshot()
    assert len(fake.seen) == 2 and len(result.frame) == 1
    assert snap["requests"] == {"500": 1, "200": 1}


def test_503_forever_is_http_error_after_retries(fake):
    fake.route = lambda seen: js({"error": "busy"}, status=503, extra={"Retry-After": "0"})
    with client_for(fake, retries=2) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "http" and info.value.status == 503
    assert len(fake.seen) == 3
    assert client.stats.snapshot()["requests"] == {"503": 3}


def test_429_is_throttled_and_not_retried(fake):
    fake.route = lambda seen: js({"error": "slow down"}, status=429, extra={"Retry-After": "3600"})
    with client_for(fake, retries=2) as client, pytest.raises(IssError) as info:
        client.get_block(PATH)
    assert info.value.reason == "throttled" and info.value.status == 429
    assert len(fake.seen) == 1


def test_read_timeout_is_timeout_error(fake):
    def route(seen: Seen) -> Reply:
        time.sleep(0.6)
        return js(page(rows(1)))

    fake.route = route
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

    fake.route = route
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
    fake.route = lambda seen: js(page(rows(1)))
    with client_for(fake, auth="apikey", api_key=API_KEY) as client:
        client.get_block(PATH)
    assert fake.seen[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in repr(client.cfg)


def test_no_authorization_header_in_none_mode(fake):
    fake.route = lambda seen: js(page(rows(1)))
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
        fake.route = self.route

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
    assert len(result.frame) == 1
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

    fake.route = route
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
