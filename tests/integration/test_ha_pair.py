"""The HA pair of deploy/ha/ on loopback with the real binaries: two Prometheus replicas
(the committed deploy/ha/prometheus.yml: external label `replica`, dropped from alerts;
one pinned `instance`) scraping the one exporter and sending to both Alertmanagers, which
form one gossip cluster; sandbox ISS, fake Telegram, fake Healthchecks.

During an incident (eq and fx tradestats stop) one Prometheus and the Alertmanager that
notifies first are killed. Every alert message — firing and resolved — arrives exactly
once (no two identical texts, every 🔴 has its ✅). A silence created through the API
client the bot uses (bot.ops.Alertmanager, URL list) on one peer holds on the other (no
FX message, FX alerts silenced there) and is still there after the killed peer restarts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from bot.ops import Alertmanager
from deploy.render_alertmanager import render_alertmanager
from deploy.stack import (
    ALERT_BOT_ID,
    ALERT_BOT_TOKEN,
    ALERTMANAGER_BIN,
    GROUP_CHAT_ID,
    PROMETHEUS_BIN,
    LocalStack,
)
from sandbox.heartbeat import FakeHeartbeat
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, wait_http
from tests.integration.test_alert_delivery import all_resolved, is_slo
from tests.reliability.helpers import wait_for

pytestmark = pytest.mark.integration

SPEED = 30.0
DELAY_THRESHOLD = 480
HA_PROMETHEUS = REPO_ROOT / "deploy" / "ha" / "prometheus.yml"


class Pair:
    """Two Alertmanager peers and two Prometheus replicas on loopback ports."""

    def __init__(self, workdir: Path, stack: LocalStack, heartbeat_url: str):
        self.workdir, self.stack = workdir, stack
        self.am_ports = {name: (free_port(), free_port()) for name in ("a", "b")}   # web, gossip
        self.prom_ports = {name: free_port() for name in ("a", "b")}
        self.procs: dict[str, ManagedProcess] = {}
        self.am_config = render_alertmanager(workdir / "am-config", {
            "TELEGRAM_BOT_TOKEN": ALERT_BOT_TOKEN, "TELEGRAM_GROUP_CHATID": str(GROUP_CHAT_ID),
            "TELEGRAM_API_URL": stack.urls["telegram"], "ALERTMANAGER_GROUP_WAIT": "2s",
            "ALERTMANAGER_GROUP_INTERVAL": "5s", "ALERTMANAGER_REPEAT_INTERVAL": "1h",
            "ALERTMANAGER_HEARTBEAT_URL": heartbeat_url, "ALERTMANAGER_HEARTBEAT_INTERVAL": "5s"})

    def am_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.am_ports[name][0]}"

    def prom_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.prom_ports[name]}"

    def start_alertmanager(self, name: str) -> None:
        web, gossip = self.am_ports[name]
        peer = self.am_ports["b" if name == "a" else "a"][1]
        argv = [ALERTMANAGER_BIN, f"--config.file={self.am_config}", f"--storage.path={self.workdir / f'am-{name}'}",
                f"--web.listen-address=127.0.0.1:{web}", f"--cluster.listen-address=127.0.0.1:{gossip}",
                f"--cluster.peer=127.0.0.1:{peer}", "--cluster.peer-timeout=5s",
                "--cluster.gossip-interval=100ms", "--cluster.pushpull-interval=2s"]
        self._spawn(f"alertmanager-{name}", argv, {}, self.am_url(name))

    def start_prometheus(self, name: str) -> None:
        config = yaml.safe_load(HA_PROMETHEUS.read_text(encoding="utf-8"))
        config["global"].update(scrape_interval="2s", evaluation_interval="2s")
        config["rule_files"] = [str(REPO_ROOT / "prometheus" / "rules" / "*.yml")]
        targets = {"exporter": [self.stack.urls["exporter"].removeprefix("http://")],
                   "alertmanagers": [self.am_url(n).removeprefix("http://") for n in ("a", "b")]}
        for kind, hosts in targets.items():
            (self.workdir / f"{kind}-{name}.yml").write_text(yaml.safe_dump([{"targets": hosts}]))
        config["alerting"]["alertmanagers"][0]["file_sd_configs"] = [
            {"files": [str(self.workdir / f"alertmanagers-{name}.yml")], "refresh_interval": "2s"}]
        config["scrape_configs"][0]["file_sd_configs"] = [
            {"files": [str(self.workdir / f"exporter-{name}.yml")], "refresh_interval": "2s"}]
        path = self.workdir / f"prometheus-{name}.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [PROMETHEUS_BIN, f"--config.file={path}", f"--storage.tsdb.path={self.workdir / f'prom-{name}'}",
                f"--web.listen-address=127.0.0.1:{self.prom_ports[name]}", "--enable-feature=expand-external-labels",
                "--rules.alert.resend-delay=2s"]
        self._spawn(f"prometheus-{name}", argv, {"HA_REPLICA": name}, self.prom_url(name))

    def _spawn(self, key: str, argv: list[str], env: dict[str, str], url: str) -> None:
        proc = ManagedProcess(key, argv, self.workdir / "logs" / f"{key}.log", env=env)
        self.procs[key] = proc
        wait_http(url + "/-/ready", timeout=60, proc=proc)

    def kill(self, key: str) -> None:
        self.procs.pop(key).stop(timeout=10)

    def stop(self) -> None:
        for key in list(self.procs):
            self.kill(key)

    def cluster(self, name: str) -> dict:
        return requests.get(self.am_url(name) + "/api/v2/status", timeout=5).json()["cluster"]

    def first_notifier(self) -> str:
        """The peer at position 0 (sorted peer names) notifies at once; the other waits."""
        names = {n: self.cluster(n)["name"] for n in ("a", "b")}
        return min(names, key=names.get)


def alert_messages(stack: LocalStack, slo: bool = False) -> list[dict]:
    """The alert bot's messages; the feed-SLO burn left out unless `slo`: on the x30 clock
    Prometheus' real-time windows hold 30x the virtual time, so the stop burns the budget for
    minutes after the resume (test_alert_delivery.py checks it apart)."""
    return [m for m in stack.telegram_messages(chat_id=GROUP_CHAT_ID)
            if m["bot_id"] == ALERT_BOT_ID and (slo or not is_slo(m))]


# ~170 s on a loaded 2-core machine (a full `make test`): the run's own waits bound each step,
# this only stops a hung run.
@pytest.mark.timeout(360)
def test_one_prometheus_and_one_alertmanager_die_mid_incident_nothing_lost_or_doubled(tmp_path):
    stack = LocalStack(tmp_path / "stack", clock_speed=SPEED, components=("telegram", "iss", "exporter"),
                       delay_threshold_seconds=DELAY_THRESHOLD)
    with FakeHeartbeat() as heartbeat, stack:
        pair = Pair(tmp_path, stack, heartbeat.url + "/ping/ha")
        try:
            for name in ("a", "b"):
                pair.start_alertmanager(name)
            wait_for(lambda: all(len(pair.cluster(n)["peers"]) == 2 for n in ("a", "b")), 30, "gossip cluster")
            for name in ("a", "b"):
                pair.start_prometheus(name)
            client = Alertmanager([pair.am_url("a"), pair.am_url("b")])
            now = datetime.now(UTC)
            silence_id = client.create_silence({"market": "fx", "endpoint": "tradestats"}, now,
                                               now + timedelta(hours=1), "test", "HA: silenced on peer a")
            other = Alertmanager(pair.am_url("b"))
            wait_for(lambda: (s := other.silence(silence_id)) and s.state == "active", 30, "silence gossiped to b")

            stack.iss_fault("stop", market="eq", dataset="tradestats")
            stack.iss_fault("stop", market="fx", dataset="tradestats")
            started = time.monotonic()
            stack.wait_for_message(lambda m: m["bot_id"] == ALERT_BOT_ID and (m["text"] or "").startswith("🔴")
                                   and "EQ | Акции" in m["text"], timeout=60)
            first = pair.first_notifier()
            survivor = "b" if first == "a" else "a"
            print(f"first alert message after {time.monotonic() - started:.1f} s; killing prometheus-a "
                  f"and alertmanager-{first} (the peer that notifies first)")
            pair.kill("prometheus-a")
            pair.kill(f"alertmanager-{first}")
            killed = time.monotonic()

            # The delay alert fires only after the kill: delivered by the survivors.
            stack.wait_for_message(lambda m: m["bot_id"] == ALERT_BOT_ID and (m["text"] or "").startswith("🔴")
                                   and "Задержка данных" in m["text"], timeout=90)
            print(f"kill → AlgopackDataDelayed message: {time.monotonic() - killed:.1f} s")
            held = Alertmanager(pair.am_url(survivor)).alerts(include_silenced=True)
            fx = [a for a in held if a.labels.get("market") == "fx"]
            assert fx and all(a.state == "suppressed" for a in fx), fx

            stack.iss_clear_faults("stop")
            resumed = time.monotonic()
            wait_for(lambda: all_resolved(alert_messages(stack)), 90, "every fired alert resolved")
            print(f"resume → last resolved message: {time.monotonic() - resumed:.1f} s")

            pair.start_alertmanager(first)
            restarted = Alertmanager(pair.am_url(first))
            wait_for(lambda: (s := restarted.silence(silence_id)) and s.state == "active", 30,
                     "silence after the restart")
            # Two more heartbeats of the cluster: any late duplicate would be in by now.
            heartbeat.wait_for_pings(len(heartbeat.pings()) + 2, timeout=30)
            records, with_slo = alert_messages(stack), alert_messages(stack, slo=True)
        finally:
            pair.stop()

    texts = [r["text"] for r in records]
    print("\n".join(texts))
    every = [r["text"] for r in with_slo]  # exactly once holds for the SLO burn's messages too
    assert len(every) == len(set(every)), [t for t in every if every.count(t) > 1]
    assert any(t.startswith("✅") and "Задержка данных" in t for t in texts), texts
    assert not [t for t in texts if "FX" in t], texts
    assert all_resolved(records)
