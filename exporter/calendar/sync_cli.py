"""The `calendar-sync` subcommand's own part; `exporter/cli.py` owns the command line
(global flags, logging, loading the config) and dispatches here:

    python -m exporter calendar-sync --config.file=PATH [--from DATE --till DATE] [--dry-run]

    add_arguments(parser)            # --from, --till, --dry-run
    run(args, config, clock) -> int  # the exit code: 0, or 1 when the sync failed
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from exporter.iss import IssClient

from .sync import SyncError, sync_calendar

DESCRIPTION = "Merge the MOEX ISS trading calendar into calendar.yml."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", type=date.fromisoformat, default=None,
                        help="first day (YYYY-MM-DD); default: 1 January of the current year")
    parser.add_argument("--till", dest="date_till", type=date.fromisoformat, default=None,
                        help="last day (YYYY-MM-DD); default: 31 December of the --from year")
    parser.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")


def run(args: argparse.Namespace, config, clock, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    today = clock.today()
    date_from = args.date_from or date(today.year, 1, 1)
    date_till = args.date_till or date(date_from.year, 12, 31)
    path = str(config.calendar.file)
    try:
        with IssClient(config.iss) as client:
            result = sync_calendar(client, path, date_from, date_till, dry_run=args.dry_run)
    except SyncError as exc:
        print(f"calendar-sync failed: {exc}", file=err)
        return 1
    if args.dry_run:
        out.write(result.diff_text or "no changes\n")
        print("session hours of the special trading days (main sessions of TQBR/CETS/RFUD, "
              "auctions excluded):", file=out)
        for line in result.hours or ["(none in this range)"]:
            print(f"  {line}", file=out)
    for line in result.changes:
        print(line, file=out)
    verb = "would add" if args.dry_run else "added"
    print(f"calendar-sync {date_from}..{date_till}: {verb} {result.added}, "
          f"{'would update' if args.dry_run else 'updated'} {result.updated}, kept manual {result.kept_manual}"
          f" ({path})", file=out)
    return 0


__all__ = ["DESCRIPTION", "add_arguments", "run"]
