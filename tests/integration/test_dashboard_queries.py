"""Every dashboard panel query returns data from a real Prometheus scraping a real exporter.

The stack (deploy/stack.py `LocalStack`): sandbox ISS -> exporter -> Prometheus 2.42, all on
loopback with a fast shared clock starting at 12:04 MSK (every market in session), and the
repo's alert rules loaded. Two sandbox faults make the "something is wrong" panels non-empty
as well: one dropped probe bucket (missing intervals, missing buckets now, and the firing
AlgopackMissingIntervals in the alerts list) and HTTP 500 on one pair (poll errors by reason).
Each query runs as an instant query with the template variables replaced by concrete values;
an empty result means an empty panel in Grafana (a typo in a metric or label, or a metric the
exporter does not expose).
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
MARKETS = {"eq", "fx", "fo"}

# Instant-query values for Grafana's variables; the scrape interval of the test is 1 s.
SUBSTITUTIONS = {
    "market": "eq|fx|fo",
    "endpoint": ".*",
    "__range": "1h",
    "__rate_interval": "10s",
    "__interval": "2s",
}

# Queries allowed to return nothing in this run (they must still run without error).
# Empty on purpose: the injected faults below make even the "something is wrong" panels
# show data, including the firing alerts list (ALERTS exists only while an alert fires).
ALLOWED_EMPTY: frozenset[str] = frozenset()

DROPPED = {"market": "eq", "dataset": "tradestats"}  # its interval: interval_to_drop(), once the stack is up
BUCKET_SECONDS = 300   # eq tradestats
# Virtual time the fault call may take (2 s real at the test's clock speed 30).
FAULT_LEAD = timedelta(minutes=1)
FAILING = {"market": "fx", "dataset": "orderstats", "status": 500}

# Panels that must show the injected faults: a series of the faulted pair with a value > 0.
FAULT_VISIBLE = {
    "algopack-overview:14:A": {"market": "eq", "endpoint": "tradestats"},  # missing intervals
    "algopack-overview:18:A": {"market": "eq", "endpoint": "tradestats"},  # missing buckets now
    "algopack-health:21:B": {"market": "fx", "endpoint": "orderstats"},  # poll errors by reason
    # The repo's rules fire AlgopackMissingIntervals for the hole (no for:, session long open).
    "algopack-overview:17:A": {"alertname": "AlgopackMissingIntervals", "market": "eq", "endpoint": "tradestats"},
}

pytestmark = pytest.mark.integration


def interval_to_drop(now: datetime) -> datetime:
    """The end of the first bucket at least FAULT_LEAD after `now`: still unpublished when
    the fault lands (the sandbox publishes a bucket 5-15 s after its end).

    A fixed interval cannot work: the virtual clock runs while the stack starts (~7 s real
    here, > 12 s under a loaded box, i.e. past 12:10 at speed 30). A bucket the exporter has
    already read stays seen when the sandbox drops it afterwards (the shifted rows only make
    it re-read the day: `overlap-mismatch`), so it never shows as missing."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    after = (now + FAULT_LEAD - midnight).total_seconds()
    return midnight + timedelta(seconds=math.ceil(after / BUCKET_SECONDS) * BUCKET_SECONDS)


def test_the_dropped_interval_is_unpublished_however_late_the_stack_is_up():
    """A start past 12:10 (a slow start under load) must not drop an already published bucket."""
    from exporter.clock import MSK

    for hh, mm, ss in ((12, 6, 0), (12, 9, 30), (12, 10, 20), (12, 13, 59), (12, 19, 0)):
        now = datetime(2026, 11, 25, hh, mm, ss, tzinfo=MSK)
        end = interval_to_drop(now)
        assert now + FAULT_LEAD <= end < now + FAULT_LEAD + timedelta(seconds=BUCKET_SECONDS)
        assert end.timestamp() % BUCKET_SECONDS == 0 and end.second == 0


