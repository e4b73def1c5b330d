"""Reliability suite: the fault matrix of RELIABILITY.md."""


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability: a case of the reliability fault matrix (RELIABILITY.md)")
