"""HTTP front of the exporter: /metrics, /, /-/healthy, /-/ready, /jobs.

It survives hostile clients with a bounded number of threads (issue 14: 1200 half-open
connections used to cost 1200 threads rendering for dead peers):

* One selector thread (`selectors.DefaultSelector`, epoll on Linux: no 1024-fd limit)
  accepts connections non-blocking, reads every request's header bytes itself and finishes
  any response the client is slow to take. It never renders.
* A fixed pool of `workers` threads (4) only ever receives COMPLETE requests. After the
  response the socket goes back to the selector (HTTP/1.1 keep-alive, as Prometheus uses).

Limits (keywords of `ExporterHTTPServer`):

* `header_timeout` (5 s): a request's header must be complete within this time of its first
  byte (of the accept, for a new connection); a slowloris client is closed.
* `idle_timeout` (60 s): a keep-alive connection without a new request is closed.
* `write_timeout` (10 s): a response that makes no progress (the client does not read) for
  this long is dropped; workers never block on a write.
* `max_header_bytes` (16 KiB): a larger header gets 431 and the connection is closed.
* `max_connections` (1024, less when RLIMIT_NOFILE is low): past it the oldest connection
  that never completed a request is closed first, then the oldest idle one.

A dead client costs no rendering: before a worker renders, it peeks at the socket
(MSG_PEEK|MSG_DONTWAIT); a peer that has closed is dropped. (So is a client that half-closes
right after its request; Prometheus, curl and requests never do.)

/metrics is served by prometheus_client's WSGI app (`make_wsgi_app`), so gzip
(Accept-Encoding), OpenMetrics (Accept) and `name[]` filtering work. Renders are
coalesced per variant (negotiated content type, gzip or not, the `name[]` set): concurrent
requests share one rendering (single flight), and its bytes are reused for
`METRICS_CACHE_SECONDS` (1 s) after the render started. So an exposition can be up to 1 s
(plus one render) older than its request; Prometheus scrapes every 15 s or more and stamps
samples with its own scrape time, so this changes nothing it can see. Only 200 answers are
kept, at most 32 variants.
"""

from __future__ import annotations

import errno
import html
import io
import json
import logging
import queue
import resource
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from . import __version__

log = logging.getLogger("exporter.http")

METRICS_CACHE_SECONDS = 1.0
_MAX_CACHED_VARIANTS = 32
_RECV_BYTES = 65536
_SWEEP_SECONDS = 0.2

INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>algopack exporter</title></head>
<body><h1>algopack exporter {version}</h1>
<p>Monitors the MOEX ISS ALGOPACK feed.</p>
<ul>
<li><a href="/metrics">/metrics</a> — Prometheus exposition</li>
<li><a href="/jobs">/jobs</a> — scheduled polls with their next run (Moscow time)</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a></li>
</ul></body></html>
"""

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"

_READ, _WORK, _WRITE = "read", "work", "write"


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]   # lower-case names; repeated headers joined with ", "
    keep_alive: bool


class _BadRequest(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


class _Conn:
    __slots__ = ("sock", "fd", "inbuf", "out", "state", "deadline", "served", "keep_alive", "last_active")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out: list[memoryview] | None = None  # unsent head and body (the body may be shared)
        self.state = _READ
        self.deadline = deadline
        self.served = 0
        self.keep_alive = True
        self.last_active = time.monotonic()


def _default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft - 128))


def _peer_closed(sock: socket.socket) -> bool:
    """True if the client has closed (or reset) its side: then nothing is worth rendering."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # alive, nothing more sent
    except OSError:
        return True


