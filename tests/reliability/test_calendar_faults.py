"""Calendar faults while the exporter runs: a rejected file keeps the last good calendar
in force (sessions, polls, alerts unchanged), `algopack_calendar_last_reload_successful`
goes 0, and a good file brings it back to 1. The alert on that metric is promtool-tested
(prometheus/tests/health_test.yml, AlgopackCalendarReloadFailed); the end-to-end check
with the exporter process and a real Prometheus is in test_alerting_e2e.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.exporter_sim import CALENDAR, Simulation, at

pytestmark = pytest.mark.reliability

GOOD = CALENDAR.read_text(encoding="utf-8")


def _replace(path: Path, text: str) -> None:
    """What our writers do: temp file + rename."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _truncate_in_place(path: Path, text: str) -> None:
    """What a careless editor or a full disk does: the same inode, cut mid-line."""
    cut = text.index("fx:") + len("fx: {sessions: [[")
    with open(path, "r+", encoding="utf-8") as handle:
        handle.truncate(0)
        handle.write(text[:cut])


def _eq_session_moved(text: str) -> str:
    return text.replace('eq: {sessions: [["10:00", "18:40"]', 'eq: {sessions: [["11:00", "18:40"]', 1)


CASES = {
    # each one also moves the EQ session start, so "the last good calendar is kept" is visible
    "invalid_yaml": lambda t: _eq_session_moved(t) + "\ndays: [unclosed\n",
    "unknown_market": lambda t: _eq_session_moved(t).replace(
        "  eq: {sessions:", '  xx: {sessions: [["10:00", "12:00"]]}\n  eq: {sessions:', 1),
    "overlapping_sessions": lambda t: t.replace('[["10:00", "18:40"], ["19:05", "23:50"]]',
                                                '[["11:00", "18:40"], ["18:00", "23:50"]]', 1),
    "feb_30": lambda t: _eq_session_moved(t).replace("days:\n", "days:\n  2026-02-30: holiday\n", 1),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calendar-faults")
    path = tmp / "calendar.yml"
    path.write_text(GOOD, encoding="utf-8")
    simulation = Simulation(tmp, at(10, 20), calendar=path)
    simulation.calendar_path = path
    simulation.run_until(at(10, 30))
    yield simulation
    simulation.close()


def _assert_last_good_in_force(sim: Simulation) -> None:
    assert sim.value("algopack_calendar_last_reload_successful") == 0
    assert sim.app.calendars.current.session_start("eq", sim.clock.now()) == at(10, 0)
    assert sim.value("algopack_session_start_timestamp_seconds", market="eq") == at(10, 0).timestamp()
    assert sim.value("algopack_session_open", market="eq") == 1
    # Polling goes on under the last good calendar: no holes, no errors.
    for pair, missing in sim.pair_values("algopack_missing_intervals").items():
        assert missing == 0, pair
    assert sim.value("algopack_up", market="eq", endpoint="tradestats") == 1


def _check_case(sim: Simulation, write) -> None:
    start = sim.clock.now()
    write()
    assert sim.app.calendars.check() is False
    assert sim.app.calendars.last_error
    sim.run_until(start.replace(minute=start.minute + 5))
    _assert_last_good_in_force(sim)
    # A later valid write is taken at once and the metric returns to 1.
    _replace(sim.calendar_path, GOOD)
    assert sim.app.calendars.check() is True
    assert sim.value("algopack_calendar_last_reload_successful") == 1


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_calendar_keeps_the_last_good_one(sim, case):
    if sim.clock.now() >= at(11, 0):
        pytest.fail("module simulation ran out of room")  # keeps the minute arithmetic simple
    _check_case(sim, lambda: _replace(sim.calendar_path, CASES[case](GOOD)))


def test_truncated_file_written_in_place_is_rejected(sim):
    _check_case(sim, lambda: _truncate_in_place(sim.calendar_path, GOOD))


def test_rejection_messages_name_the_problem(tmp_path):
    from exporter.calendar import CalendarError, parse_calendar_text

    expected = {"invalid_yaml": "", "unknown_market": "xx", "overlapping_sessions": "overlap", "feb_30": "2026-02-30"}
    for case, make in CASES.items():
        with pytest.raises(CalendarError) as info:
            parse_calendar_text(make(GOOD))
        assert expected[case].lower() in str(info.value).lower(), (case, str(info.value))
