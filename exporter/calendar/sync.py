"""calendar-sync: read the ISS calendar (`issreader`), decide on the model (`merge`),
write through the locked, validated, atomic editor (`edit`).

    sync_calendar(client, path, date_from, date_till, dry_run=False) -> SyncResult

A failed, HTML or malformed answer raises `SyncError` before anything is written; so do an
unreadable or read-only file and a merge that would not validate.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date, timedelta

from .edit import apply_change
from .issreader import IssDay, SyncError, fetch_off_days, fetch_session_hours
from .merge import merge_days
from .model import MARKETS, Calendar, CalendarError, CalendarReadOnly, CalendarUnreadable

MAX_RANGE_DAYS = 366  # ISS serves at most a year per request


@dataclass
class SyncResult:
    added: int = 0
    updated: int = 0
    kept_manual: int = 0
    diff_text: str = ""
    changes: list[str] = field(default_factory=list)  # one line per added/updated day
    hours: list[str] = field(default_factory=list)  # one line per special trading day: its hours


def fetch_iss(client, date_from: date, date_till: date) -> tuple[dict[date, IssDay], dict[str, dict[date, list]]]:
    """ISS's days and session hours for the range, a year per request."""
    iss_days: dict[date, IssDay] = {}
    hours: dict[str, dict[date, list]] = {m: {} for m in MARKETS}
    chunk_start = date_from
    while chunk_start <= date_till:
        chunk_end = min(date_till, chunk_start + timedelta(days=MAX_RANGE_DAYS - 1))
        iss_days.update(fetch_off_days(client, chunk_start, chunk_end))
        for market, per_day in fetch_session_hours(client, chunk_start, chunk_end).items():
            hours[market].update(per_day)
        chunk_start = chunk_end + timedelta(days=1)
    return iss_days, hours


def sync_calendar(client, path: str, date_from: date, date_till: date, dry_run: bool = False) -> SyncResult:
    """Fetch the ISS calendar for [date_from, date_till] and merge it into `path`."""
    if date_till < date_from:
        raise SyncError(f"--till {date_till} is before --from {date_from}")
    iss_days, hours = fetch_iss(client, date_from, date_till)

    def change(calendar: Calendar):
        merge = merge_days(calendar, iss_days, hours)
        result = SyncResult(added=merge.added, updated=merge.updated, kept_manual=merge.kept_manual,
                            changes=merge.lines, hours=merge.hours_lines)
        return result, merge.changes

    try:
        outcome = apply_change(path, change, write=not dry_run)
    except (CalendarReadOnly, CalendarUnreadable) as exc:
        raise SyncError(f"nothing written: {exc}") from exc
    except CalendarError as exc:
        raise SyncError(f"the merged calendar would be invalid, nothing written: {exc}") from None
    result = outcome.result
    result.diff_text = "".join(difflib.unified_diff(
        outcome.old_text.splitlines(keepends=True), outcome.new_text.splitlines(keepends=True),
        fromfile=f"{path} (current)", tofile=f"{path} ({'dry run' if dry_run else 'written'})"))
    return result


__all__ = ["SyncError", "SyncResult", "fetch_iss", "sync_calendar"]