def parse_request(head: bytes) -> Request:
    """Parse a request line and header block (without the final blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400, "Bad request.\n") from exc
    lines = text.split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "Bad request line.\n")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "Bad header line.\n")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    url = urlsplit(target)
    return Request(method, target, url.path or "/", url.query, version, headers, keep_alive)


class _CoalescedMetrics:
    """prometheus_client's WSGI app behind a single-flight, 1 s cache per variant."""

    def __init__(self, registry: CollectorRegistry, max_age: float):
        self.app = make_wsgi_app(registry)
        self.max_age = max_age
        self.renders = 0
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[float, tuple[str, list, bytes]]] = {}
        self._flights: dict[tuple, _Flight] = {}

    def __call__(self, environ: dict) -> tuple[str, list, bytes]:
        # The variant: what the WSGI app will answer, so that Accept spellings or unrelated query
        # parameters cannot defeat the sharing.
        key = (choose_encoder(environ.get("HTTP_ACCEPT", ""))[1], gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")),
               tuple(sorted(parse_qs(environ.get("QUERY_STRING", "")).get("name[]", ()))))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached[0] <= self.max_age:
                return cached[1]
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.done.wait(timeout=60) and flight.result is not None:
                return flight.result
            return self._render(environ)  # the leader failed: render ourselves
        started = time.monotonic()
        try:
            flight.result = self._render(environ)
            return flight.result
        finally:
            with self._lock:
                del self._flights[key]
                if flight.result is not None and flight.result[0].startswith("200"):
                    self._cache[key] = (started, flight.result)
                    while len(self._cache) > _MAX_CACHED_VARIANTS:
                        del self._cache[next(iter(self._cache))]
            flight.done.set()

    def _render(self, environ: dict) -> tuple[str, list, bytes]:
        with self._lock:
            self.renders += 1
        captured: list = []

        def start_response(status, headers, exc_info=None):
            captured[:] = [status, list(headers)]

        body = b"".join(self.app(environ, start_response))
        return captured[0], captured[1], body


class _Flight:
    __slots__ = ("done", "result")

    def __init__(self):
        self.done = threading.Event()
        self.result: tuple[str, list, bytes] | None = None


