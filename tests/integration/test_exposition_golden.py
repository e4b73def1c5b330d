"""Golden exposition: the sandbox's deterministic day through the real client, poller and
collector. Regenerate on purpose with UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .exporter_sim import Simulation, at

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
# Values that legitimately differ between runs: wall-clock durations and the process itself.
VOLATILE = re.compile(r"^(process_|python_|algopack_poll_duration_seconds|# (HELP|TYPE) (process_|python_))")


def stable(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not VOLATILE.match(line)) + "\n"


@pytest.mark.parametrize(("name", "start", "end", "faults"), [
    ("eq_morning", at(9, 58), at(10, 32), {}),
    ("eq_stopped_and_holes", at(9, 58), at(10, 47),
     {"stop": {"market": "eq", "dataset": "tradestats", "at": "10:31"},
      "drop_intervals": {"market": "eq", "dataset": "orderstats", "intervals": ["10:15", "10:20"]}}),
])
def test_exposition_matches_golden(tmp_path, name, start, end, faults):
    markets = {"eq": {"enabled": True}, "fx": {"enabled": False}, "fo": {"enabled": False}}
    sim = Simulation(tmp_path, start, markets=markets)
    try:
        for knob, params in faults.items():
            sim.iss.faults.set(knob, **params)
        sim.run_until(end)
        text = stable(sim.exposition())
    finally:
        sim.close()
    path = GOLDEN / f"exposition_{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"exposition differs from {path.name}; UPDATE_GOLDEN=1 to accept on purpose"
