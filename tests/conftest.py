"""Fixtures and markers for every suite; the plain helpers are in tests/support.py.

- `needs_binary("promtool", ...)` marks a test that runs external programs: it fails when
  one is missing (skips only with ALGOPACK_TESTS_ALLOW_MISSING_BINARIES=1). Unit tests may not
  carry it: a test that needs a binary belongs in tests/integration/ or tests/reliability/.
- `fake_iss`: a fresh `FakeIss` (tests/support.py), closed after the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import FakeIss, need_binary

UNIT = Path(__file__).resolve().parent / "unit"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_binary(*names): runs these external programs; fails when one is missing "
        "(skips with ALGOPACK_TESTS_ALLOW_MISSING_BINARIES=1); not allowed in tests/unit")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("needs_binary") and UNIT in Path(str(item.path)).resolve().parents:
            raise pytest.UsageError(f"{item.nodeid}: a unit test needs no external binary; "
                                    "move it to tests/integration/")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_binary"):
        for name in mark.args:
            need_binary(name)


@pytest.fixture
def fake_iss():
    with FakeIss() as server:
        yield server
