"""Command line, the only entry point: `python -m exporter [GLOBAL FLAGS] [COMMAND] [FLAGS]`.

Commands: none (serve /metrics and poll; `--once`: poll once, print, exit), `calendar-sync`
(merge the ISS calendar into calendar.yml), `jobs` (list a running exporter's jobs).
Global flags (`--config.file`, `--web.listen-address`, `--log.level`, `--clock`) may come
before or after the command. Nothing imports this module: it imports the layers below it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import requests
from prometheus_client import generate_latest

from .app import ExporterApp
from .calendar import CalendarError
from .calendar import sync_cli as calendar_sync
from .clock import clock_from_env
from .config import ConfigError, load_config

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"
LOG_LEVELS = ["debug", "info", "warning", "error"]
# --log.level when not given: the serving exporter logs its polls, a one-off command only problems.
DEFAULT_LOG_LEVEL = {None: "info", "calendar-sync": "warning", "jobs": "warning"}


def add_global_flags(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The flags every command takes. On a command's sub-parser (`suppress`) an absent flag
    leaves the value given before the command (or the default) alone."""

    def default(value):
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global flags (before or after the command)")
    group.add_argument("--config.file", dest="config_file", default=default(None),
                       help="YAML configuration (see config.example.yml); defaults apply to missing keys")
    group.add_argument("--web.listen-address", dest="listen_address", default=default(None),
                       help="HOST:PORT to serve /metrics on, or of the exporter `jobs` asks "
                            "(default: web.listen_address, 127.0.0.1:9877)")
    group.add_argument("--log.level", dest="log_level", default=default(None), choices=LOG_LEVELS,
                       help="default: info when serving, warning for a command")
    group.add_argument("--clock", default=default(None),
                       help="clock spec for a fast virtual clock (tests, demo); default env ALGOPACK_CLOCK")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporter",
                                     description="Prometheus exporter for the MOEX ISS ALGOPACK feed.")
    add_global_flags(parser)
    parser.add_argument("--once", action="store_true",
                        help="poll every enabled endpoint once, print the exposition, exit (1 if a poll failed)")
    parser.add_argument("--storage.path", dest="storage_path", default=None,
                        help="directory of the state kept across restarts (default: data/ beside --config.file; "
                             "empty: keep nothing); not used by --once")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (default: serve)")
    sync = commands.add_parser("calendar-sync", help="merge the MOEX ISS trading calendar into calendar.yml",
                               description=calendar_sync.DESCRIPTION)
    calendar_sync.add_arguments(sync)
    add_global_flags(sync, suppress=True)
    jobs = commands.add_parser("jobs", help="list the scheduled jobs of a running exporter",
                               description="List the scheduled jobs of a running exporter.")
    add_global_flags(jobs, suppress=True)
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def load_or_exit(config_file: str | None, *, check_secrets: bool = True):
    """The configuration, or exit 2 listing every bad key and its reason."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        print(f"configuration error in {config_file or '<defaults>'}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None
    secret_errors = config.iss.check_secrets() if check_secrets else []
    if secret_errors:
        for line in secret_errors:
            print(f"configuration error: {line}", file=sys.stderr)
        raise SystemExit(2)
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level or DEFAULT_LOG_LEVEL[args.command])
    if args.command == "jobs":
        return _jobs(args)
    config = load_or_exit(args.config_file)
    try:
        clock = clock_from_env(args.clock)
    except ValueError as exc:
        print(f"clock error: {exc}", file=sys.stderr)
        return 2
    if args.command == "calendar-sync":
        return calendar_sync.run(args, config, clock)
    return _serve(args, config, clock)


def storage_path(args: argparse.Namespace) -> str | None:
    """--storage.path, by default `data/` beside the config file (Alertmanager's spelling)."""
    if args.storage_path is not None:
        return args.storage_path or None
    base = os.path.dirname(os.path.abspath(args.config_file)) if args.config_file else os.getcwd()
    return os.path.join(base, "data")


def _serve(args: argparse.Namespace, config, clock) -> int:
    try:
        app = ExporterApp(config, clock, storage_path=None if args.once else storage_path(args))
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
    listen = args.listen_address or config.web.listen_address
    try:
        app.start(listen)
    except (OSError, ValueError) as exc:
        print(f"cannot listen on {listen}: {exc}", file=sys.stderr)
        app.stop()
        return 2
    app.wait()
    return 0


def _jobs(args: argparse.Namespace) -> int:
    """List the scheduled jobs of a running exporter (the old tool's `jobs` command): the one at
    --web.listen-address, else at the --config.file's web.listen_address."""
    listen = args.listen_address
    if listen is None:
        listen = load_or_exit(args.config_file, check_secrets=False).web.listen_address
    try:
        response = requests.get(f"http://{listen}/jobs?format=text", timeout=5)
        response.raise_for_status()
    except requests.RequestException as exc:
        print(f"cannot reach the exporter at {listen}: {type(exc).__name__}", file=sys.stderr)
        return 1
    sys.stdout.write(response.text)
    return 0

