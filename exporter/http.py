"""The exporter's pages: /metrics, /, /-/healthy, /-/ready, /jobs.

They run on `BoundedHTTPServer` (exporter/httpserver.py): one selector thread, 4 workers
that get only complete requests, header/idle/write deadlines, a connection cap, and no work
for a client that has gone (the limits are in that module's docstring).

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

import html
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from . import __version__
from .httpserver import TEXT, BoundedHTTPServer, Request

log = logging.getLogger("exporter.http")

METRICS_CACHE_SECONDS = 1.0
_MAX_CACHED_VARIANTS = 32

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

HTML = "text/html; charset=utf-8"


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


class ExporterHTTPServer(BoundedHTTPServer):
    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 jobs: Callable[[], list[dict]], ready: Callable[[], bool], *,
                 metrics_cache_seconds: float = METRICS_CACHE_SECONDS, **limits):
        super().__init__(address, **limits)
        self.registry = registry
        self.jobs = jobs
        self.ready = ready
        self.metrics = _CoalescedMetrics(registry, metrics_cache_seconds)

    def respond(self, request: Request) -> tuple[int | str, list[tuple[str, str]], bytes]:
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
