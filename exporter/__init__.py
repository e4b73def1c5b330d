"""algopack-monitor exporter: polls MOEX ISS ALGOPACK and serves Prometheus metrics."""

__version__ = "0.1.0"
