"""`make demo`, unattended: the whole system on loopback sees a delay alert and its resolve.

Runs `python -m deploy.demo --until-resolved` exactly as `make demo` would (plus flags for a
bounded, faster run): sandbox ISS, exporter, real Prometheus and Alertmanager, fake Telegram,
the bot. The fake Telegram's JSONL log must show Alertmanager's AlgopackDataDelayed message
for the stopped dataset and then its resolve, and every process the demo started must be
gone afterwards (checked by pid and process group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.stack import ALERT_BOT_ID, GROUP_CHAT_ID
from sandbox.procs import REPO_ROOT
from sandbox.telegram import html_to_plain

pytestmark = pytest.mark.integration

DEMO_TIMEOUT = 200


def _alive(pid: int) -> bool:
    """The pid or anything in its process group still exists (zombies count as gone)."""
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        pass
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z"


def _kill_leftovers(pids: dict[str, int]) -> None:
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.mark.timeout(DEMO_TIMEOUT + 60)
def test_demo_until_resolved_sees_alert_and_resolve_and_leaves_nothing(tmp_path):
    workdir = tmp_path / "demo"
    argv = [sys.executable, "-m", "deploy.demo", "--workdir", str(workdir), "--speed", "30",
            "--fault-after", "5", "--hold", "2", "--until-resolved", "--duration", "150",
            "--market", "eq", "--dataset", "tradestats"]
    demo = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        output, _ = demo.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        demo.send_signal(signal.SIGTERM)  # the demo stops its children on SIGTERM
        try:
            output, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            output, _ = demo.communicate()
        pytest.fail(f"demo did not finish within {DEMO_TIMEOUT}s:\n{output[-4000:]}")
    finally:
        pids = json.loads((workdir / "pids.json").read_text()) if (workdir / "pids.json").exists() else {}
        leftovers = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            leftovers = {name: pid for name, pid in pids.items() if _alive(pid)}
            if not leftovers:
                break
            time.sleep(0.2)
        _kill_leftovers(leftovers)

    assert demo.returncode == 0, f"demo exited {demo.returncode}:\n{output[-4000:]}"
    assert set(pids) == {"telegram", "iss", "exporter", "alertmanager", "prometheus", "bot"}, pids
    assert not leftovers, f"processes left behind: {leftovers}"

    records = [json.loads(line) for line in (workdir / "telegram.jsonl").read_text().splitlines() if line.strip()]
    alerts = [(i, html_to_plain(r["text"])) for i, r in enumerate(records)
              if r["bot_id"] == ALERT_BOT_ID and r["chat_id"] == GROUP_CHAT_ID and r["parse_mode"] == "HTML"]
    firing = [i for i, text in alerts if text.startswith("🔴 Задержка данных · EQ | Акции · tradestats")]
    resolved = [i for i, text in alerts
                if "✅ Решено · Задержка данных · EQ | Акции · tradestats" in text]
    assert firing, f"no delay alert in the Telegram log: {[t for _, t in alerts]}"
    assert resolved, f"no resolve in the Telegram log: {[t for _, t in alerts]}"
    assert firing[0] < resolved[-1], "the resolve came before the alert"
    # Only the stopped dataset is late: no delay alert names another pair.
    others = [text for _, text in alerts if "Задержка данных" in text and "tradestats" not in text]
    assert not others, others
    # The terminal shows the messages as a user would read them.
    assert "Задержка данных · EQ | Акции · tradestats" in output
    assert "Prometheus UI" in output and "Alertmanager UI" in output
