"""End to end on one LocalStack (fake Telegram, sandbox ISS with passport auth, exporter
with WRONG credentials, real Prometheus and Alertmanager), reused for several faults:

- every server of the stack listens on loopback only;
- calendar.yml truncated in place by "something else" → the exporter's reload metric
  goes 0 → AlgopackCalendarReloadFailed fires — while the Telegram API is down: Alertmanager
  keeps retrying and delivers once Telegram is back;
- wrong ISS credentials → auth errors and AlgopackPollFailing, and no data alert;
- a storm of 60 alerts stays within Telegram's limits;
- no secret of the run (ISS password, Telegram token) in any log, metric or API answer.

Already covered: exporter down → only AlgopackExporterDown
(tests/integration/test_alert_delivery.py::test_stop_resume_closed_session_and_exporter_down).
"""

from __future__ import annotations

import re
import socket
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from deploy.stack import ALERT_BOT_ID, GROUP_CHAT_ID, LocalStack
from tests.support import need_binary, wait_rule_evaluations, wait_until

from .helpers import DATA_ALERTS, find_secrets

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

LOGIN = "reliability-e2e-robot"
ISS_PASSWORD = "Sandbox-Iss-Passw0rd-7c55"       # what the sandbox ISS accepts
WRONG_PASSWORD = "Wrong-Passw0rd-e2e-91b3"       # what the exporter is given
ALERT_TOKEN = f"{ALERT_BOT_ID}:RELIABILITYe2eAlertmanagerToken0x5f3a"
SECRETS = (ISS_PASSWORD, WRONG_PASSWORD, ALERT_TOKEN, ALERT_TOKEN.split(":", 1)[1])
DATA_TITLES = ("Задержка данных", "Пропущены интервалы", "Пропали инструменты", "HI2 не опубликован")


class PassportStack(LocalStack):
    """LocalStack whose exporter logs in to the sandbox ISS's passport route."""

    def app_config(self):
        config = super().app_config()
        config["iss"].update(auth="passport", passport_url=self.urls["iss"] + "/authenticate",
                             retries=0, timeout_seconds=2)
        return config


