"""Helpers shared by the test suites (plain functions and classes; the fixtures built on them
live in tests/conftest.py).

- `wait_until`: poll a predicate until it holds (the one copy; no fixed sleeps in tests).
- `free_port`: a free loopback port (re-exported from sandbox.procs).
- `need_binary`: an external program a test runs; missing, the test fails (skips only with
  ALGOPACK_TESTS_ALLOW_MISSING_BINARIES=1). The `needs_binary(...)` marker calls it.
- `FakeIss`: the one scripted ISS stand-in on 127.0.0.1, recording every request. It answers
  either through one raw `reply(seen) -> (status, headers, body)` hook or through JSON routes by
  path prefix (`route(prefix, handler)`), the newest route first.
- `rule_evaluations_after` / `wait_rule_evaluations`: positive events of a real Prometheus
  (its rule groups evaluated after a moment), to prove that an alert did *not* fire.
- `prometheus_over(registry, workdir, rules)`: a real Prometheus scraping a prometheus_client
  registry (the bot tests' backends); `prom_query(url, promql)`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from sandbox.procs import free_port

__all__ = ["ALLOW_MISSING_BINARIES", "FakeIss", "Reply", "Route", "Seen", "free_port", "js", "need_binary",
           "prom_query", "prometheus_over", "rule_evaluations_after", "wait_rule_evaluations", "wait_until"]

# The only way to run without the external programs (prometheus, promtool, amtool,
# docker-compose): set this to 1, and the tests that need one skip instead of failing.
ALLOW_MISSING_BINARIES = "ALGOPACK_TESTS_ALLOW_MISSING_BINARIES"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
               step: float = 0.1) -> Any:
    """Call `predicate` until it returns something truthy (returned); AssertionError naming
    `what` after `timeout` seconds. The predicate runs at least once, and once more at the
    deadline, so a slow machine never fails a condition that holds by then."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(step)


def need_binary(name: str) -> str:
    """Path of the external program `name`. Missing, the test FAILS (CI installs them all with
    `make bins`), unless ALGOPACK_TESTS_ALLOW_MISSING_BINARIES=1 asks for a skip."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get(ALLOW_MISSING_BINARIES) == "1":
        pytest.skip(f"{name} not installed ({ALLOW_MISSING_BINARIES}=1)")
    pytest.fail(f"{name} not installed: run `make bins` (or set {ALLOW_MISSING_BINARIES}=1 to skip these tests)",
                pytrace=False)


# ---------------------------------------------------------------------------- fake ISS


@dataclass
class Seen:
    """One request the fake received: path, query (last value of each key) and lower-cased headers."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[str, dict[str, str]], dict | None]


def js(payload: object, status: int = 200, extra: dict[str, str] | None = None) -> Reply:
    """A JSON reply for `FakeIss.reply`."""
    return status, {"Content-Type": "application/json; charset=utf-8", **(extra or {})}, json.dumps(payload).encode()


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, for the fakes below: `url`, `close()`."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeIss(LoopbackServer):
    """A scripted ISS on a free loopback port (real HTTP, threads); every request is in `seen`.

    Answers: `reply(seen)` when set (raw status, headers, body); otherwise the first route whose
    prefix starts the path, `handler(path, query) -> JSON body` (None: 404); else 404."""

    def __init__(self, reply: Callable[[Seen], Reply] | None = None) -> None:
        self.reply = reply
        self.routes: list[tuple[str, Route]] = []
        self.seen: list[Seen] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                seen = Seen(parts.path, params, {k.lower(): v for k, v in self.headers.items()})
                fake.seen.append(seen)
                status, headers, body = fake.answer(seen)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._serve(Handler)

    def route(self, prefix: str, handler: Route) -> None:
        """Answer paths starting with `prefix` with `handler(path, query)`'s JSON (newest route wins)."""
        self.routes.insert(0, (prefix, handler))

    def answer(self, seen: Seen) -> Reply:
        if self.reply is not None:
            return self.reply(seen)
        for prefix, handler in self.routes:
            if seen.path.startswith(prefix):
                body = handler(seen.path, seen.params)
                return js(body if body is not None else {}, status=200 if body is not None else 404)
        return js({}, status=404)

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        """(path, query) of every request so far."""
        return [(s.path, s.params) for s in self.seen]

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.seen if s.path.startswith(prefix))

    def data_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/iss/")]


class RawServer(LoopbackServer):
    """`handle(handler)` writes the whole answer itself (status line and all); connections counted."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None]):
        server_self = self
        self.handle = handle
        self.paths: list[str] = []
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                server_self.connections += 1

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server_self.paths.append(self.path)
                try:
                    server_self.handle(self)
                except OSError:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._serve(Handler)


# ---------------------------------------------------------------------------- Prometheus


def rule_evaluations_after(prometheus_url: str, moment: float) -> bool:
    """Every rule group of the Prometheus at `prometheus_url` has finished an evaluation that
    started after `moment` (Unix time): whatever `moment`'s data makes fire is in ALERTS now."""
    groups = requests.get(prometheus_url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    if not groups:
        return False
    for group in groups:
        last = group.get("lastEvaluation") or ""
        if not last or last.startswith("0001-"):
            return False
        if datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() <= moment:
            return False
    return True


def wait_rule_evaluations(prometheus_url: str, count: int = 1, timeout: float = 30.0) -> None:
    """Wait for `count` full rounds of rule evaluation that start after now."""
    for _ in range(count):
        moment = time.time()
        wait_until(lambda moment=moment: rule_evaluations_after(prometheus_url, moment), timeout,
                   "a round of rule evaluations", step=0.2)


@contextmanager
def prometheus_over(registry, workdir: Path, rules: dict | None = None, interval: str = "1s") -> Iterator[str]:
    """A real Prometheus (`need_binary`) scraping `registry` (a prometheus_client
    CollectorRegistry, served on a free port) every `interval`, evaluating `rules` (a rule-file
    mapping, optional) as often. Yields its URL; stops both on exit."""
    from prometheus_client import start_http_server

    from sandbox.procs import ManagedProcess, wait_http

    binary = need_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    target = free_port()
    server, thread = start_http_server(target, addr="127.0.0.1", registry=registry)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": "algopack", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}]}
    if rules is not None:
        rule_file = workdir / "rules.yml"
        rule_file.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
        config["rule_files"] = [str(rule_file)]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prom = ManagedProcess("prometheus", [binary, f"--config.file={workdir / 'prometheus.yml'}",
                                         f"--storage.tsdb.path={workdir / 'data'}",
                                         f"--web.listen-address=127.0.0.1:{port}"], workdir / "prometheus.log")
    try:
        wait_http(url + "/-/ready", timeout=30, proc=prom)
        yield url
    finally:
        prom.stop()
        server.shutdown()
        thread.join(timeout=5)


def prom_query(url: str, promql: str) -> list[dict]:
    """Instant query against the Prometheus at `url`: `data.result`."""
    body = requests.get(url + "/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body.get("status") == "success", body
    return body["data"]["result"]
