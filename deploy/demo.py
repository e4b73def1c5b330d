"""`make demo`: the whole system on this machine, no Docker, no credentials.

    python -m deploy.demo [--speed 20] [--fault-after 60] [--market eq --dataset tradestats]
                          [--duration SECONDS] [--until-resolved] [--workdir .demo]

Starts the sandbox ISS (fast clock, a calendar on which every market trades today), the
exporter, real Prometheus and Alertmanager, a fake Telegram Bot API and the bot (see
deploy/stack.py), prints the URLs, and streams every Telegram message to the terminal.
After `--fault-after` seconds it stops one dataset in the sandbox ISS, so Alertmanager
sends the alerts (missing intervals, then data delay); `--hold` seconds after the delay
alert it lets the data flow again, so the resolve messages follow.

Ctrl-C (or SIGTERM) stops every process the demo started, by pid. With `--until-resolved`
the demo exits 0 once the delay alert's resolve message arrived, 1 if `--duration` ran
out first (the unattended smoke test runs it this way).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from deploy.stack import ALERT_BOT_ID, BOT_ID, GROUP_CHAT_ID, LocalStack, StackError
from exporter.clock import MSK
from sandbox.procs import REPO_ROOT

DELAY_TITLE = "Задержка данных"
DEFAULT_WORKDIR = REPO_ROOT / ".demo"
USER_ID = 4242


def plain_text(record: dict[str, Any]) -> str:
    """The message as a Telegram user sees it (HTML tags stripped)."""
    text = record.get("text") or ""
    if record.get("parse_mode") == "HTML":
        from sandbox.telegram import html_to_plain

        try:
            return html_to_plain(text)
        except Exception:  # the fake refused it already; show it raw
            return text
    return text


def _parts(text: str) -> tuple[str, str]:
    """(firing part, resolved part) of one Alertmanager message: the template puts the
    resolved alerts after a line starting with ✅ (alertmanager/templates/telegram.tmpl)."""
    firing, _, resolved = text.partition("✅")
    return firing, resolved


def _mentions(part: str, market: str, dataset: str) -> bool:
    return DELAY_TITLE.lower() in part.lower() and market.upper() in part and dataset in part


def is_delay_firing(record: dict[str, Any], market: str, dataset: str) -> bool:
    """Alertmanager's message reports AlgopackDataDelayed firing for that market/dataset."""
    return record.get("bot_id") == ALERT_BOT_ID and _mentions(_parts(plain_text(record))[0], market, dataset)


def is_delay_resolved(record: dict[str, Any], market: str, dataset: str) -> bool:
    """Alertmanager's message reports AlgopackDataDelayed resolved for that market/dataset."""
    return record.get("bot_id") == ALERT_BOT_ID and _mentions(_parts(plain_text(record))[1], market, dataset)


class Printer:
    """Terminal output: one timestamped line per event, messages indented."""

    def __init__(self, stack: LocalStack, stream=sys.stdout):
        self.stack = stack
        self.stream = stream
        self.started = time.monotonic()

    def _stamp(self) -> str:
        elapsed = time.monotonic() - self.started
        virtual = self.stack.virtual_now().strftime("%H:%M:%S") if self.stack.clock else "--:--:--"
        return f"[+{elapsed:5.0f}s | MSK {virtual}]"

    def event(self, text: str) -> None:
        print(f"{self._stamp()} {text}", file=self.stream, flush=True)

    def message(self, record: dict[str, Any]) -> None:
        sender = {ALERT_BOT_ID: "Alertmanager", BOT_ID: "bot"}.get(record.get("bot_id"), f"bot {record.get('bot_id')}")
        verb = {"sendMessage": "→", "editMessageText": "✎", "sendPhoto": "🖼", "deleteMessage": "✗"}.get(
            record.get("method", ""), record.get("method", ""))
        lines = plain_text(record).strip().splitlines() or [""]
        print(f"{self._stamp()} Telegram {sender} {verb} chat {record.get('chat_id')}:", file=self.stream)
        for line in lines:
            print(f"    │ {line}", file=self.stream)
        print("", file=self.stream, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="logs, configs, data (default .demo)")
    parser.add_argument("--speed", type=float, default=20.0,
                        help="virtual seconds per real second (20: a 5-minute bucket every 15 s)")
    parser.add_argument("--start", default=None,
                        help="virtual start, ISO time or HH:MM (Moscow, today); default 12:04 today")
    parser.add_argument("--market", default="eq", choices=("eq", "fx", "fo"))
    parser.add_argument("--dataset", default="tradestats",
                        choices=("tradestats", "orderstats", "obstats"))
    parser.add_argument("--fault-after", type=float, default=60.0,
                        help="real seconds before the dataset is stopped (default 60)")
    parser.add_argument("--hold", type=float, default=20.0,
                        help="real seconds the fault stays after the delay alert arrived (default 20)")
    parser.add_argument("--restore-after", type=float, default=240.0,
                        help="restore the data after this many real seconds of fault even without an alert")
    parser.add_argument("--delay-threshold", type=float, default=None,
                        help="delay_threshold_seconds in virtual seconds (default: the config's 600)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many real seconds (default: until Ctrl-C)")
    parser.add_argument("--until-resolved", action="store_true",
                        help="exit 0 once the delay alert resolved (1 if --duration ran out first)")
    parser.add_argument("--no-bot-command", action="store_true", help="do not send /status to the bot")
    return parser.parse_args(argv)


