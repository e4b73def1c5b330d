"""The bot's dead-man message on a real LocalStack: kill Prometheus, then Alertmanager,
then revoke Alertmanager's Telegram token, then kill the exporter; each problem gives
exactly one "⚠️ Мониторинг не работает" message after the threshold and (for the first
three, which are repaired) one "✅" message, nothing in between. The real time from the
fault to each message is printed (RELIABILITY.md).

Short settings on the stack's fast clock (x10): a check every 20 virtual s (2 s real), a
threshold of 120 virtual s (12 s real) — longer than the seconds a restarted Prometheus
needs to send the watchdog again, so a restart is never reported as a missing watchdog.
"""

from __future__ import annotations

import time

import pytest
import requests

from deploy.stack import ALERT_BOT_ID, ALERT_BOT_TOKEN, BOT_ID, GROUP_CHAT_ID, LocalStack
from tests.support import wait_until

pytestmark = pytest.mark.integration

SPEED = 10.0
CHECK_SECONDS = 20.0
THRESHOLD_SECONDS = 120.0
DOWN = "⚠️ <b>Мониторинг не работает</b>: "
UP = "✅ <b>Мониторинг снова работает</b>: "


def deadman_messages(stack: LocalStack) -> list[str]:
    return [m["text"] for m in stack.telegram_messages(chat_id=GROUP_CHAT_ID)
            if m["bot_id"] == BOT_ID and (m["text"] or "").startswith((DOWN, UP, "⚠️ <b>Мониторинг всё"))]


def getme_count(stack: LocalStack) -> int:
    """The bot's token check calls getMe with Alertmanager's token once per check."""
    return int(stack._get("telegram", "/_control/requests").get("getMe", 0))


def wait_checks(stack: LocalStack, count: int, timeout: float = 60) -> None:
    start = getme_count(stack)
    wait_until(lambda: getme_count(stack) >= start + count, timeout, "the bot's next checks (it stopped checking?)",
               step=0.3)


def fault_to_message(stack: LocalStack, prefix: str, needle: str, since: int, started: float) -> tuple[dict, float]:
    message = stack.wait_for_message(lambda m: m["bot_id"] == BOT_ID and (m["text"] or "").startswith(prefix)
                                     and needle in m["text"], timeout=60, since=since)
    return message, time.monotonic() - started


@pytest.mark.timeout(200)
def test_prometheus_alertmanager_token_and_exporter_failures_each_give_one_message(tmp_path):
    stack = LocalStack(
        tmp_path / "stack", clock_speed=SPEED,
        config_overrides={"deadman": {"check_interval_seconds": CHECK_SECONDS,
                                      "threshold_seconds": THRESHOLD_SECONDS, "reminder_hours": 0}},
        component_env={"bot": {"TELEGRAM_BOT_TOKEN": ALERT_BOT_TOKEN}},
        extra_args={"prometheus": ["--rules.alert.resend-delay=2s"]})
    threshold_real = THRESHOLD_SECONDS / SPEED
    timings: dict[str, float] = {}
    with stack:
        # Healthy: more checks than the threshold spans, and not a word.
        wait_checks(stack, int(THRESHOLD_SECONDS / CHECK_SECONDS) + 2)
        assert deadman_messages(stack) == []

        for name, needle, back in (("prometheus", "Prometheus", "Prometheus"),
                                   ("alertmanager", "Alertmanager", "Alertmanager")):
            since = len(stack.telegram_messages())
            started = time.monotonic()
            stack.stop_component(name)
            down, timings[f"{name} killed"] = fault_to_message(stack, DOWN, needle, since, started)
            assert f"{needle} {stack.urls[name]} не отвечает (нет соединения)" in down["text"], down["text"]
            assert " — с " in down["text"] and " МСК (" in down["text"]
            since = len(stack.telegram_messages())
            started = time.monotonic()
            stack.restart_component(name)
            up, timings[f"{name} back"] = fault_to_message(stack, UP, back, since, started)
            assert up["text"].startswith(f"{UP}{needle} {stack.urls[name]} отвечает (не работало "), up["text"]

        since = len(stack.telegram_messages())
        started = time.monotonic()
        requests.post(stack.urls["telegram"] + "/_control/faults", json={"revoke": ALERT_BOT_ID},
                      timeout=5).raise_for_status()
        down, timings["alert token revoked"] = fault_to_message(stack, DOWN, "токен бота Alertmanager", since, started)
        assert "(HTTP 401)" in down["text"]
        since = len(stack.telegram_messages())
        started = time.monotonic()
        requests.delete(stack.urls["telegram"] + "/_control/faults", timeout=5).raise_for_status()
        _, timings["alert token back"] = fault_to_message(stack, UP, "токен бота Alertmanager", since, started)

        since = len(stack.telegram_messages())
        started = time.monotonic()
        stack.stop_component("exporter")
        down, timings["exporter killed"] = fault_to_message(stack, DOWN, "экспортёр", since, started)
        wait_checks(stack, 3)   # a few more checks: still broken, no repeat
        messages = deadman_messages(stack)

    for what, seconds in timings.items():
        print(f"{what} → message: {seconds:.1f} s real ({seconds * SPEED / 60:.1f} virtual min; "
              f"threshold {threshold_real:.0f} s real, check every {CHECK_SECONDS / SPEED:.0f} s)")
    assert [m.split("\n")[0].split(": ", 1)[0] + ": " for m in messages] == [DOWN, UP, DOWN, UP, DOWN, UP, DOWN]
    for what, seconds in timings.items():
        if what.endswith("killed") or what.endswith("revoked"):
            assert threshold_real - 1 <= seconds <= threshold_real + 3 * CHECK_SECONDS / SPEED + 2, (what, seconds)