def alert_texts(stack: LocalStack) -> list[str]:
    return [m["text"] or "" for m in stack.telegram_messages(chat_id=GROUP_CHAT_ID) if m["bot_id"] == ALERT_BOT_ID]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need_binary("prometheus")
    need_binary("prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("reliability-stack")
    local = PassportStack(
        workdir, clock_speed=30, components=("telegram", "iss", "exporter", "alertmanager", "prometheus"),
        env={"ALERTMANAGER_GROUP_WAIT": "2s", "ALERTMANAGER_GROUP_INTERVAL": "5s",
             "ALERTMANAGER_REPEAT_INTERVAL": "1h"},
        component_env={"exporter": {"MOEX_PASSPORT_LOGIN": LOGIN, "MOEX_PASSPORT_PASSWORD": WRONG_PASSWORD},
                       "alertmanager": {"TELEGRAM_BOT_TOKEN": ALERT_TOKEN}},
        extra_args={"iss": ["--auth", "passport", "--passport-login", LOGIN, "--passport-password", ISS_PASSWORD],
                    "exporter": ["--log.level=debug"]},
        delay_threshold_seconds=480,
        config_overrides={"calendar": {"reload_interval_seconds": 0.5}},
    )
    with local:
        yield local


# ----------------------------------------------------------------------------- exposure


def _listening_sockets(pid: int) -> list[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:   # 0A = LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            if family == socket.AF_INET:
                address = socket.inet_ntop(family, raw[::-1])
            else:
                address = socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append(f"{address}:{int(port_hex, 16)}")
    return found


def test_every_server_of_the_stack_listens_on_loopback_only(stack):
    seen = {}
    for name, pid in stack.pids.items():
        sockets = _listening_sockets(pid)
        assert sockets, f"{name} has no listening socket?"
        for address in sockets:
            assert address.startswith(("127.0.0.1:", "::1:")), f"{name} listens on {address}"
        seen[name] = sockets
    assert set(seen) == {"telegram", "iss", "exporter", "alertmanager", "prometheus"}


# ----------------------------------------------------------------------------- calendar + Telegram down


def _metric(stack: LocalStack, name: str) -> float | None:
    for line in stack.exporter_metrics().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_truncated_calendar_fires_its_alert_and_telegram_outage_delays_but_never_drops_it(stack):
    path = stack.paths["calendar"]
    good = path.read_text(encoding="utf-8")
    assert _metric(stack, "algopack_calendar_last_reload_successful") == 1
    requests.post(stack.urls["telegram"] + "/_control/faults", json={"down": True}, timeout=5).raise_for_status()
    try:
        with open(path, "r+", encoding="utf-8") as handle:         # same inode, cut mid-line
            handle.truncate(0)
            handle.write(good[: good.index("fx:") + 10])
        wait_until(lambda: _metric(stack, "algopack_calendar_last_reload_successful") == 0, 20, "reload metric 0")
        wait_until(lambda: any(a["labels"]["alertname"] == "AlgopackCalendarReloadFailed"
                               and a["status"]["state"] == "active" for a in stack.alerts()), 30,
                   "Alertmanager to hold AlgopackCalendarReloadFailed")
        # Alertmanager tries to deliver and fails while Telegram is down.
        wait_until(lambda: "Notify for alerts failed" in stack.log_tail("alertmanager", 200)
                   or "notify retry canceled" in stack.log_tail("alertmanager", 200).lower(), 30,
                   "a failed delivery attempt in the Alertmanager log")
        assert not any("Календарь не загружен" in text for text in alert_texts(stack))
        # The session decisions stayed with the last good calendar meanwhile.
        assert _metric(stack, 'algopack_session_open{market="eq"}') == 1
    finally:
        requests.delete(stack.urls["telegram"] + "/_control/faults", timeout=5).raise_for_status()
    message = stack.wait_for_message(lambda m: m["bot_id"] == ALERT_BOT_ID
                                     and "Календарь не загружен" in (m["text"] or ""), timeout=60)
    assert message["chat_id"] == GROUP_CHAT_ID and message["parse_mode"] == "HTML"
    # A good file again: metric 1, and the resolve is delivered too.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(good, encoding="utf-8")
    tmp.replace(path)
    wait_until(lambda: _metric(stack, "algopack_calendar_last_reload_successful") == 1, 20, "reload metric 1")
    stack.wait_for_message(lambda m: m["bot_id"] == ALERT_BOT_ID and (m["text"] or "").startswith("✅")
                           and "Календарь не загружен" in m["text"], timeout=60)


# ----------------------------------------------------------------------------- wrong credentials


def test_wrong_credentials_count_auth_errors_and_poll_failing_is_on_its_way(stack):
    metrics = stack.exporter_metrics()
    auth_errors = [float(v) for v in re.findall(
        r'^algopack_poll_errors_total\{endpoint="\w+",market="\w+",reason="auth"\} (\S+)$', metrics, re.M)]
    assert sum(auth_errors) > 0
    assert re.search(r'^algopack_up\{endpoint="tradestats",market="eq"\} 0\.0$', metrics, re.M)
    pending = wait_until(lambda: [a for a in stack.prom_alerts() if a["labels"]["alertname"] == "AlgopackPollFailing"],
                         30, "AlgopackPollFailing pending in Prometheus")
    assert {a["state"] for a in pending} <= {"pending", "firing"}   # for: 3m, promtool-tested
    assert any(a["labels"].get("market") == "eq" and a["labels"].get("endpoint") == "tradestats" for a in pending)


def test_wrong_credentials_send_no_data_alert(stack):
    wait_until(lambda: stack.prom_query('ALERTS{alertname!="AlgopackWatchdog"}'), 30, "any alert evaluated")
    # Two more rounds of rule evaluation: whatever fires is in Alertmanager by now. An alert
    # Alertmanager does not hold as active is never sent, so none of these messages can follow.
    wait_rule_evaluations(stack.urls["prometheus"], count=2)
    firing = {a["labels"]["alertname"] for a in stack.prom_alerts() if a["state"] == "firing"}
    assert not firing & DATA_ALERTS, firing
    held = {a["labels"]["alertname"] for a in stack.alerts() if a["status"]["state"] == "active"}
    assert not held & DATA_ALERTS, held
    sent = [text for text in alert_texts(stack) if text.startswith("🔴")]
    assert not [text for text in sent if any(title in text for title in DATA_TITLES)], sent


# ----------------------------------------------------------------------------- storm


def test_storm_of_60_alerts_stays_within_telegram_limits(stack):
    before = len(alert_texts(stack))
    now = datetime.now(UTC)
    alerts = []
    for index in range(60):
        name = f"AlgopackStorm{index % 4}"   # own names: real alerts of this stack must not share groups
        market = ("eq", "fx", "fo")[index // 4 % 3]
        alerts.append({
            "labels": {"alertname": name, "market": market, "endpoint": f"storm{index:02d}", "severity": "warning"},
            "annotations": {"title": "Шторм <тест>", "description": "Нет данных за " + ", ".join(
                f"{10 + i // 12}:{i % 12 * 5:02d}" for i in range(40)) + " & ещё"},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat(),
        })
    response = requests.post(stack.urls["alertmanager"] + "/api/v2/alerts", json=alerts, timeout=10)
    response.raise_for_status()
    groups = {(a["labels"]["alertname"], a["labels"]["market"]) for a in alerts}
    delivered = wait_until(lambda: [t for t in alert_texts(stack)[before:] if "Шторм" in t]
                           if len([t for t in alert_texts(stack)[before:] if "Шторм" in t]) >= len(groups) else None,
                           60, "one message per storm group")
    assert len(delivered) == len(groups) == 12            # grouped, not 60 messages (Telegram: ~20/min per group)
    for text in delivered:
        assert len(text.encode("utf-16-le")) // 2 <= 4096
        assert "&lt;тест&gt;" in text and "<тест>" not in text  # values are escaped, HTML stays valid
    assert "message is too long" not in stack.log_tail("alertmanager", 400)


# ----------------------------------------------------------------------------- secrets


def _run_texts(stack: LocalStack) -> dict[str, str]:
    texts = {}
    for log in (stack.workdir / "logs").glob("*.log"):
        texts[log.name] = log.read_text(errors="replace")
    texts["telegram.jsonl"] = (stack.workdir / "telegram.jsonl").read_text(errors="replace")
    texts["exporter /metrics"] = stack.exporter_metrics()
    texts["exporter /jobs"] = requests.get(stack.urls["exporter"] + "/jobs?format=json", timeout=5).text
    texts["alertmanager /api/v2/status"] = requests.get(stack.urls["alertmanager"] + "/api/v2/status", timeout=5).text
    texts["prometheus targets"] = requests.get(stack.urls["prometheus"] + "/api/v1/targets", timeout=5).text
    texts["prometheus config"] = requests.get(stack.urls["prometheus"] + "/api/v1/status/config", timeout=5).text
    texts["rendered prometheus.yml"] = stack.paths["prometheus_config"].read_text()
    texts["rendered config.yml"] = stack.paths["config"].read_text()
    texts["alert messages"] = "\n".join(alert_texts(stack))
    return texts


def test_no_secret_in_logs_metrics_or_api_answers(stack):
    texts = _run_texts(stack)
    assert "reason=auth" in texts["exporter.log"]   # the failures were logged — without the secrets
    for where, text in texts.items():
        if where == "alertmanager.log":
            continue  # see the next test
        assert not find_secrets(text, SECRETS), f"secret in {where}"
    # The one file that must hold the token (Alertmanager 0.25 has no bot_token_file) is
    # rendered outside the repository, private to its owner.
    rendered = stack.paths["alertmanager_config"]
    assert ALERT_TOKEN in rendered.read_text()
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    assert not rendered.resolve().is_relative_to(Path(__file__).resolve().parents[2])


def test_alertmanager_log_never_shows_the_telegram_token(stack):
    log = _run_texts(stack)["alertmanager.log"]
    assert "Notify for alerts failed" in log   # a failed delivery happened (Telegram was down)
    assert not find_secrets(log, SECRETS)
