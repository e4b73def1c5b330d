"""Hostile calendar files (issue 14): YAML bombs, huge values in errors, non-UTF-8 text,
ConfigMap-style symlinks, read-only directories, line separators in actor names."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import pytest

from exporter.calendar import (
    CalendarError,
    CalendarReadOnly,
    CalendarStore,
    apply_edit,
    clean_comment_text,
    load_calendar,
    parse_calendar_text,
    set_day,
    toggle_day,
)
from exporter.calendar import edit as calendar_edit
from exporter.yamlsafe import MAX_EXPANDED_NODES, check_expansion, short

from ..calendars import calendar_text

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = date(2027, 3, 3)  # a Wednesday

# Every line separator Python's str.splitlines() or YAML knows.
SEPARATORS = ["\u2028", "\u2029", "\u0085", "\r", "\n", "\v", "\f", "\x1c", "\x1d", "\x1e"]


@pytest.fixture
def path(tmp_path) -> Path:
    target = tmp_path / "calendar.yml"
    target.write_text(calendar_text("2027-01-01: holiday   # New Year", comment="keep me"), encoding="utf-8")
    return target


# ----- YAML bombs, bounded errors --------------------------------------------------


def calendar_bomb(day: str = "2027-01-04", pad: int = 4600) -> str:
    """A ~15 KB calendar whose day `reason` is a billion-laughs list: a loader that builds it
    and an error message that renders it (old `_describe`) would expand 9**9 strings."""
    lines = [f'      - &lol0 "{"lol" * (1 + pad)}"']
    for level in range(1, 10):
        lines.append(f"      - &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 9) + "]")
    return calendar_text(f"{day}:\n  status: working\n  reason:\n" + "\n".join(line[2:] for line in lines))


def _bomb_text() -> str:
    return calendar_bomb()


def test_billion_laughs_calendar_is_refused_in_well_under_a_second(path):
    text = _bomb_text()
    assert 14_000 < len(text.encode()) < 20_000
    started = time.monotonic()
    with pytest.raises(CalendarError) as info:
        parse_calendar_text(text, origin="calendar.yml")
    assert time.monotonic() - started < 0.5
    assert "aliases expand" in str(info.value) and len(str(info.value)) < 300


def test_store_keeps_the_last_good_calendar_after_a_bomb(path):
    store = CalendarStore(str(path))
    good = store.current
    path.write_text(_bomb_text(), encoding="utf-8")
    os.utime(path, (time.time() + 5, time.time() + 5))
    started = time.monotonic()
    assert store.check() is False
    assert time.monotonic() - started < 0.5
    assert store.current is good and not store.last_reload_successful
    assert "aliases" in store.last_error and len(store.last_error) < 400


def test_edits_refuse_a_bomb_before_ruamel_builds_it(path):
    path.write_text(_bomb_text(), encoding="utf-8")
    before = path.read_bytes()
    started = time.monotonic()
    with pytest.raises(CalendarError) as info:
        toggle_day(str(path), DAY, "ops")
    assert time.monotonic() - started < 0.5
    assert "aliases" in str(info.value)
    assert path.read_bytes() == before


def test_recursive_alias_is_refused():
    with pytest.raises(CalendarError) as info:
        parse_calendar_text(calendar_text() + "days: &a {2027-01-04: *a}\n")
    assert "recursive" in str(info.value) or "aliases" in str(info.value)


def test_small_aliases_of_the_shipped_calendar_still_load_and_edit(tmp_path):
    shipped = (REPO_ROOT / "calendar.yml").read_text(encoding="utf-8")
    assert shipped.count("*weekend") > 50
    check_expansion(shipped, "calendar.yml")          # well inside the bound
    target = tmp_path / "calendar.yml"
    target.write_text(shipped, encoding="utf-8")
    toggle_day(str(target), date(2026, 7, 15), "ops")
    assert load_calendar(str(target)).day_status(date(2026, 7, 15)) == "holiday"


def test_expansion_bound_is_exact_enough():
    # 150 aliases of a 100-node list expand to ~15 000 nodes: allowed; 10x that: refused.
    items = ", ".join(str(i) for i in range(99))
    ok = f"a: &a [{items}]\nb: [" + ", ".join(["*a"] * 150) + "]\n"
    check_expansion(ok)
    too_big = f"a: &a [{items}]\nb: [" + ", ".join(["*a"] * (MAX_EXPANDED_NODES // 50)) + "]\n"
    with pytest.raises(ValueError):
        check_expansion(too_big)


@pytest.mark.parametrize("days", [
    "2027-01-04: HUGE",
    "2027-01-04: {status: HUGE}",
    "2027-01-04: {status: working, source: HUGE}",
    "2027-01-04: {status: working, markets: {eq: {sessions: [[HUGE, '19:00']]}}}",
    "2027-01-04: {status: working, markets: {eq: {sessions: HUGE}}}",
    "2027-01-04: {status: working, reason: [HUGE, HUGE, HUGE, HUGE, HUGE, HUGE, HUGE, HUGE]}",
    "2027-01-04: {status: working, KEY: 1}",
])
def test_no_error_message_renders_an_unbounded_value(days):
    huge, key = "'" + "x" * 20_000 + "'", "k" * 1000
    with pytest.raises(CalendarError) as info:
        parse_calendar_text(calendar_text(days.replace("HUGE", huge).replace("KEY", key)))
    assert len(str(info.value)) < 300, len(str(info.value))


def test_short_is_bounded_for_anything():
    nested = [[["y" * 10_000] * 1000] * 1000] * 1000   # shared lists: 10**9 strings if rendered
    assert len(short(nested)) <= 80
    assert len(short("z" * 10**6)) <= 80 and short(None) == "None"


# ----- non-UTF-8 ----------------------------------------------------------------------


def test_non_utf8_calendar_is_rejected_with_the_reason_and_the_last_good_stays(path):
    store = CalendarStore(str(path))
    good = store.current
    path.write_bytes(path.read_text(encoding="utf-8").replace("keep me", "праздник").encode("cp1251"))
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert store.check() is False and store.current is good
    assert "not UTF-8" in store.last_error
    with pytest.raises(CalendarError, match="not UTF-8"):
        load_calendar(str(path))
    with pytest.raises(CalendarError, match="not UTF-8"):
        toggle_day(str(path), DAY, "ops")


# ----- symlinks (ConfigMap layout) ------------------------------------------------------


def configmap(tmp_path: Path, text: str) -> Path:
    """dir/calendar.yml -> ..data/calendar.yml, ..data -> ..2027_01_01 (as Kubernetes mounts it)."""
    mount = tmp_path / "mount"
    version = mount / "..2027_01_01"
    version.mkdir(parents=True)
    (version / "calendar.yml").write_text(text, encoding="utf-8")
    os.symlink("..2027_01_01", mount / "..data")
    os.symlink("..data/calendar.yml", mount / "calendar.yml")
    return mount / "calendar.yml"


def test_write_through_a_symlink_keeps_the_symlink(tmp_path):
    link = configmap(tmp_path, calendar_text("2027-01-01: holiday   # New Year", comment="keep me"))
    target = tmp_path / "mount" / "..2027_01_01" / "calendar.yml"
    toggle_day(str(link), DAY, "ops")
    assert link.is_symlink() and os.readlink(link) == "..data/calendar.yml"
    assert (tmp_path / "mount" / "..data").is_symlink()
    assert load_calendar(str(target)).day_status(DAY) == "holiday"
    assert "# New Year" in target.read_text(encoding="utf-8")
    leftovers = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] and not any(p.name.endswith(".tmp") for p in link.parent.iterdir())
    set_day(str(link), DAY, "working", "ops")
    assert link.is_symlink() and load_calendar(str(link)).day_status(DAY) == "working"


def test_symlinked_calendar_follows_a_configmap_update(tmp_path):
    link = configmap(tmp_path, calendar_text())
    store = CalendarStore(str(link))
    toggle_day(str(link), DAY, "ops")                       # a write through the link ...
    assert store.check() is True and store.current.day_status(DAY) == "holiday"
    mount = tmp_path / "mount"
    new = mount / "..2027_02_01"                            # ... then Kubernetes swaps ..data
    new.mkdir()
    (new / "calendar.yml").write_text(calendar_text("2027-03-04: holiday"), encoding="utf-8")
    os.symlink("..2027_02_01", mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")
    assert store.check() is True
    assert store.current.day_status(date(2027, 3, 4)) == "holiday"   # the update reached the reader
    assert store.current.day_status(DAY) == "working"


def test_read_only_target_directory_says_read_only(tmp_path, monkeypatch):
    link = configmap(tmp_path, calendar_text())
    before = link.read_bytes()

    def refuse(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(calendar_edit.tempfile, "mkstemp", refuse)
    with pytest.raises(CalendarReadOnly) as info:
        toggle_day(str(link), DAY, "ops")
    assert "read-only" in str(info.value)
    assert link.is_symlink() and link.read_bytes() == before


@contextlib.contextmanager
def read_only_mount(directory: Path):
    """A real read-only filesystem (tmpfs remounted ro); skips where mounting is not allowed."""
    directory.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def test_real_read_only_configmap_mount(tmp_path):
    mount = tmp_path / "ro"
    with read_only_mount(mount) as make_read_only:
        version = mount / "..2027_01_01"
        version.mkdir()
        (version / "calendar.yml").write_text(calendar_text(), encoding="utf-8")
        os.symlink("..2027_01_01", mount / "..data")
        os.symlink("..data/calendar.yml", mount / "calendar.yml")
        make_read_only()
        link = mount / "calendar.yml"
        with pytest.raises(CalendarReadOnly):
            toggle_day(str(link), DAY, "ops")
        # a dry run (calendar-sync --dry-run) still works without the lock
        outcome = apply_edit(str(link), lambda doc: None, write=False)
        assert outcome.old_text == outcome.new_text
        assert link.is_symlink()


# ----- names in comments ----------------------------------------------------------------


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
def test_every_line_separator_is_removed_from_comment_names(path, separator):
    name = f"Eve{separator}evil: [1{separator}# x (@eve, id 7)"
    clean = clean_comment_text(name)
    assert len(clean.splitlines()) == 1 and "#" not in clean and separator not in clean
    toggle_day(str(path), DAY, name)
    text = path.read_text(encoding="utf-8")
    assert load_calendar(str(path)).day_status(DAY) == "holiday"
    line = next(line for line in text.split("\n") if line.lstrip().startswith(DAY.isoformat()))
    assert "set by Eve" in line and "(@eve, id 7)" in line
    toggle_day(str(path), DAY, name)                       # and again: the same user toggles back
    assert load_calendar(str(path)).day_status(DAY) == "working"


def test_controls_and_lone_surrogates_never_reach_the_file(path):
    toggle_day(str(path), DAY, "a\x00b\x07c\ud800d\ufffee\U0001F600")
    assert load_calendar(str(path)).day_status(DAY) == "holiday"
    assert "set by a b c d e\U0001F600" in path.read_text(encoding="utf-8")


def test_tempfile_module_is_the_one_patched():
    # the read-only test above patches calendar_edit.tempfile.mkstemp: make sure it is used
    assert calendar_edit.tempfile is tempfile


def test_calendar_sync_names_an_unreadable_or_read_only_file(tmp_path, monkeypatch):
    from exporter.calendar.issreader import IssDay
    from exporter.calendar.sync import SyncError, sync_calendar

    class NoIss:  # ISS itself is replaced below: this test is about the file
        def get_block(self, *_args, **_kwargs):
            raise AssertionError("not expected")

    missing = tmp_path / "missing.yml"
    holiday = IssDay(DAY, {"eq": False, "fx": False, "fo": False}, {"eq": "H", "fx": "H", "fo": "H"})
    monkeypatch.setattr("exporter.calendar.sync.fetch_off_days", lambda *_a: {DAY: holiday})
    monkeypatch.setattr("exporter.calendar.sync.fetch_session_hours", lambda *_a: {})
    with pytest.raises(SyncError) as info:
        sync_calendar(NoIss(), str(missing), DAY, DAY)
    assert "nothing written" in str(info.value) and "cannot read" in str(info.value)
    assert "would be invalid" not in str(info.value)
    link = configmap(tmp_path, calendar_text())

    def refuse(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(calendar_edit.tempfile, "mkstemp", refuse)
    with pytest.raises(SyncError) as info:
        sync_calendar(NoIss(), str(link), DAY, DAY)
    assert "read-only" in str(info.value) and isinstance(info.value.__cause__, CalendarReadOnly)


@pytest.mark.parametrize("kind", ["not_utf8", "bomb"])
def test_exporter_start_with_a_bad_calendar_exits_2_with_the_reason(tmp_path, kind):
    import sys

    calendar = tmp_path / "calendar.yml"
    if kind == "not_utf8":
        calendar.write_bytes(calendar_text(comment="праздники").encode("cp1251"))
    else:
        calendar.write_text(calendar_bomb(), encoding="utf-8")
    config = tmp_path / "config.yml"
    config.write_text("calendar: {file: calendar.yml}\nmarkets: {eq: {enabled: false}, fx: {enabled: false}, "
                      "fo: {enabled: false}}\n", encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={config}", "--once"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert ("not UTF-8" if kind == "not_utf8" else "aliases") in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr) < 2000
    assert time.monotonic() - started < 30
