"""Locked, atomic, comment-keeping writes of `calendar.yml` (bot, calendar-sync).

    apply_change(path, change, actor=None, write=True) -> EditOutcome
        change(calendar) -> (result, {day: DayOverride | None})   # decided on the MODEL
    set_day(path, day, status, actor, *, markets=None, source="manual", reason=None)
    toggle_day(path, day, actor) -> (old_status, new_status)
    toggle(path, day, actor) -> Toggled(old_status, new_status, calendar)   # calendar: as written
    apply_edit(path, mutate, write=True) / edit_calendar(path, mutate)   # raw document

Edits are decided on the model (`Calendar.toggled`, `Calendar.entry_for`), and only the
changed days are written into the round-trip document (`fileformat.day_node`), so the
rest of the file (comments, quotes, anchors) stays as it was.

Every writer takes an exclusive `fcntl.flock` on `<path>.lock` (a separate file, because
the calendar itself is replaced by rename), reads the file, applies the change, validates
the result exactly as the exporter will read it, then writes a temp file in the same
directory, fsyncs it and renames it over the original. An invalid result raises
CalendarError and leaves the file byte-identical.

A symlinked calendar (a ConfigMap mount: `calendar.yml -> ..data/calendar.yml`) is
written through: the temp file goes into the directory of the symlink's resolved target
and is renamed over that target, so the symlink itself stays. When that directory (or the
lock's) is read-only, `CalendarReadOnly` is raised before anything changes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from ruamel.yaml.comments import CommentedMap

from .fileformat import day_node, parse_calendar, parse_calendar_text, parse_sessions
from .model import MARKETS, Calendar, CalendarError, CalendarReadOnly, CalendarUnreadable, DayOverride
from .yamldoc import days_map, dump_document, load_document, put_day, read_text, remove_day, set_actor_comment

T = TypeVar("T")

# markets argument of set_day: market -> sessions [["HH:MM", "HH:MM"], ...], or None for
# "that market's default sessions".
MarketSessions = Mapping[str, Sequence[Sequence[str]] | None]
DayChanges = Mapping[date, DayOverride | None]

_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def _read_only(path: str, where: str, exc: OSError) -> CalendarReadOnly:
    return CalendarReadOnly(f"{path}: the calendar is read-only here ({where}: {exc.strerror or exc}); "
                            "change it where it comes from (e.g. the ConfigMap)")


@contextmanager
def _locked(path: str, required: bool = True):
    """Exclusive lock on `<path>.lock`. required=False (a dry run) goes on without the
    lock when it cannot be created in a read-only directory."""
    lock_path = f"{path}.lock"
    try:
        lock_file = open(lock_path, "a+b")  # noqa: SIM115 - closed below
    except OSError as exc:
        if exc.errno not in _READ_ONLY_ERRNOS:
            raise
        if required:
            raise _read_only(path, f"cannot create {os.path.basename(lock_path)}", exc) from None
        yield
        return
    with lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def write_target(path: str) -> str:
    """The file a write of `path` replaces: the resolved target of a symlink (chain)."""
    return os.path.realpath(path)


def _atomic_write(path: str, text: str) -> None:
    target = write_target(path)  # never rename over the symlink itself
    directory = os.path.dirname(target)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    try:
        fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        if exc.errno in _READ_ONLY_ERRNOS:
            raise _read_only(path, f"cannot write in {directory}", exc) from None
        raise
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class EditOutcome(Generic[T]):
    result: T
    old_text: str
    new_text: str  # what was written (or, with write=False, what would have been)
    calendar: Calendar | None = None  # new_text as the exporter reads it (callers render from it)


@dataclass(frozen=True)
class Toggled:
    old_status: str
    new_status: str
    calendar: Calendar  # the calendar as written


def apply_edit(path: str, mutate: Callable[[CommentedMap], T], *, write: bool = True) -> EditOutcome[T]:
    """Apply `mutate` to the round-trip document of `path` under the lock; validate; write
    (unless write=False). Nothing is written when the text does not change or `mutate` raises."""
    path = os.fspath(path)
    with _locked(path, required=write):
        original = read_text(path).replace("\r\n", "\n").replace("\r", "\n")  # as text-mode open() reads
        doc = load_document(original, path)
        if not isinstance(doc, CommentedMap):
            raise CalendarUnreadable(f"{path}: the calendar must be a mapping")
        result = mutate(doc)
        text = dump_document(doc)
        calendar = parse_calendar_text(text, origin=path)  # what the exporter will read
        if write and text != original:
            _atomic_write(path, text)
        return EditOutcome(result, original, text, calendar)


def edit_calendar(path: str, mutate: Callable[[CommentedMap], T]) -> T:
    return apply_edit(path, mutate).result


def apply_change(path: str, change: Callable[[Calendar], tuple[T, DayChanges]], *, actor: str | None = None,
                 write: bool = True) -> EditOutcome[T]:
    """Decide an edit on the file's current calendar and write only the changed days
    (None removes a day's entry). `actor` is noted as `# set by ...` on each written day."""

    def mutate(doc: CommentedMap) -> T:
        calendar = parse_calendar(doc)
        result, changes = change(calendar)
        created = "days" not in doc
        days = days_map(doc)
        for day in sorted(changes):
            entry = changes[day]
            if entry is None:
                remove_day(days, day)
                continue
            put_day(days, day, day_node(entry))
            if actor is not None:
                set_actor_comment(days, day, actor)
        if created and not days:
            del doc["days"]  # never leave an empty `days:` behind that we created
        return result

    return apply_edit(path, mutate, write=write)


def sessions_of(day: date, markets: MarketSessions) -> dict:
    """set_day's plain `markets` -> the model's (validated, errors name the day's key)."""
    unknown = sorted(set(markets) - set(MARKETS))
    if unknown:
        raise CalendarError(f"markets.{unknown[0]}: unknown market; allowed: {', '.join(MARKETS)}")
    return {m: None if markets[m] is None else parse_sessions(markets[m], f"days.{day}.markets.{m}.sessions")
            for m in MARKETS if m in markets}


def set_day(path: str, day: date, status: str, actor: str, *, markets: MarketSessions | None = None,
            **fields: object) -> None:
    """Write an explicit entry for `day`; `fields` are the other `DayOverride` fields
    (source="manual", reason=None, ...).

    markets=None keeps the custom market sessions of an existing entry (if it had any);
    otherwise the entry lists exactly the given markets (a market mapped to None trades
    its default sessions). `actor` (who did it) is kept as a comment on the entry.
    """
    own = sessions_of(day, markets) if markets is not None else None

    def change(calendar: Calendar):
        return None, {day: calendar.entry_for(day, status, markets=own, **fields)}

    apply_change(path, change, actor=actor)


def toggle(path: str, day: date, actor: str) -> Toggled:
    """Flip `day` working <-> holiday relative to its current effective status and write
    it as a manual entry (custom market sessions kept)."""

    def change(calendar: Calendar):
        entry = calendar.toggled(day)
        return (calendar.day_status(day), entry.status), {day: entry}

    outcome = apply_change(path, change, actor=actor)
    return Toggled(*outcome.result, outcome.calendar)


def toggle_day(path: str, day: date, actor: str) -> tuple[str, str]:
    """`toggle`, returning (old_status, new_status)."""
    done = toggle(path, day, actor)
    return done.old_status, done.new_status


__all__ = ["DayChanges", "EditOutcome", "MarketSessions", "Toggled", "apply_change", "apply_edit", "edit_calendar",
           "set_day", "toggle", "toggle_day", "write_target"]
