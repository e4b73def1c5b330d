"""Interim alias of `exporter.calendar.sync` (bot/) and of the old command-line entry
(exporter/cli.py's bridge); removed once both call the package directly."""

from __future__ import annotations

from exporter.calendar.sync import SyncError, SyncResult, sync_calendar


def main_calendar_sync(argv: list[str]) -> int:
    """The old `calendar-sync` entry: exporter/cli.py's bridge hands over its flags."""
    import argparse

    from exporter.calendar import sync_cli
    from exporter.cli import load_or_exit, setup_logging  # interim: goes with this module
    from exporter.clock import clock_from_env

    parser = argparse.ArgumentParser(prog="python -m exporter calendar-sync")
    parser.add_argument("--config.file", dest="config_file", default=None)
    parser.add_argument("--log.level", dest="log_level", default="warning")
    parser.add_argument("--clock", default=None)
    sync_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    config = load_or_exit(args.config_file)
    return sync_cli.run(args, config, clock_from_env(args.clock))


__all__ = ["SyncError", "SyncResult", "main_calendar_sync", "sync_calendar"]