def virtual_start(text: str | None) -> datetime | None:
    if not text:
        return None
    if len(text) <= 5 and ":" in text:
        hours, minutes = (int(part) for part in text.split(":"))
        return datetime.now(MSK).replace(hour=hours, minute=minutes, second=0, microsecond=0)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=MSK)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # Explicit, so Ctrl-C works even when started with SIGINT ignored (e.g. `cmd &` in a script).
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    stack = LocalStack(args.workdir, clock_speed=args.speed, virtual_start=virtual_start(args.start),
                       delay_threshold_seconds=args.delay_threshold)
    out = Printer(stack)
    print("algopack-monitor demo: sandbox ISS → exporter → Prometheus → Alertmanager → fake Telegram, "
          "plus the bot. Ctrl-C stops everything.", flush=True)
    print(f"starting (logs in {stack.workdir / 'logs'}) ...", flush=True)
    try:
        stack.start()
        out.started = time.monotonic()
        print(stack.describe())
        print(f"""
  Exporter metrics   {stack.urls['exporter']}/metrics
  Prometheus UI      {stack.urls['prometheus']}/alerts
  Alertmanager UI    {stack.urls['alertmanager']}/#/alerts
  Sandbox ISS        {stack.urls['iss']}/sandbox/faults
  Telegram log       {stack.paths['telegram_log']}
  Talk to the bot    curl -s -XPOST {stack.urls['telegram']}/_control/updates \\
                       -d '{{"text": "/status", "chat_id": {GROUP_CHAT_ID}, "user_id": {USER_ID}}}'

Virtual time runs {args.speed:g}x: a 5-minute bucket every {300 / args.speed:.0f} s. In {args.fault_after:.0f} s the demo
stops {args.market} {args.dataset} in the sandbox ISS; the alerts arrive below, then the resolves.
""", flush=True)
        return _loop(stack, out, args)
    except KeyboardInterrupt:
        out.event("interrupted: stopping every process")
        return 130 if args.until_resolved else 0
    except StackError as exc:
        print(f"demo failed to start: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pids = stack.pids
        codes = stack.stop()
        if codes:
            print("stopped: " + ", ".join(f"{name} (pid {pids.get(name)}, exit {code})"
                                          for name, code in codes.items()), flush=True)


def _loop(stack: LocalStack, out: Printer, args: argparse.Namespace) -> int:
    began = time.monotonic()
    seen = 0
    fault_at: float | None = None
    alert_at: float | None = None
    restored = False
    # Ask the bot for /status once the exporter has polled and Prometheus scraped a few times.
    status_at = None if args.no_bot_command or "bot" not in stack.procs else min(10.0, args.fault_after / 2)
    while True:
        now = time.monotonic()
        if status_at is not None and now - began >= status_at:
            out.event("sending /status to the bot as a group member would")
            stack.telegram_command("/status", user_id=USER_ID)
            status_at = None
        records = stack.telegram_messages(since=seen)
        for record in records:
            out.message(record)
            if alert_at is None and is_delay_firing(record, args.market, args.dataset):
                alert_at = now
                out.event(f"delay alert arrived; data flows again in {args.hold:.0f} s")
            if restored and is_delay_resolved(record, args.market, args.dataset):
                out.event("delay alert resolved")
                if args.until_resolved:
                    return 0
        seen += len(records)
        if fault_at is None and now - began >= args.fault_after:
            stack.iss_fault("stop", market=args.market, dataset=args.dataset)
            fault_at = now
            out.event(f"sandbox ISS: stopped {args.market} {args.dataset} (no new buckets from now)")
        if fault_at is not None and not restored and (
                (alert_at is not None and now - alert_at >= args.hold) or now - fault_at >= args.restore_after):
            stack.iss_clear_faults("stop")
            restored = True
            out.event(f"sandbox ISS: {args.market} {args.dataset} flows again (backlog published now)")
        dead = [name for name, ok in stack.alive().items() if not ok]
        if dead:
            for name in dead:
                out.event(f"{name} died; log tail:\n{stack.log_tail(name, 30)}")
            return 3
        if args.duration is not None and now - began >= args.duration:
            out.event(f"--duration {args.duration:.0f}s reached")
            return 1 if args.until_resolved else 0
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
