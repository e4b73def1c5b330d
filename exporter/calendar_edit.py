"""Locked, atomic, comment-keeping writes of `calendar.yml` (bot, calendar-sync).

    edit_calendar(path, mutate)  # mutate(doc: CommentedMap) -> T; returns T
    apply_edit(path, mutate, write=True) -> EditOutcome(result, old_text, new_text)
    set_day(path, day, status, actor, *, markets=None, source="manual") -> None
    toggle_day(path, day, actor) -> (old_status, new_status)
    day_info(calendar, day) -> dict              # what the bot shows for a day

Every writer takes an exclusive `fcntl.flock` on `<path>.lock` (a separate file, because
the calendar itself is replaced by rename), reads the file with ruamel.yaml round-trip
(comments, quotes and anchors kept), applies the change, validates the result exactly as
the exporter will read it (PyYAML + `parse_calendar`), then writes a temp file in the same
directory, fsyncs it and renames it over the original. An invalid result raises
CalendarError and leaves the file byte-identical.

A symlinked calendar (a ConfigMap mount: `calendar.yml -> ..data/calendar.yml`) is
written through: the temp file goes into the directory of the symlink's resolved target
and is renamed over that target, so the symlink itself stays and is never replaced by a
file. When that directory (or the lock's) is read-only, `CalendarReadOnly` is raised
before anything changes. Aliases that expand beyond a small bound are refused before
ruamel builds the document (exporter/yamlsafe.py).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from exporter.calendar import MARKETS, SOURCES, STATUSES, Calendar, CalendarError, parse_calendar_text
from exporter.yamlsafe import YamlBombError, check_expansion, short

T = TypeVar("T")

# markets argument of set_day: market -> sessions [["HH:MM", "HH:MM"], ...], or None for
# "that market's default sessions".
MarketSessions = Mapping[str, Sequence[Sequence[str]] | None]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold the one-line day entries
    return yaml


_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class CalendarReadOnly(CalendarError):
    """The calendar cannot be written here (read-only directory, e.g. a ConfigMap)."""


class CalendarUnreadable(CalendarError):
    """The file as it is on disk cannot be read (missing, not UTF-8, a YAML bomb, not YAML)."""


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


def edit_calendar(path: str, mutate: Callable[[CommentedMap], T]) -> T:
    """Apply `mutate` to the round-trip document of `path` under the lock; validate; write.

    Nothing is written when the text does not change or when `mutate` raises.
    """
    return apply_edit(path, mutate).result


@dataclass(frozen=True)
class EditOutcome(Generic[T]):
    result: T
    old_text: str
    new_text: str  # what was written (or, with write=False, what would have been)


def apply_edit(path: str, mutate: Callable[[CommentedMap], T], *, write: bool = True) -> EditOutcome[T]:
    """`edit_calendar` that also returns the text before and after (for diffs); with
    write=False the validated result is computed under the lock but not written."""
    path = os.fspath(path)
    with _locked(path, required=write):
        try:
            with open(path, encoding="utf-8") as handle:
                original = handle.read()
        except OSError as exc:
            raise CalendarUnreadable(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise CalendarUnreadable(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        try:
            check_expansion(original, path)
        except YamlBombError as exc:
            raise CalendarUnreadable(str(exc)) from None
        yaml = _yaml()
        try:
            doc = yaml.load(original)
        except (YAMLError, ValueError) as exc:
            problem = str(exc)
            raise CalendarUnreadable(f"{path}: not valid YAML: {problem[:400]}") from None
        if not isinstance(doc, CommentedMap):
            raise CalendarUnreadable(f"{path}: the calendar must be a mapping")
        result = mutate(doc)
        text = dump_document(doc)
        # Validate what the exporter will read (PyYAML, YAML 1.1), not ruamel's view of it.
        parse_calendar_text(text, origin=path)
        if write and text != original:
            _atomic_write(path, text)
        return EditOutcome(result, original, text)


def dump_document(doc: CommentedMap) -> str:
    buffer = io.StringIO()
    _yaml().dump(doc, buffer)
    return buffer.getvalue()


# ----- days --------------------------------------------------------------------------


def _key_date(key: object) -> date | None:
    if isinstance(key, date):
        return key
    if isinstance(key, str):
        try:
            return date.fromisoformat(key)
        except ValueError:
            return None
    return None


def days_map(doc: CommentedMap) -> CommentedMap:
    """The `days` mapping of a document, created (block style) when absent."""
    days = doc.get("days")
    if days is None:
        days = CommentedMap()
        doc["days"] = days
    if not isinstance(days, CommentedMap):
        raise CalendarError("days: must be a mapping of YYYY-MM-DD to a day")
    return days


def find_day_key(days: CommentedMap, day: date) -> object | None:
    for key in days:
        if _key_date(key) == day:
            return key
    return None


def put_day(days: CommentedMap, day: date, value: object) -> None:
    """Set `day`'s entry: in place when it exists (its comments stay), else at its date
    position. Keys are always written as unquoted dates."""
    key = find_day_key(days, day)
    if key is not None:
        if isinstance(key, date):
            days[key] = value
            return
        # A quoted "YYYY-MM-DD" key: replace it by a date key at the same position.
        position = list(days).index(key)
        comment = days.ca.items.pop(key, None)
        del days[key]
        days.insert(position, day, value)
        if comment is not None:
            days.ca.items[day] = comment
        return
    position = len(days)
    for index, existing in enumerate(days):
        existing_day = _key_date(existing)
        if existing_day is not None and existing_day > day:
            position = index
            break
    days.insert(position, day, value)


def remove_day(days: CommentedMap, day: date) -> bool:
    key = find_day_key(days, day)
    if key is None:
        return False
    del days[key]
    return True


def entry_status(entry: object) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        status = entry.get("status")
        return status if isinstance(status, str) else None
    return None


def entry_source(entry: object) -> str:
    if isinstance(entry, Mapping) and entry.get("source") is not None:
        return str(entry.get("source"))
    return "manual"


def _default_status(doc: Mapping, day: date) -> str:
    if day.weekday() >= 5:
        return str(doc.get("weekend_default", "holiday"))
    return "working"


def effective_status(doc: Mapping, day: date) -> str:
    """'working' | 'holiday' of `day` in a round-trip document."""
    days = doc.get("days") or {}
    key = find_day_key(days, day) if isinstance(days, CommentedMap) else None
    if key is not None:
        status = entry_status(days[key])
        if status in STATUSES:
            return status
    return _default_status(doc, day)


def _flow(mapping: CommentedMap) -> CommentedMap:
    mapping.fa.set_flow_style()
    return mapping


def markets_node(markets: MarketSessions) -> CommentedMap:
    """A `markets:` value from plain data, with quoted times (PyYAML reads 10:00 as 600)."""
    node = CommentedMap()
    for market in MARKETS:
        if market not in markets:
            continue
        sessions = markets[market]
        block = _flow(CommentedMap())
        if sessions is not None:
            seq = CommentedSeq()
            seq.fa.set_flow_style()
            for pair in sessions:
                item = CommentedSeq([DoubleQuotedScalarString(str(t)) for t in pair])
                item.fa.set_flow_style()
                seq.append(item)
            block["sessions"] = seq
        node[market] = block
    unknown = set(markets) - set(MARKETS)
    if unknown:
        raise CalendarError(f"markets.{sorted(unknown)[0]}: unknown market; allowed: {', '.join(MARKETS)}")
    return _flow(node)


def _copy_node(value: object) -> object:
    """Deep copy of round-trip data without anchors, so entries never share objects."""
    if isinstance(value, Mapping):
        copy = CommentedMap((k, _copy_node(v)) for k, v in value.items())
        return _flow(copy)
    if isinstance(value, list):
        seq = CommentedSeq(_copy_node(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, str):
        return DoubleQuotedScalarString(value) if re.fullmatch(r"\d{1,2}:\d{2}", value) else str(value)
    return value


def make_entry(status: str, *, markets: object = None, source: str = "manual",
               reason: str | None = None) -> object:
    """A day entry: the plain string form when nothing but the status is said."""
    if status not in STATUSES:
        raise CalendarError(f"status: {short(status)} is not a status; use working or holiday")
    if source not in SOURCES:
        raise CalendarError(f"source: {short(source)} is not a source; use {' or '.join(SOURCES)}")
    if markets is None and source == "manual" and reason is None:
        return status
    entry = _flow(CommentedMap())
    entry["status"] = status
    if markets is not None:
        entry["markets"] = markets
    if source != "manual":
        entry["source"] = source
    if reason is not None:
        entry["reason"] = reason
    return entry


# What may not go into a one-line YAML comment: every line break YAML or Python knows
# (\n \r \v \f \x1c-\x1e \x85 U+2028 U+2029), every other character a YAML stream may not
# hold (controls, lone surrogates, U+FFFE/U+FFFF), and "#".
_NOT_IN_COMMENT = re.compile("[^\x09\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029#\t]")


def clean_comment_text(text: str, limit: int = 80) -> str:
    """`text` made safe for a one-line YAML comment."""
    return re.sub(r" {2,}", " ", _NOT_IN_COMMENT.sub(" ", str(text))).strip()[:limit].strip()


def _actor_comment(actor: str) -> str:
    clean = clean_comment_text(actor)
    return f"set by {clean}" if clean else "set manually"


def set_day(path: str, day: date, status: str, actor: str, *, markets: MarketSessions | None = None,
            source: str = "manual", reason: str | None = None) -> None:
    """Write an explicit entry for `day`.

    markets=None keeps the custom market sessions of an existing entry (if it had any);
    otherwise the entry lists exactly the given markets (a market mapped to None trades
    its default sessions). `actor` (who did it) is kept as a comment on the entry.
    """

    def mutate(doc: CommentedMap) -> None:
        days = days_map(doc)
        key = find_day_key(days, day)
        old = days[key] if key is not None else None
        if markets is not None:
            markets_value: object = markets_node(markets)
        elif isinstance(old, Mapping) and old.get("markets") is not None:
            markets_value = _copy_node(old["markets"])
        else:
            markets_value = None
        put_day(days, day, make_entry(status, markets=markets_value, source=source, reason=reason))
        _comment(days, day, actor)

    edit_calendar(path, mutate)


def toggle_day(path: str, day: date, actor: str) -> tuple[str, str]:
    """Flip `day` working <-> holiday relative to its current effective status and write
    it as a manual entry. Custom market sessions of the day are kept (they apply again
    whenever the day is working). Returns (old_status, new_status)."""

    def mutate(doc: CommentedMap) -> tuple[str, str]:
        days = days_map(doc)
        old_status = effective_status(doc, day)
        new_status = "holiday" if old_status == "working" else "working"
        key = find_day_key(days, day)
        old = days[key] if key is not None else None
        markets_value = None
        if isinstance(old, Mapping) and old.get("markets") is not None:
            markets_value = _copy_node(old["markets"])
        put_day(days, day, make_entry(new_status, markets=markets_value))
        _comment(days, day, actor)
        return old_status, new_status

    return edit_calendar(path, mutate)


def _comment(days: CommentedMap, day: date, actor: str) -> None:
    key = find_day_key(days, day)
    note = f"# {_actor_comment(actor)}"
    existing = days.ca.items.get(key)
    tokens = [t for t in existing or () if t is not None]
    if not tokens:
        # explicit column: ruamel would otherwise compare keys, and str vs date keys fail
        days.yaml_add_eol_comment(note, key, column=1)
        return
    # A trailing comment token may also carry the full-line comments that follow the
    # entry: those stay. Only our own "set by" note at the line end is replaced.
    if len(tokens) == 1 and existing[2] is tokens[0]:
        first, newline, rest = tokens[0].value.partition("\n")
        if _ACTOR_NOTE.fullmatch(first):
            tokens[0].value = note + newline + rest


_ACTOR_NOTE = re.compile(r"[ \t]*# (set by .*|set manually)")


def day_info(calendar: Calendar, day: date) -> dict:
    """What the bot shows for one day.

    {"date": "2026-11-28", "weekday": 5, "status": "working"|"holiday",
     "source": "default"|"manual"|"iss", "reason": str|None,
     "markets": {"eq": [["10:00", "19:00"]], "fx": [], "fo": [...]}}   # [] = not trading
    """
    override = calendar.override(day)
    return {
        "date": day.isoformat(),
        "weekday": day.weekday(),
        "status": calendar.day_status(day),
        "source": calendar.day_source(day),
        "reason": override.reason if override is not None else None,
        "markets": {
            market: [[s.start.strftime("%H:%M"), s.end.strftime("%H:%M")] for s in calendar.sessions(market, day)]
            for market in MARKETS
        },
    }


__all__ = ["CalendarReadOnly", "CalendarUnreadable", "EditOutcome", "clean_comment_text", "write_target", "apply_edit", "day_info", "dump_document", "edit_calendar", "effective_status", "make_entry", "markets_node", "put_day",
           "remove_day", "set_day", "toggle_day", "find_day_key", "days_map", "entry_source", "entry_status"]
