"""The one YAML library of the calendar: ruamel.yaml round-trip, YAML 1.2, for reading
(the exporter, the sandbox, the bot: its "safe" loader, no comment bookkeeping, about
twice as fast) and for writing (the round-trip loader: edits keep comments, quotes and
anchors). Both resolve scalars by the same YAML 1.2 rules. YAML 1.2 reads an unquoted 10:00 as the text "10:00" (no base-60 numbers), so
the reader and the writer can never disagree about a time.

    read_document(text, origin) -> plain data (dict/list/str/date...): for reading
    load_document(text, origin) -> the round-trip document (CommentedMap ...): for edits
    dump_document(doc) -> text
    read_text(path) -> text                 # CalendarUnreadable names the reason
    days_map(doc) / find_day_key / put_day / remove_day / set_actor_comment

Aliases that expand beyond a small bound are refused before anything is built
(`exporter.yamlsafe.check_expansion`); error texts quote at most a bounded piece.
"""

from __future__ import annotations

import io
import re
from datetime import date

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import RoundTripConstructor, SafeConstructor
from ruamel.yaml.error import YAMLError

from exporter.yamlsafe import YamlBombError, check_expansion

from .model import CalendarError, CalendarUnreadable

PROBLEM_CHARS = 400


class _Constructor(RoundTripConstructor):
    """Leaves an impossible date (2026-02-30) as text, so validation can name it instead
    of failing inside the YAML parser."""

    def construct_yaml_timestamp(self, node, values=None):
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            return self.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


class _SafeConstructor(SafeConstructor):
    """The reader's constructor: an impossible date stays text, as in `_Constructor`."""

    def construct_yaml_timestamp(self, node, values=None):
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            return self.construct_scalar(node)


_SafeConstructor.add_constructor("tag:yaml.org,2002:timestamp", _SafeConstructor.construct_yaml_timestamp)


def _reader() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _SafeConstructor
    return yaml


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold the one-line day entries
    return yaml


def read_document(text: str, origin: str = "calendar") -> object:
    """Parse YAML text into plain data; CalendarUnreadable for a bomb or a syntax error."""
    return _load(_reader(), text, origin)


def load_document(text: str, origin: str = "calendar") -> object:
    """Parse YAML text into a round-trip document; CalendarUnreadable as `read_document`."""
    return _load(_yaml(), text, origin)


def _load(yaml: YAML, text: str, origin: str) -> object:
    try:
        check_expansion(text, origin)
    except YamlBombError as exc:
        raise CalendarUnreadable(str(exc)) from None
    try:
        return yaml.load(text)
    except (YAMLError, ValueError) as exc:
        problem = str(exc)
        if len(problem) > PROBLEM_CHARS:
            problem = problem[:PROBLEM_CHARS - 3] + "..."
        raise CalendarUnreadable(f"{origin}: not valid YAML: {problem}") from None


def dump_document(doc: object) -> str:
    buffer = io.StringIO()
    _yaml().dump(doc, buffer)
    return buffer.getvalue()


def decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalendarUnreadable(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise CalendarUnreadable(f"{path}: cannot read: {exc.strerror or exc}") from None
    return decode(raw, path)


# ----- the `days` mapping of a round-trip document -------------------------------------


def key_date(key: object) -> date | None:
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
        if key_date(key) == day:
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
        existing_day = key_date(existing)
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


# What may not go into a one-line YAML comment: every line break YAML or Python knows
# (\n \r \v \f \x1c-\x1e \x85 U+2028 U+2029), every other character a YAML stream may not
# hold (controls, lone surrogates, U+FFFE/U+FFFF), and "#".
_NOT_IN_COMMENT = re.compile("[^\x09\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029#\t]")
_ACTOR_NOTE = re.compile(r"[ \t]*# (set by .*|set manually)")


def clean_comment_text(text: str, limit: int = 80) -> str:
    """`text` made safe for a one-line YAML comment."""
    return re.sub(r" {2,}", " ", _NOT_IN_COMMENT.sub(" ", str(text))).strip()[:limit].strip()


def set_actor_comment(days: CommentedMap, day: date, actor: str) -> None:
    """`# set by <actor>` at the end of `day`'s line (replacing an older such note)."""
    key = find_day_key(days, day)
    clean = clean_comment_text(actor)
    note = f"# set by {clean}" if clean else "# set manually"
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


__all__ = ["clean_comment_text", "days_map", "decode", "dump_document", "find_day_key", "key_date",
           "load_document", "read_document", "put_day", "read_text", "remove_day", "set_actor_comment"]
