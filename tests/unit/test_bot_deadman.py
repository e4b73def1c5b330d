"""The bot's dead-man check (bot/deadman.py) on a manual clock, the probe against small
canned HTTP backends, failover over a list of Prometheus/Alertmanager URLs (bot/ops.py),
and the configuration keys (deadman.*, url lists)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.handlers.deadman import DeadMan, Problem, probe
from bot.ops import WATCHDOG_ALERT, Alertmanager, OpsError, Prometheus
from exporter.clock import MSK, ManualClock
from exporter.config import ConfigError, load_config
from sandbox.procs import free_port

START = datetime(2026, 11, 25, 12, 0, tzinfo=MSK)
PROM = Problem("prometheus http://p", "Prometheus http://p не отвечает (нет соединения)", "Prometheus http://p отвечает")
AM = Problem("alertmanager http://a", "Alertmanager http://a не отвечает (таймаут)", "Alertmanager http://a отвечает")


def run(deadman: DeadMan, clock: ManualClock, problems: list[Problem], minutes: float, step: float = 1.0) -> list[str]:
    """Checks every `step` minutes for `minutes`; all messages posted."""
    out: list[str] = []
    for _ in range(int(minutes / step)):
        clock.advance(step * 60)
        out += deadman.observe(problems, clock.now())
    return out


def test_one_message_after_the_threshold_one_when_back_none_between() -> None:
    clock = ManualClock(START)
    deadman = DeadMan(threshold=timedelta(minutes=3), reminder=None)
    assert run(deadman, clock, [], 5) == []
    # Broken at 12:06: 12:07, 12:08 quiet; at 12:09 (3 min) one message.
    assert deadman.observe([PROM], clock.now().replace(minute=6)) == []
    clock.set(START.replace(minute=6))
    assert run(deadman, clock, [PROM], 2) == []
    (down,) = run(deadman, clock, [PROM], 1)
    assert down.splitlines() == [
        "⚠️ <b>Мониторинг не работает</b>: Prometheus http://p не отвечает (нет соединения)",
        "• Prometheus http://p не отвечает (нет соединения) — с 12:06 МСК (3 мин)",
        "Алерты о данных ALGOPACK могут не приходить, пока это не исправлено."]
    assert run(deadman, clock, [PROM], 600) == []               # ten hours: no repeats
    clock.advance(60)
    (up,) = deadman.observe([], clock.now())
    assert up == "✅ <b>Мониторинг снова работает</b>: Prometheus http://p отвечает (не работало 10 ч 4 мин)"
    assert run(deadman, clock, [], 10) == []


def test_a_blip_shorter_than_the_threshold_says_nothing() -> None:
    clock = ManualClock(START)
    deadman = DeadMan(threshold=timedelta(minutes=3), reminder=None)
    for _ in range(20):
        assert run(deadman, clock, [PROM], 2) == []
        assert run(deadman, clock, [], 1) == []


def test_a_second_problem_is_a_new_message_naming_both_and_reminders_come_every_n_hours() -> None:
    clock = ManualClock(START)
    deadman = DeadMan(threshold=timedelta(minutes=3), reminder=timedelta(hours=2))
    assert len(run(deadman, clock, [PROM], 4)) == 1
    (both,) = run(deadman, clock, [PROM, AM], 4)
    assert both.splitlines()[0] == "⚠️ <b>Мониторинг не работает</b>: Alertmanager http://a не отвечает (таймаут)"
    assert both.splitlines()[1].startswith("• Alertmanager http://a") and both.splitlines()[2].startswith("• Prometheus")
    messages = run(deadman, clock, [PROM, AM], 4 * 60)
    assert len(messages) == 2 and all(m.startswith("⚠️ <b>Мониторинг всё ещё не работает</b>") for m in messages)
    ups = run(deadman, clock, [], 1)
    assert sorted(m.split(": ", 1)[1].split(" (")[0] for m in ups) == ["Alertmanager http://a отвечает",
                                                                      "Prometheus http://p отвечает"]


# ---------------------------------------------------------------------------- HTTP backends


class Backend:
    """A loopback server answering canned JSON per path; counts requests per path."""

    def __init__(self, answers: dict[str, object]):
        self.answers = answers
        self.hits: Counter[str] = Counter()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                backend.hits[path] += 1
                answer = backend.answers.get(path)
                status, body = (404, b"") if answer is None else (200, json.dumps(answer).encode())
                if isinstance(answer, int):
                    status, body = answer, b"{}"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Backend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def prom_answer(up: list[float]) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "algopack"}, "value": [0, str(v)]} for v in up]}}


def am_alerts(*names: str) -> list[dict]:
    return [{"fingerprint": f"f{i}", "labels": {"alertname": name}, "annotations": {},
             "startsAt": "2026-11-25T09:00:00Z", "status": {"state": "active"}} for i, name in enumerate(names)]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_clients_fail_over_to_the_next_url_and_stay_there() -> None:
    with Backend({"/api/v1/query": prom_answer([1]), "/api/v2/alerts": am_alerts("AlgopackDataDelayed")}) as live:
        prom = Prometheus([dead_url(), live.url], timeout=2)
        assert [s.value for s in prom.query("up")] == [1.0]
        assert prom.base_url == live.url
        assert [s.value for s in prom.query("up")] == [1.0]
        assert live.hits["/api/v1/query"] == 2
        am = Alertmanager([dead_url(), live.url], timeout=2)
        assert [a.name for a in am.alerts()] == ["AlgopackDataDelayed"]
    with pytest.raises(OpsError, match="нет соединения"):
        Prometheus([dead_url(), dead_url()], timeout=2).query("up")


def test_an_http_4xx_is_an_answer_and_5xx_moves_on() -> None:
    with Backend({"/api/v1/query": 400}) as bad, Backend({"/api/v1/query": 503}) as down, \
            Backend({"/api/v1/query": prom_answer([1])}) as live:
        with pytest.raises(OpsError, match="HTTP 400"):
            Prometheus([bad.url, live.url]).query("up")
        assert live.hits["/api/v1/query"] == 0
        assert [s.value for s in Prometheus([down.url, live.url]).query("up")] == [1.0]


def test_watchdog_is_hidden_from_lists_and_seen_by_the_check() -> None:
    with Backend({"/api/v2/alerts": am_alerts(WATCHDOG_ALERT, "AlgopackDataDelayed")}) as am:
        client = Alertmanager(am.url)
        assert [a.name for a in client.alerts()] == ["AlgopackDataDelayed"]
        assert client.watchdog_active() is True


def test_probe_names_each_broken_replica_and_skips_what_depends_on_it() -> None:
    with Backend({"/api/v1/query": prom_answer([0])}) as prom_down_target, \
            Backend({"/api/v2/alerts": am_alerts()}) as am_no_watchdog, \
            Backend({"/api/v1/query": prom_answer([1]), "/api/v2/alerts": am_alerts(WATCHDOG_ALERT)}) as healthy:
        assert probe(Prometheus(healthy.url), Alertmanager(healthy.url)) == []
        p_dead, a_dead = dead_url(), dead_url()
        keys = [p.key for p in probe(Prometheus([p_dead, healthy.url]), Alertmanager([healthy.url, a_dead]))]
        assert keys == [f"prometheus {p_dead}", f"alertmanager {a_dead}"]     # one replica sees the exporter
        problems = probe(Prometheus(prom_down_target.url), Alertmanager(am_no_watchdog.url))
        assert [p.key for p in problems] == ["exporter", f"watchdog {am_no_watchdog.url}"]
        assert "AlgopackWatchdog" in problems[1].text
        # Every Prometheus down: neither the exporter nor the watchdog is judged.
        assert [p.key for p in probe(Prometheus(p_dead), Alertmanager(am_no_watchdog.url))] == [f"prometheus {p_dead}"]


def test_config_url_lists_and_deadman_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("prometheus: {url: ['http://a:9090', 'http://b:9090/']}\n"
                    "deadman: {check_interval_seconds: 5, threshold_seconds: 20, reminder_hours: 0}\n")
    config = load_config(path, environ={})
    assert config.prometheus.urls == ("http://a:9090", "http://b:9090")
    assert config.prometheus.url == "http://a:9090"
    assert config.alertmanager.urls == ("http://127.0.0.1:9093",)
    assert (config.deadman.enabled, config.deadman.check_interval_seconds, config.deadman.threshold_seconds,
            config.deadman.reminder_hours) == (True, 5.0, 20.0, 0.0)
    from_env = load_config(path, environ={"ALERTMANAGER_URL": "http://x:9093, http://y:9093"})
    assert from_env.alertmanager.urls == ("http://x:9093", "http://y:9093")
    defaults = load_config(None, environ={}).deadman
    assert (defaults.check_interval_seconds, defaults.threshold_seconds, defaults.reminder_hours) == (60, 180, 4)
    path.write_text("prometheus: {url: ['http://a:9090', 'ftp://b']}\nalertmanager: {url: []}\n"
                    "deadman: {threshold_seconds: 0}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    text = str(caught.value)
    assert "prometheus.url[1]" in text and "alertmanager.url" in text and "deadman.threshold_seconds" in text


def test_alert_token_check_tells_a_revoked_token_from_an_unreachable_telegram() -> None:
    from bot.handlers.deadman import TelegramTokenCheck
    from sandbox.telegram import FakeTelegram

    with FakeTelegram() as telegram:
        check = TelegramTokenCheck(telegram.url, "1000001:alert-token")
        assert check() is None
        telegram.revoke(1000001)
        assert check() == "HTTP 401"
        (problem,) = probe(Prometheus(dead_url()), Alertmanager(dead_url()), check)[2:]
        assert problem.key == "alert token" and "HTTP 401" in problem.text
    assert TelegramTokenCheck(dead_url(), "1000001:alert-token")() is None