def substitute(expr: str) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return SUBSTITUTIONS.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def dashboard_queries() -> dict[str, str]:
    """'uid:panel:refId' -> PromQL with variables substituted, for every panel target."""
    queries = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        panels = []
        for panel in dashboard["panels"]:
            panels.append(panel)
            panels.extend(panel.get("panels", []))
        for panel in panels:
            for target in panel.get("targets", []):
                queries[f"{dashboard['uid']}:{panel['id']}:{target['refId']}"] = substitute(target["expr"])
    return queries


def test_allowed_empty_and_fault_visible_queries_exist():
    """The exemption lists name real panels (a renumbered panel must not dodge the check)."""
    queries = dashboard_queries()
    assert ALLOWED_EMPTY <= set(queries)
    assert set(FAULT_VISIBLE) <= set(queries)
    assert 'alertstate="firing"' in queries["algopack-overview:17:A"]


@pytest.mark.timeout(180)
def test_every_panel_query_returns_data(tmp_path):
    from deploy.stack import LocalStack

    queries = dashboard_queries()
    required = set(queries) - ALLOWED_EMPTY
    latest: dict[str, list] = {}
    shown: dict[str, list] = {}  # the first complete result of each query
    with LocalStack(tmp_path, clock_speed=30, components=("iss", "exporter", "prometheus"),
                    rules_dir=REPO / "prometheus" / "rules", scrape_interval="1s", eval_interval="1s") as stack:
        end = interval_to_drop(stack.virtual_now())
        dropped = {**DROPPED, "intervals": [end.strftime("%H:%M")]}
        stack.iss_fault(drop_intervals=dropped, http_error=FAILING)
        set_at = stack.virtual_now()
        assert set_at < end, f"the fault for {dropped['intervals']} landed at {set_at:%H:%M:%S}, after the bucket"
        # It is due one grace (1 min) after its end: at most ~7 virtual minutes, 14 s real, from now.
        deadline = time.monotonic() + 90
        while True:
            for key, expr in queries.items():
                # Raises on a query error, so the allowed-empty ones are checked to run, too.
                latest[key] = stack.prom_query(expr)
                if key not in shown and _complete(key, latest[key]):
                    shown[key] = latest[key]
            pending = sorted(required - set(shown))
            if not pending or time.monotonic() > deadline:
                break
            dead = [name for name, ok in stack.alive().items() if not ok]
            assert not dead, f"died: {dead}\n" + "\n".join(stack.log_tail(n) for n in dead)
            time.sleep(1)   # the scrape and evaluation interval
        # The injected HTTP 500s repeat every poll; leave them out of the log excerpt.
        noise = f"market={FAILING['market']} endpoint={FAILING['dataset']} reason=http"
        tail = [line for line in stack.log_tail("exporter", 400).splitlines() if noise not in line]
        logs = "" if not pending else "\n--- exporter log ---\n" + "\n".join(tail[-30:])

    report = "\n".join(f"{key}: {_summary(latest[key])}\n    {queries[key]}" for key in pending)
    assert not pending, f"panel queries without (complete) data:\n{report}{logs}"
    missing_now = {(r["metric"]["market"], r["metric"]["endpoint"], r["metric"]["interval"])
                   for r in shown["algopack-overview:18:A"]}
    assert (DROPPED["market"], DROPPED["dataset"], dropped["intervals"][0]) in missing_now


def _complete(key: str, result: list) -> bool:
    """Non-empty; where series carry a market label, every market is there; a faulted pair
    shows a positive value where the fault must be visible."""
    if not result:
        return False
    if key in FAULT_VISIBLE:
        want = FAULT_VISIBLE[key]
        return any(float(r["value"][1]) > 0 and all(r["metric"].get(k) == v for k, v in want.items())
                   for r in result)
    markets = {r["metric"]["market"] for r in result if "market" in r["metric"]}
    return not markets or markets == MARKETS


def _summary(result: list) -> str:
    if not result:
        return "no series"
    markets = sorted({r["metric"].get("market", "-") for r in result})
    values = sorted({r["value"][1] for r in result})[:5]
    return f"{len(result)} series, markets {markets}, values {values}"
