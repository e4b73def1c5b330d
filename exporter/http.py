"""HTTP serving: /metrics, /, /-/healthy, /-/ready, /jobs."""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from . import __version__

log = logging.getLogger("exporter.http")

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


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 jobs: Callable[[], list[dict]], ready: Callable[[], bool]):
        super().__init__(address, _Handler)
        self.registry = registry
        self.jobs = jobs
        self.ready = ready
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s", format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        try:
            if url.path == "/metrics":
                self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
            elif url.path == "/":
                self._send(200, INDEX.format(version=__version__).encode(), "text/html; charset=utf-8")
            elif url.path == "/-/healthy":
                self._send(200, b"Healthy.\n", "text/plain; charset=utf-8")
            elif url.path == "/-/ready":
                if self.server.ready():
                    self._send(200, b"Ready.\n", "text/plain; charset=utf-8")
                else:
                    self._send(503, b"Not ready: first polls still running.\n", "text/plain; charset=utf-8")
            elif url.path == "/jobs":
                self._jobs(parse_qs(url.query).get("format", ["html"])[0])
            else:
                self._send(404, b"Not found.\n", "text/plain; charset=utf-8")
        except Exception:  # the server must outlive any bug in a page
            log.exception("http handler failed path=%s", url.path)
            self._send(500, b"Internal error.\n", "text/plain; charset=utf-8")

    def _jobs(self, fmt: str) -> None:
        jobs = self.server.jobs()
        if fmt == "json":
            self._send(200, json.dumps(jobs, ensure_ascii=False).encode(), "application/json")
            return
        if fmt == "text":
            lines = [f"{job['id']:<28} next={job['next_run'] or '-'}" for job in jobs]
            self._send(200, ("\n".join(lines) + "\n").encode(), "text/plain; charset=utf-8")
            return
        rows = "".join(f"<tr><td>{html.escape(job['id'])}</td><td>{html.escape(job['next_run'] or '—')}</td></tr>"
                       for job in jobs)
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>jobs</title></head><body>"
                f"<h1>Scheduled polls</h1><table><tr><th>job</th><th>next run (Moscow)</th></tr>{rows}</table>"
                f"</body></html>")
        self._send(200, body.encode(), "text/html; charset=utf-8")
