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
import re
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


def test_stack_start_failure_names_the_component_and_stops_the_others(tmp_path):
    """A component that cannot start: StackError with its log tail, nothing left running."""
    from deploy.stack import LocalStack, StackError

    stack = LocalStack(tmp_path, components=("telegram", "iss", "exporter"),
                       config_overrides={"poll": {"no_such_key": 1}}, startup_timeout=30)
    with pytest.raises(StackError) as failure:
        stack.start()
    message = str(failure.value)
    assert "exporter" in message and "poll.no_such_key" in message, message
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert set(pids) == {"telegram", "iss"}  # the ones that had started
    assert not [pid for pid in pids.values() if _alive(pid)]
    assert not stack.procs


@pytest.mark.timeout(120)
def test_make_run_uses_env_file_and_secret_files_and_stops_cleanly(tmp_path):
    """`python -m deploy.run --with-alerting` against an ISS that needs an API key: the key
    and the bot tokens come only from secrets/ files, the chat id and Bot API URL from the
    env file; SIGINT stops every process it started."""
    from deploy.stack import default_virtual_start, demo_calendar
    from exporter.clock import FastClock
    from sandbox.iss import SandboxIss
    from sandbox.procs import free_port
    from sandbox.telegram import FakeTelegram

    calendar = tmp_path / "calendar.yml"
    clock = FastClock(start=default_virtual_start(), speed=20)
    calendar.write_text(json.dumps(demo_calendar(clock.now().date())))  # JSON is YAML
    ports = {name: free_port() for name in ("exporter", "prometheus", "alertmanager")}
    (tmp_path / "config.yml").write_text(json.dumps({
        "iss": {"auth": "apikey"}, "calendar": {"file": "calendar.yml"},
        "web": {"listen_address": f"127.0.0.1:{ports['exporter']}"},
        "prometheus": {"url": f"http://127.0.0.1:{ports['prometheus']}"},
        "alertmanager": {"url": f"http://127.0.0.1:{ports['alertmanager']}"},
    }))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "moex_api_key").write_text("key-from-file\n")
    (secrets / "telegram_bot_token").write_text("1000001:alerts-from-file\n")
    (secrets / "telegram_bot_token_bot").write_text("1000002:bot-from-file\n")
    with SandboxIss(str(calendar), clock, auth="apikey", api_key="key-from-file") as iss, \
            FakeTelegram() as telegram:
        config = json.loads((tmp_path / "config.yml").read_text())
        config["iss"]["base_url"] = iss.url
        (tmp_path / "config.yml").write_text(json.dumps(config))
        (tmp_path / "env").write_text(
            "# operator settings\nTELEGRAM_GROUP_CHATID=-1001234567890\n"
            f'TELEGRAM_API_URL="{telegram.url}"\nexport ALGOPACK_CLOCK={clock.spec()}\n'
            "MOEX_API_KEY=\n")  # empty: must not hide the secret file
        env = {k: v for k, v in os.environ.items()
               if k not in ("MOEX_API_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN_BOT", "ALGOPACK_CLOCK")}
        run = subprocess.Popen(
            [sys.executable, "-m", "deploy.run", f"--config.file={tmp_path / 'config.yml'}",
             "--env-file", str(tmp_path / "env"), "--secrets-dir", str(secrets),
             "--workdir", str(tmp_path / "run"), "--with-alerting"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        lines: list[str] = []
        try:
            while not any(line.startswith("running") for line in lines):
                line = run.stdout.readline()
                assert line, f"deploy.run ended early:\n{''.join(lines)}"
                lines.append(line)
            import requests

            deadline = time.monotonic() + 60
            up = ""
            while time.monotonic() < deadline:
                metrics = requests.get(f"http://127.0.0.1:{ports['exporter']}/metrics", timeout=5).text
                up = next((m for m in metrics.splitlines()
                           if m.startswith('algopack_up{') and 'market="eq"' in m and 'endpoint="tradestats"' in m), "")
                if up.endswith(" 1.0") and telegram.requests_count().get("getUpdates"):
                    break
                time.sleep(0.5)
            assert up.endswith(" 1.0"), f"exporter did not poll the API-key ISS: {up!r}"
            assert telegram.requests_count().get("getUpdates"), "the bot does not poll"
            scraped = requests.get(f"http://127.0.0.1:{ports['prometheus']}/api/v1/query",
                                   params={"query": 'up{job="algopack"}'}, timeout=5).json()
            assert scraped["status"] == "success"
            assert requests.get(f"http://127.0.0.1:{ports['alertmanager']}/-/ready", timeout=5).ok
        finally:
            run.send_signal(signal.SIGINT)
            try:
                rest, _ = run.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                rest, _ = run.communicate()
            lines.append(rest)
    output = "".join(lines)
    assert run.returncode == 0, output
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)", output.split("stopped:")[0])]
    assert len(pids) == 4, output  # exporter, alertmanager, prometheus, bot
    assert not [pid for pid in pids if _alive(pid)], output
    assert "key-from-file" not in output and "from-file" not in output
