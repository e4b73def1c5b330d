"""A fake Healthchecks: an HTTP endpoint that counts pings (any GET/POST on /ping/<check>).

Stands in for ALERTMANAGER_HEARTBEAT_URL in tests: Alertmanager POSTs the always-firing
AlgopackWatchdog there through its webhook receiver.

    with FakeHeartbeat() as hb:
        url = hb.url + "/ping/algopack"          # ALERTMANAGER_HEARTBEAT_URL
        hb.wait_for_pings(2, timeout=30)
        hb.pings()                               # [{"ts", "check", "method", "alerts"}]
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHeartbeat:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self._pings: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-heartbeat", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, check: str, method: str, body: bytes) -> None:
        alerts: list[str] = []
        try:
            payload = json.loads(body) if body else {}
            alerts = [a.get("labels", {}).get("alertname", "?") for a in payload.get("alerts", [])]
        except (ValueError, AttributeError):
            pass
        with self._lock:
            self._pings.append({"ts": time.time(), "check": check, "method": method, "alerts": alerts})

    def pings(self, check: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self._pings if check is None or p["check"] == check]

    def wait_for_pings(self, count: int, timeout: float, check: str | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(pings := self.pings(check)) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pings)} of {count} pings within {timeout:.0f}s")
            time.sleep(0.2)
        return pings

    def __enter__(self) -> FakeHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(fake: FakeHeartbeat) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not self.path.startswith("/ping/"):
                self.send_response(404)
                self.end_headers()
                return
            fake.record(self.path[len("/ping/"):].split("?")[0], method, body)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

    return Handler
