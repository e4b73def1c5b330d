"""Command line: `python -m exporter [calendar-sync|jobs] --config.file=PATH ...`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from prometheus_client import generate_latest

from .clock import clock_from_env

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporter",
                                     description="Prometheus exporter for the MOEX ISS ALGOPACK feed.")
    parser.add_argument("--config.file", dest="config_file", default=None,
                        help="YAML configuration (see config.example.yml); defaults apply to missing keys")
    parser.add_argument("--web.listen-address", dest="listen_address", default=None,
                        help="HOST:PORT to serve /metrics on (default: web.listen_address, 127.0.0.1:9877)")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--clock", default=None,
                        help="clock spec for a fast virtual clock (tests, demo); default env ALGOPACK_CLOCK")
    parser.add_argument("--once", action="store_true",
                        help="poll every enabled endpoint once, print the exposition, exit (1 if a poll failed)")
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def load_or_exit(config_file: str | None):
    from .config import ConfigError, load_config

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        print(f"configuration error in {config_file or '<defaults>'}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None
    secret_errors = config.iss.check_secrets()
    if secret_errors:
        for line in secret_errors:
            print(f"configuration error: {line}", file=sys.stderr)
        raise SystemExit(2)
    return config


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "calendar-sync":
        from .calendar_sync import main_calendar_sync

        return main_calendar_sync(argv[1:])
    if argv and argv[0] == "jobs":
        return _jobs(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = load_or_exit(args.config_file)
    try:
        clock = clock_from_env(args.clock)
    except ValueError as exc:
        print(f"clock error: {exc}", file=sys.stderr)
        return 2

    from .app import ExporterApp
    from .calendar import CalendarError

    try:
        app = ExporterApp(config, clock)
    except CalendarError as exc:
        print(f"calendar error in {config.calendar.file}: {exc}", file=sys.stderr)
        return 2
    if args.once:
        ok = app.poll_all_once()
        sys.stdout.write(generate_latest(app.registry).decode())
        return 0 if ok else 1

    def _terminate(signum, _frame):
        logging.getLogger("exporter").info("stopping signal=%s", signal.Signals(signum).name)
        app.stop()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        app.start(args.listen_address or config.web.listen_address)
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {args.listen_address or config.web.listen_address}: {exc}", file=sys.stderr)
        app.stop()
        return 2
    app.wait()
    return 0


def _jobs(argv: list[str]) -> int:
    """List the scheduled jobs of a running exporter (the old tool's `jobs` command)."""
    import requests

    parser = argparse.ArgumentParser(prog="python -m exporter jobs")
    parser.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:9877")
    args = parser.parse_args(argv)
    try:
        response = requests.get(f"http://{args.listen_address}/jobs?format=text", timeout=5)
        response.raise_for_status()
    except requests.RequestException as exc:
        print(f"cannot reach the exporter at {args.listen_address}: {type(exc).__name__}", file=sys.stderr)
        return 1
    sys.stdout.write(response.text)
    return 0
