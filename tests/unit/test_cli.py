"""exporter.cli: one parser; global flags before or after the command mean the same."""

from __future__ import annotations

from datetime import date

import pytest

from exporter.cli import build_parser, main

GLOBAL = ["--config.file=c.yml", "--log.level=debug", "--clock=fixed:2026-01-01T10:00:00+03:00",
          "--web.listen-address=127.0.0.1:1"]


@pytest.mark.parametrize("command, own", [
    ("calendar-sync", ["--from=2026-01-01", "--till", "2026-03-31", "--dry-run"]),
    ("jobs", []),
])
def test_global_flags_before_or_after_the_command(command, own):
    parser = build_parser()
    before = vars(parser.parse_args([*GLOBAL, command, *own]))
    after = vars(parser.parse_args([command, *own, *GLOBAL]))
    mixed = vars(parser.parse_args([GLOBAL[0], command, *GLOBAL[1:], *own]))
    assert before == after == mixed
    assert before["command"] == command and before["config_file"] == "c.yml"
    assert before["log_level"] == "debug" and before["listen_address"] == "127.0.0.1:1"
    if command == "calendar-sync":
        assert (before["date_from"], before["date_till"], before["dry_run"]) == (date(2026, 1, 1),
                                                                               date(2026, 3, 31), True)


def test_absent_flags_keep_the_defaults_for_every_command():
    parser = build_parser()
    serve = parser.parse_args([])
    assert serve.command is None and serve.config_file is None and serve.listen_address is None
    assert serve.log_level is None and not serve.once
    for command in ("calendar-sync", "jobs"):
        args = parser.parse_args([command])
        assert (args.config_file, args.listen_address, args.log_level, args.clock) == (None, None, None, None)


def test_a_flag_given_before_survives_the_command_parser():
    args = build_parser().parse_args(["--config.file=first.yml", "calendar-sync", "--dry-run"])
    assert args.config_file == "first.yml" and args.dry_run


@pytest.mark.parametrize("order", ["before", "after"])
def test_bad_config_exits_2_naming_the_key_in_either_order(tmp_path, capsys, order):
    bad = tmp_path / "bad.yml"
    bad.write_text("poll: {interval_seconds: -5}\n")
    flag = f"--config.file={bad}"
    argv = [flag, "calendar-sync", "--dry-run"] if order == "before" else ["calendar-sync", "--dry-run", flag]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "poll.interval_seconds" in err and "must be > 0" in err


def test_once_belongs_to_serving_only():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "--once"])