class ExporterHTTPServer:
    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 jobs: Callable[[], list[dict]], ready: Callable[[], bool], *,
                 workers: int = 4, header_timeout: float = 5.0, idle_timeout: float = 60.0,
                 write_timeout: float = 10.0, max_header_bytes: int = 16384,
                 max_connections: int | None = None, metrics_cache_seconds: float = METRICS_CACHE_SECONDS):
        self.registry = registry
        self.jobs = jobs
        self.ready = ready
        self.workers = workers
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections or _default_max_connections()
        self.metrics = _CoalescedMetrics(registry, metrics_cache_seconds)
        # Counters for tests and debugging: accepted, requests, dead_dropped, timed_out, evicted.
        self.stats = dict.fromkeys(("accepted", "requests", "dead_dropped", "timed_out", "evicted"), 0)
        self._stats_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(1024)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conns: dict[int, _Conn] = {}          # insertion order = accept order
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._returned: deque[tuple[_Conn, list[memoryview] | None]] = deque()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_paused_until = 0.0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads = [threading.Thread(target=self._select_loop, name="http-selector", daemon=True)]
        self._threads += [threading.Thread(target=self._worker, name=f"http-worker-{index}", daemon=True)
                          for index in range(self.workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for _ in range(self.workers):
            self._work.put(None)
        self._wake()
        for thread in self._threads:
            thread.join(timeout=5)
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # ---- selector thread -------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    def _select_loop(self) -> None:
        next_sweep = time.monotonic() + _SWEEP_SECONDS
        while not self._stopping.is_set():
            try:
                events = self._selector.select(_SWEEP_SECONDS)
            except OSError:  # pragma: no cover - interrupted
                continue
            for key, mask in events:
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                else:
                    conn: _Conn = key.data
                    try:
                        if conn.state == _READ and mask & selectors.EVENT_READ:
                            self._on_readable(conn)
                        elif conn.state == _WRITE and mask & selectors.EVENT_WRITE:
                            self._on_writable(conn)
                    except Exception:  # pragma: no cover - one bad connection must not stop serving
                        log.exception("http connection failed")
                        self._close(conn)
            try:
                self._take_returned()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP_SECONDS
            except Exception:  # pragma: no cover - the loop must outlive any bug
                log.exception("http selector loop failed")

    def _accept(self) -> None:
        if time.monotonic() < self._accept_paused_until:
            return
        while True:
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._evict_one():
                        self._pause_accept()
                    return
                return  # ECONNABORTED and friends: the client is gone already
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stall
            except OSError:
                pass
            conn = _Conn(sock, time.monotonic() + self.header_timeout)
            self._conns[conn.fd] = conn
            self._count("accepted")
            self._selector.register(sock, selectors.EVENT_READ, conn)
            while len(self._conns) > self.max_connections:
                if not self._evict_one():
                    break

    def _pause_accept(self) -> None:
        # Out of descriptors and nothing to evict: stop polling the listener for a moment
        # instead of spinning on a readable listener.
        self._accept_paused_until = time.monotonic() + 0.1
        try:
            self._selector.unregister(self._listener)
        except (KeyError, ValueError):
            pass

    def _evict_one(self) -> bool:
        """Close the oldest connection that never completed a request, else the longest idle one
        (a scraper that keeps its connection busy is the last to go)."""
        victim = None
        for conn in self._conns.values():
            if conn.state == _READ:
                if conn.served == 0:
                    victim = conn
                    break
                if victim is None or conn.last_active < victim.last_active:
                    victim = conn
        if victim is None:
            return False
        self._count("evicted")
        self._close(victim)
        return True

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if not conn.inbuf and conn.served:
            conn.deadline = time.monotonic() + self.header_timeout  # first byte of the next request
        conn.inbuf += data
        self._try_dispatch(conn)

    def _try_dispatch(self, conn: _Conn) -> None:
        end = conn.inbuf.find(b"\r\n\r\n", 0, self.max_header_bytes + 4)
        if end < 0:
            if len(conn.inbuf) > self.max_header_bytes:
                self._reject(conn, 431, "Request header too large.\n")
            return
        head = bytes(conn.inbuf[:end])
        del conn.inbuf[:end + 4]
        try:
            request = parse_request(head)
        except _BadRequest as exc:
            self._reject(conn, exc.status, exc.text)
            return
        self._selector.unregister(conn.sock)
        conn.state = _WORK
        self._work.put((conn, request))

    def _reject(self, conn: _Conn, status: int, text: str) -> None:
        """Answer an unparseable request from the selector thread (best effort) and close."""
        data = b"".join(_serialize(status, [("Content-Type", TEXT)], text.encode(), keep_alive=False))
        try:
            conn.sock.send(data)
        except OSError:
            pass
        self._close(conn)

    def _on_writable(self, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.sendmsg(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = _advance(conn.out, sent)
        conn.deadline = time.monotonic() + self.write_timeout
        if not conn.out:
            conn.out = None
            self._selector.unregister(conn.sock)
            self._back_to_reading(conn)

    def _take_returned(self) -> None:
        while self._returned:
            conn, rest = self._returned.popleft()
            try:
                if rest is None:
                    self._back_to_reading(conn)
                else:
                    conn.state = _WRITE
                    conn.out = rest
                    conn.deadline = time.monotonic() + self.write_timeout
                    self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            except Exception:  # pragma: no cover - e.g. a socket that died meanwhile
                log.exception("http connection failed")
                self._close(conn)

    def _back_to_reading(self, conn: _Conn) -> None:
        if not conn.keep_alive:
            self._close(conn)
            return
        conn.state = _READ
        conn.last_active = time.monotonic()
        conn.deadline = time.monotonic() + (self.header_timeout if conn.inbuf else self.idle_timeout)
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.inbuf:
            self._try_dispatch(conn)  # a pipelined request is already here

    def _sweep(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        expired = [conn for conn in self._conns.values() if conn.state != _WORK and now >= conn.deadline]
        for conn in expired:
            self._count("timed_out")
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        if conn.state != _WORK:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        try:
            conn.sock.close()
        except OSError:
            pass

    # ---- workers ---------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            conn, request = item
            try:
                self._serve(conn, request)
            except Exception:  # pragma: no cover - the server must outlive any bug
                log.exception("http worker failed path=%s", request.path)
                conn.keep_alive = False
                self._returned.append((conn, None))
                self._wake()

    def _serve(self, conn: _Conn, request: Request) -> None:
        self._count("requests")
        if _peer_closed(conn.sock):
            self._count("dead_dropped")
            conn.keep_alive = False
            self._returned.append((conn, None))
            self._wake()
            return
        conn.keep_alive = request.keep_alive
        status, headers, body = self._respond(request)
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            conn.keep_alive = False  # we never read request bodies: do not parse one as the next request
        parts = _serialize(status, headers, body, keep_alive=conn.keep_alive, version=request.version,
                           head=request.method == "HEAD")
        conn.served += 1
        views = [memoryview(part) for part in parts if part]
        try:
            sent = conn.sock.sendmsg(views)  # non-blocking: the rest, if any, goes out from the selector
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            conn.keep_alive = False
            sent = sum(len(view) for view in views)
        rest = _advance(views, sent)
        self._returned.append((conn, rest if rest else None))
        self._wake()

    def _respond(self, request: Request) -> tuple[int | str, list[tuple[str, str]], bytes]:
        if request.method not in ("GET", "HEAD"):
            return 405, [("Content-Type", TEXT), ("Allow", "GET, HEAD")], b"Method not allowed.\n"
        try:
            if request.path == "/metrics":
                status, headers, body = self.metrics(self._environ(request))
                return status, headers, body
            if request.path == "/":
                return 200, [("Content-Type", HTML)], INDEX.format(version=__version__).encode()
            if request.path == "/-/healthy":
                return 200, [("Content-Type", TEXT)], b"Healthy.\n"
            if request.path == "/-/ready":
                if self.ready():
                    return 200, [("Content-Type", TEXT)], b"Ready.\n"
                return 503, [("Content-Type", TEXT)], b"Not ready: first polls still running.\n"
            if request.path == "/jobs":
                return self._jobs(parse_qs(request.query).get("format", ["html"])[0])
            return 404, [("Content-Type", TEXT)], b"Not found.\n"
        except Exception:  # the server must outlive any bug in a page
            log.exception("http handler failed path=%s", request.path)
            return 500, [("Content-Type", TEXT)], b"Internal error.\n"

    def _environ(self, request: Request) -> dict:
        host, port = self.server_address[:2]
        environ = {
            "REQUEST_METHOD": "GET",  # HEAD is GET without the body (the WSGI app answers HEAD with 405)
            "SCRIPT_NAME": "",
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": request.version,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            if name not in ("content-length", "content-type"):
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return environ

    def _jobs(self, fmt: str) -> tuple[int, list[tuple[str, str]], bytes]:
        jobs = self.jobs()
        if fmt == "json":
            return 200, [("Content-Type", "application/json")], json.dumps(jobs, ensure_ascii=False).encode()
        if fmt == "text":
            lines = []
            for job in jobs:
                line = f"{job['id']:<28} next={job['next_run'] or '-'}"
                if job.get("last_error"):
                    line += f"  last_error={' '.join(str(job['last_error']).split())}"
                lines.append(line)
            return 200, [("Content-Type", TEXT)], ("\n".join(lines) + "\n").encode()
        rows = "".join(f"<tr><td>{html.escape(job['id'])}</td><td>{html.escape(job['next_run'] or '—')}</td>"
                       f"<td>{html.escape(str(job.get('last_error') or ''))}</td></tr>"
                       for job in jobs)
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>jobs</title></head><body>"
                f"<h1>Scheduled polls</h1><table><tr><th>job</th><th>next run (Moscow)</th>"
                f"<th>last error</th></tr>{rows}</table></body></html>")
        return 200, [("Content-Type", HTML)], body.encode()


def _serialize(status: int | str, headers: list[tuple[str, str]], body: bytes, *, keep_alive: bool,
               version: str = "HTTP/1.1", head: bool = False) -> tuple[bytes, bytes]:
    """The response head and body, kept apart so a cached body is never copied per client."""
    if isinstance(status, int):
        status = f"{status} {HTTPStatus(status).phrase}"
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes, b"" if head else body


def _advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """What is left of `views` after `sent` bytes went out."""
    rest = []
    for view in views:
        if sent >= len(view):
            sent -= len(view)
            continue
        rest.append(view[sent:])
        sent = 0
    return rest
