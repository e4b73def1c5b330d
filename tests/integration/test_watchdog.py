"""The watchdog heartbeat end to end: real Prometheus (the shipped rules) → real
Alertmanager (rendered with ALERTMANAGER_HEARTBEAT_URL) → a fake Healthchecks, while the
exporter is missing so AlgopackExporterDown fires and inhibits everything it can.

- pings arrive once per ALERTMANAGER_HEARTBEAT_INTERVAL (5 s here), each carrying only
  AlgopackWatchdog;
- the watchdog is never sent to Telegram and is not inhibited by AlgopackExporterDown,
  which itself does reach Telegram.
"""

from __future__ import annotations

import pytest

from deploy.stack import ALERT_BOT_ID, LocalStack
from sandbox.heartbeat import FakeHeartbeat
from tests.reliability.helpers import rules_with_short_for

pytestmark = pytest.mark.integration

INTERVAL = 5.0
# Prometheus drops what it sends before its Alertmanager discovery has synced (a few
# seconds after start) and re-sends a firing alert only every resend delay (1m default).
FAST_RESEND = {"prometheus": ["--rules.alert.resend-delay=2s"]}


@pytest.mark.timeout(120)
def test_heartbeat_pings_while_exporter_down_and_never_reaches_telegram(tmp_path):
    with FakeHeartbeat() as heartbeat:
        stack = LocalStack(tmp_path / "stack", components=("telegram", "alertmanager", "prometheus"),
                           rules_dir=rules_with_short_for(tmp_path, {"AlgopackExporterDown": "4s"}),
                           env={"ALERTMANAGER_GROUP_WAIT": "1s", "ALERTMANAGER_GROUP_INTERVAL": "2s",
                                "ALERTMANAGER_HEARTBEAT_URL": heartbeat.url + "/ping/algopack",
                                "ALERTMANAGER_HEARTBEAT_INTERVAL": f"{INTERVAL:g}s"},
                           extra_args=FAST_RESEND)
        with stack:
            down = stack.wait_for_message(lambda m: "Экспортёр не отвечает" in (m["text"] or ""), timeout=60)
            assert down["bot_id"] == ALERT_BOT_ID
            pings = heartbeat.wait_for_pings(4, timeout=60, check="algopack")
            states = {a["labels"]["alertname"]: a["status"]["state"] for a in stack.alerts()}
            messages = stack.telegram_messages()

    assert states["AlgopackWatchdog"] == "active" and states["AlgopackExporterDown"] == "active"
    assert all(p["method"] == "POST" and p["alerts"] == ["AlgopackWatchdog"] for p in pings), pings
    gaps = [b["ts"] - a["ts"] for a, b in zip(pings, pings[1:], strict=False)]
    print(f"heartbeat gaps: {', '.join(f'{g:.1f}' for g in gaps)} s (interval {INTERVAL:g} s)")
    assert all(INTERVAL - 1.5 <= gap <= INTERVAL + 1.5 for gap in gaps[1:]), gaps
    assert not [m for m in messages if "Сторожев" in (m["text"] or "") or "Watchdog" in (m["text"] or "")]
