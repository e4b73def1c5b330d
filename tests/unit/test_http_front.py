"""The exporter's HTTP front: protocol (/metrics via prometheus_client's WSGI app, HEAD,
keep-alive, /jobs) and hostile clients (half-open storms, slowloris, dead and non-reading
peers, too many connections), against the real ExporterHTTPServer on a loopback port."""

from __future__ import annotations

import gzip
import http.client
import json
import resource
import socket
import statistics
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from exporter.app import ExporterApp
from exporter.clock import MSK, ManualClock
from exporter.config import load_config
from exporter.http import ExporterHTTPServer
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]


def real_app(tmp_path: Path) -> ExporterApp:
    """The exporter's real registry (collector + process collector) with every pair configured;
    ISS is unreachable and never called (nothing is started but the HTTP front)."""
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"iss": {"base_url": "http://127.0.0.1:9", "auth": "none"},
                                   "calendar": {"file": str(REPO / "calendar.yml")}}))
    return ExporterApp(load_config(str(cfg)), ManualClock(datetime(2026, 11, 25, 11, 0, tzinfo=MSK)))


def start_server(registry, jobs=list, ready=lambda: True, **options) -> ExporterHTTPServer:
    server = ExporterHTTPServer(("127.0.0.1", 0), registry, jobs, ready, **options)
    server.start()
    return server


def port_of(server) -> int:
    return server.server_address[1]


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def connect(server, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(server)), timeout=timeout)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed `sock` (EOF or reset) within `timeout`."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return True
        if data == b"":
            return True
    return False


# Five scrapes that each need their own rendering (no two share a cached variant).
UNCACHED_VARIANTS = (
    ("/metrics", {}),
    ("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}),
    ("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"}),
    ("/metrics", {"Accept": "text/plain; version=1.0.0"}),
    ("/metrics?name[]=algopack_up", {}),
)


