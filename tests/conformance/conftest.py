"""Conformance fixtures: `iss`, the shared scripted ISS (tests.support.FakeIss), closed after the test."""

from __future__ import annotations

import pytest

from tests.support import FakeIss


@pytest.fixture
def iss():
    with FakeIss() as server:
        yield server