def timed_scrape(server, path: str = "/metrics", headers: dict | None = None) -> tuple[float, int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return time.perf_counter() - started, response.status, body
    finally:
        conn.close()


@pytest.fixture
def app(tmp_path):
    app = real_app(tmp_path)
    yield app
    app.client.close()


@pytest.fixture
def front(app):
    server = start_server(app.registry, app.jobs)
    yield server
    server.stop()


class _GatedCollector:
    """Counts renders; the first one waits on `gate` (to line requests up behind it)."""

    def __init__(self, help_text: str = "test gauge"):
        self.gate = threading.Event()
        self.renders = 0
        self.help_text = help_text

    def collect(self):
        self.renders += 1
        if self.renders == 1:
            self.gate.wait(timeout=20)
        family = GaugeMetricFamily("gated_renders", self.help_text)
        family.add_metric([], self.renders)
        yield family


# ---- protocol ---------------------------------------------------------------------------


def test_metrics_negotiates_gzip_openmetrics_and_name_filter(app, front):
    conn = http.client.HTTPConnection("127.0.0.1", port_of(front), timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        raw = response.read()
        assert response.status == 200 and response.getheader("Content-Encoding") == "gzip"
        plain = gzip.decompress(raw).decode()
        assert 'algopack_up{endpoint="tradestats",market="eq"}' in plain and "process_max_fds" in plain

        conn.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.getheader("Content-Type").startswith("application/openmetrics-text")
        assert body.endswith("# EOF\n") and response.getheader("Content-Encoding") is None

        conn.request("GET", "/metrics?name[]=algopack_up&name[]=process_max_fds")
        response = conn.getresponse()
        samples = [line for line in response.read().decode().splitlines() if line and not line.startswith("#")]
        assert samples and {line.split("{")[0].split(" ")[0] for line in samples} == {"algopack_up", "process_max_fds"}
        assert len([line for line in samples if line.startswith("algopack_up{")]) == len(app.store.snapshot.pairs)
    finally:
        conn.close()


def test_head_and_keep_alive_serve_several_requests_on_one_connection(front):
    conn = http.client.HTTPConnection("127.0.0.1", port_of(front), timeout=10)
    try:
        conn.request("HEAD", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and int(response.getheader("Content-Length")) > 1000
        assert response.read() == b""
        local = conn.sock.getsockname()
        for path, text in (("/metrics", "algopack_up"), ("/-/healthy", "Healthy."), ("/", "algopack exporter")):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200 and text in response.read().decode()
            assert conn.sock is not None and conn.sock.getsockname() == local  # same TCP connection
        conn.request("HEAD", "/-/ready")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        conn.request("GET", "/nope")
        response = conn.getresponse()
        assert response.status == 404 and response.read() == b"Not found.\n"
        assert conn.sock.getsockname() == local
    finally:
        conn.close()


def test_pipelined_requests_and_connection_close(front):
    sock = connect(front)
    try:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.count(b"Healthy.\n") == 2
        assert b"Connection: close" in data  # and the server closed after the second answer (loop ended)
    finally:
        sock.close()


def test_jobs_formats_show_the_last_error_escaped(app, front):
    app.scheduler.jobs = lambda: [{"id": "poll:eq:tradestats", "name": "eq tradestats",
                                   "next_run": "2026-11-25T11:01:20+03:00"},
                                  {"id": "poll:fx:hi2", "name": "fx hi2", "next_run": None}]
    state = app.store.get(("eq", "tradestats"))
    app.store.put(replace(state, last_error="ISS said <b>no</b> & bye"))
    _, status, body = timed_scrape(front, "/jobs")
    page = body.decode()
    assert status == 200 and "ISS said &lt;b&gt;no&lt;/b&gt; &amp; bye" in page and "<b>no</b>" not in page
    assert "poll:fx:hi2" in page and "—" in page
    _, _, body = timed_scrape(front, "/jobs?format=json")
    jobs = {job["id"]: job for job in json.loads(body)}
    assert jobs["poll:eq:tradestats"]["last_error"] == "ISS said <b>no</b> & bye"
    assert jobs["poll:fx:hi2"]["last_error"] is None and jobs["poll:fx:hi2"]["next_run"] is None
    _, _, body = timed_scrape(front, "/jobs?format=text")
    lines = body.decode().splitlines()
    assert lines[0].startswith("poll:eq:tradestats") and "next=2026-11-25T11:01:20+03:00" in lines[0]
    assert "last_error=ISS said <b>no</b> & bye" in lines[0] and lines[1].endswith("next=-")


def test_ready_and_errors_keep_their_texts():
    registry = CollectorRegistry()
    ready = threading.Event()
    server = start_server(registry, ready=ready.is_set)
    try:
        _, status, body = timed_scrape(server, "/-/ready")
        assert status == 503 and body == b"Not ready: first polls still running.\n"
        ready.set()
        assert timed_scrape(server, "/-/ready")[1:] == (200, b"Ready.\n")
        server.jobs = lambda: 1 / 0
        assert timed_scrape(server, "/jobs")[1:] == (500, b"Internal error.\n")
        assert timed_scrape(server, "/-/healthy")[1:] == (200, b"Healthy.\n")
    finally:
        server.stop()


def test_concurrent_scrapes_share_one_render_and_later_ones_are_fresh():
    collector = _GatedCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    server = start_server(registry, workers=4)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(timed_scrape(server)[2])) for _ in range(10)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: server.stats["requests"] >= 4 and server._work.qsize() >= 6, 10,
                   what="10 scrapes in: 4 with workers, 6 queued")
        collector.gate.set()
        for thread in threads:
            thread.join(timeout=10)
        assert len(results) == 10 and all(b"gated_renders 1.0" in body for body in results)
        assert collector.renders == 1
        # The shared bytes live at most ~1 s: a later scrape renders again.
        wait_until(lambda: b"gated_renders 2.0" in timed_scrape(server)[2], 3, step=0.1,
                   what="a fresh render after the cache expired")
    finally:
        collector.gate.set()
        server.stop()


# ---- hostile clients ----------------------------------------------------------------------


def test_dead_clients_cost_no_rendering():
    collector = _GatedCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    server = start_server(registry, workers=1, metrics_cache_seconds=0)
    live = threading.Thread(target=timed_scrape, args=(server,))
    try:
        live.start()  # occupies the only worker (its render waits on the gate)
        wait_until(lambda: collector.renders == 1, 10, what="the live scrape rendering")
        dead = []
        for _ in range(200):
            sock = connect(server)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            dead.append(sock)
        for sock in dead:
            sock.close()
        wait_until(lambda: server._work.qsize() == 200, 10, what="200 dead requests queued")
        collector.gate.set()
        wait_until(lambda: server.stats["requests"] == 201 and server.open_connections == 0, 10,
                   what="every request handled")
        assert server.stats["dead_dropped"] == 200
        assert collector.renders == 1
        assert timed_scrape(server)[1] == 200 and collector.renders == 2
    finally:
        collector.gate.set()
        live.join(timeout=10)
        server.stop()


def test_slowloris_header_is_closed_after_the_header_deadline():
    server = start_server(CollectorRegistry(), header_timeout=1.0)
    started = time.monotonic()
    sock = connect(server)
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - started < 5:  # a header byte every 0.2 s, never the blank line
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            if closed_by_peer(sock, 0.2):
                closed = True
                break
        elapsed = time.monotonic() - started
        assert closed and 0.9 <= elapsed <= 4.0, elapsed
        silent = connect(server)  # connects and never sends a byte: same deadline
        assert closed_by_peer(silent, 3.0)
        silent.close()
        assert server.stats["timed_out"] >= 2
        assert timed_scrape(server, "/-/healthy")[1] == 200
    finally:
        sock.close()
        server.stop()


def test_idle_keep_alive_connection_is_closed_and_big_header_refused():
    server = start_server(CollectorRegistry(), idle_timeout=0.5, max_header_bytes=1024)
    try:
        sock = connect(server)
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Healthy." in sock.recv(65536)
        assert closed_by_peer(sock, 3.0)
        sock.close()
        sock = connect(server)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 2000 + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 431 ")
        assert closed_by_peer(sock, 3.0)
        sock.close()
    finally:
        server.stop()


def test_a_client_that_never_reads_does_not_pin_a_worker():
    registry = CollectorRegistry()
    registry.register(_BigCollector())
    server = start_server(registry, workers=1, write_timeout=3.0)
    reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", port_of(server)))
        reader.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # 16 MB answer, never read
        wait_until(lambda: server.stats["requests"] == 1, 10, what="the big answer started")
        elapsed, status, _ = timed_scrape(server, "/-/healthy")  # the only worker is free
        assert status == 200 and elapsed < 1.5  # well before the stalled write times out
        wait_until(lambda: server.stats["timed_out"] == 1 and server.open_connections == 0, 10,
                   what="the stalled write dropped")
    finally:
        reader.close()
        server.stop()


class _BigCollector:
    def collect(self):
        yield GaugeMetricFamily("big", "x" * 16_000_000, value=1)


def test_too_many_connections_evict_the_oldest_silent_ones():
    server = start_server(CollectorRegistry(), max_connections=8, header_timeout=30)
    silent = [connect(server) for _ in range(20)]
    try:
        wait_until(lambda: server.stats["accepted"] == 20, 10, what="20 accepted")
        assert server.open_connections <= 8 and server.stats["evicted"] >= 12
        assert all(closed_by_peer(sock, 2.0) for sock in silent[:12])
        assert timed_scrape(server, "/-/healthy")[1] == 200
    finally:
        for sock in silent:
            sock.close()
        server.stop()


def test_1000_half_open_connections_leave_scrapes_fast_and_threads_bounded(app):
    raise_nofile(4096)
    baseline = threading.active_count()
    server = start_server(app.registry, app.jobs, header_timeout=30)  # the half-open ones stay open
    socks: list[socket.socket] = []
    try:
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
        for index in range(1000):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port_of(server)))
            kind = index % 4
            if kind == 1:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # partial header
            elif kind >= 2:
                sock.sendall(request)  # full request, then: close at once (2) or never read (3)
            if kind == 2:
                sock.close()
            else:
                socks.append(sock)
        wait_until(lambda: server.stats["accepted"] >= 1000, 30, what="1000 accepted")
        renders = server.metrics.renders
        times = []
        for path, headers in UNCACHED_VARIANTS:  # real renderings, not the attack's cached bytes
            elapsed, status, _ = timed_scrape(server, path, headers)
            assert status == 200
            times.append(elapsed)
        assert server.metrics.renders >= renders + len(UNCACHED_VARIANTS)
        assert server.open_connections >= 700  # the half-open ones are still there
        assert statistics.median(times) < 0.1, times
        assert threading.active_count() <= baseline + server.workers + 1 <= 20
        wait_until(lambda: server.stats["requests"] >= 500 + len(times), 30, what="every full request handled")
        assert server.stats["dead_dropped"] >= 1
        assert server.metrics.renders < 50  # ~500 /metrics requests shared a few renders
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_a_big_answer_to_a_slow_reader_arrives_whole_and_the_connection_stays_usable():
    registry = CollectorRegistry()
    registry.register(_BigCollector())
    server = start_server(registry, workers=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port_of(server)))
        sock.settimeout(10)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: server.stats["requests"] == 1, 10, what="the big answer started")
        data = bytearray()
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        body = bytearray(body)
        while len(body) < length:  # the rest comes from the selector thread, in pieces
            chunk = sock.recv(1 << 20)
            assert chunk
            body += chunk
        assert length > 16_000_000 and len(body) == length and body.endswith(b"big 1.0\n")
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).endswith(b"Healthy.\n")
    finally:
        sock.close()
        server.stop()


def _exchange(server, raw: bytes) -> tuple[bytes, bool]:
    """Send `raw`, read the answer; True if the server then closed the connection."""
    sock = connect(server)
    try:
        sock.sendall(raw)
        sock.settimeout(5)
        data = sock.recv(65536)
        return data, closed_by_peer(sock, 1.0)
    finally:
        sock.close()


def test_bad_requests_methods_and_http_1_0():
    server = start_server(CollectorRegistry())
    try:
        data, closed = _exchange(server, b"BLAH\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 ") and closed
        data, closed = _exchange(server, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert data.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in data and closed
        data, closed = _exchange(server, b"GET /-/healthy HTTP/1.0\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"Healthy.\n") and closed
        data, closed = _exchange(server, b"GET /-/healthy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"Connection: keep-alive" in data and not closed
    finally:
        server.stop()
