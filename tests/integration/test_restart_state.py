"""A real exporter process restarted mid-session with its persisted state (--storage.path).

One LocalStack (sandbox ISS, the exporter process, real Prometheus with the shipped rules) on
a x30 clock inside every market's session. The exporter is stopped cleanly (SIGTERM) and
later killed (SIGKILL), and started again each time on the same port with the same default
`--storage.path` (`data/` beside its config). Measured from the sandbox's own counters: ISS
requests and bytes from the stop to the new process's `/-/ready` (issue 16 target: ≤ 15
requests, ≤ 200 KB; the first start, which reads the previous day, is printed beside it).
Asserted: the state is loaded; no bucket is judged twice (per pair, the SLO counters of the
day equal the buckets judged that day, in the state file and in the exposition); the SLO
counters never go down across a restart; no data alert or AlgopackPollFailing in any state.
Then a corrupt state file: the process starts, warns once, polls, and writes a good state.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time

import pytest
import requests

from deploy.stack import LocalStack
from exporter.clock import FastClock
from exporter.storage import FILE_NAME
from sandbox.iss import SandboxIss
from sandbox.procs import ManagedProcess, free_port, python_module, wait_http
from tests.reliability.helpers import alerts_seen, data_alerts, pair_samples, parse_exposition, wait_for

from .exporter_sim import CALENDAR, at, write_config

pytestmark = pytest.mark.integration

SPEED = 30.0
TARGET_REQUESTS = 15
TARGET_BYTES = 200_000


def _iss_total(stack: LocalStack) -> dict:
    stats = stack._get("iss", "/sandbox/stats")
    routes = {(r["kind"], r["market"], r["dataset"]): (r["requests"], r["bytes"]) for r in stats["routes"]}
    return {"requests": stats["total"]["requests"], "bytes": stats["total"]["bytes"], "routes": routes}


def _cost(after: dict, before: dict) -> dict:
    routes = {}
    for key, (count, size) in after["routes"].items():
        was = before["routes"].get(key, (0, 0))
        if count - was[0]:
            routes["/".join(str(part) for part in key)] = (count - was[0], size - was[1])
    return {"requests": after["requests"] - before["requests"], "bytes": after["bytes"] - before["bytes"],
            "routes": routes}


def _judged_totals(stack: LocalStack) -> dict[tuple[str, str], float]:
    metrics = parse_exposition(stack.exporter_metrics())
    totals: dict[tuple[str, str], float] = {}
    for outcome in ("on_time", "late", "missing"):
        for pair, value in pair_samples(metrics, "algopack_buckets_total", outcome=outcome).items():
            totals[pair] = totals.get(pair, 0.0) + value
    return totals


def _state_doc(stack: LocalStack) -> dict:
    return json.loads((stack.workdir / "data" / FILE_NAME).read_text())


def _each_bucket_judged_once(doc: dict) -> dict[str, tuple[int, int]]:
    """(counted verdicts, judged buckets) per pair of the saved state; one lineage of one day."""
    out = {}
    for (market, endpoint), state in doc["snapshot"]["pairs"]:
        if endpoint != "hi2":
            out[f"{market}/{endpoint}"] = (sum(state["buckets_total"].values()), len(state["judged"]))
    return out


def _restart(stack: LocalStack, signum: int) -> tuple[dict, float]:
    before = _iss_total(stack)
    proc = stack.procs.pop("exporter")
    stopped_at = time.monotonic()
    proc.signal(signum)
    code = proc.popen.wait(timeout=15)
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL), code
    proc.stop()
    stack._start_exporter()                  # same port, same config and data/, waits for /-/ready
    return _cost(_iss_total(stack), before), time.monotonic() - stopped_at


def test_restart_with_state_costs_few_requests_and_judges_no_bucket_twice(tmp_path):
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not installed (make bins)")
    with LocalStack(tmp_path / "stack", clock_speed=SPEED, components=("iss", "exporter", "prometheus"),
                    delay_threshold_seconds=600) as stack:
        first_start = _iss_total(stack)       # the first start: previous-day reads, probe choice, the day so far
        t0 = time.monotonic()
        state_file = stack.workdir / "data" / FILE_NAME
        wait_for(state_file.exists, 30, "the first state write")
        wait_for(lambda: min(_judged_totals(stack).values(), default=0) >= 2, 90, "two judged buckets per pair")
        costs = {}
        for name, signum in (("SIGTERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL)):
            judged_before = _judged_totals(stack)
            cost, seconds = _restart(stack, signum)
            costs[name] = (cost, seconds)
            metrics = parse_exposition(stack.exporter_metrics())
            assert metrics[("algopack_state_loaded", ())] == 1.0, name
            judged_after = _judged_totals(stack)
            for pair, value in judged_before.items():
                assert judged_after[pair] >= value, (name, pair, value, judged_after[pair])   # never a reset
            assert cost["requests"] <= TARGET_REQUESTS and cost["bytes"] <= TARGET_BYTES, (name, cost)
            assert not {route for route in cost["routes"] if route.startswith("day/")}, (name, cost)  # no day download
            # More buckets come and are judged by the new process.
            wait_for(lambda before=judged_after: sum(_judged_totals(stack).values()) > sum(before.values()) + 4,
                     60, f"verdicts after the {name} restart")
        stack.stop_component("exporter")      # a clean stop writes the last state
        once = _each_bucket_judged_once(_state_doc(stack))
        assert once and all(counted == judged for counted, judged in once.values()), once
        assert all(judged >= 4 for _, judged in once.values()), once

        # A corrupt state file: the process starts, warns once, works, and saves a good state.
        state_file.write_bytes(b'{"format": "algopack-exporter-state", "version": 1, "snapsh')
        log_path = stack.workdir / "logs" / "exporter.log"
        log_before = log_path.read_text(errors="replace")
        corrupt_before = _iss_total(stack)
        stack.restart_component("exporter")
        corrupt_cost = _cost(_iss_total(stack), corrupt_before)
        metrics = parse_exposition(stack.exporter_metrics())
        assert metrics[("algopack_state_loaded", ())] == 0.0
        assert all(v == 1.0 for v in pair_samples(metrics, "algopack_up").values() if v == v)
        new_log = log_path.read_text(errors="replace")[len(log_before):]
        ignored = [line for line in new_log.splitlines() if "state ignored" in line]
        assert len(ignored) == 1 and "level=WARNING" in ignored[0] and "Traceback" not in new_log, new_log[-2000:]
        wait_for(lambda: _state_doc(stack).get("format") == "algopack-exporter-state", 30, "a good state again")
        storm = time.monotonic() - t0
        wait_for(lambda: stack.prom_query('algopack_up{endpoint!="hi2"} == 1'), 30, "scrapes after the restarts")
        alerts = alerts_seen(stack, storm)

    def fmt(cost):
        return f"{cost['requests']} requests, {cost['bytes'] / 1000:.1f} KB"

    print(f"\nfirst start (no state): {fmt(first_start)}; by route: "
          f"{ {'/'.join(map(str, k)): v for k, v in first_start['routes'].items()} }")
    for name, (cost, seconds) in costs.items():
        print(f"restart after {name} with state: {fmt(cost)}, stop->ready {seconds:.1f}s; by route: {cost['routes']}")
    print(f"restart with a corrupt state file (starts fresh): {fmt(corrupt_cost)}")
    print(f"verdicts == judged buckets per pair: {once}")
    assert not data_alerts(alerts) + [a for a in alerts if a[0] == "AlgopackPollFailing"], alerts
    assert ("AlgopackExporterDown", "firing", "", "") not in alerts, alerts


def test_unwritable_storage_path_warns_counts_and_keeps_polling(tmp_path):
    clock = FastClock(start=at(11, 0), speed=30)
    iss = SandboxIss(str(CALENDAR), clock, port=0)
    iss.start()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    port = free_port()
    cfg = write_config(tmp_path, iss.url, iss={"timeout_seconds": 10})   # the in-process sandbox is slow at first
    proc = ManagedProcess("exporter", python_module("exporter", f"--config.file={cfg}",
                                                    f"--web.listen-address=127.0.0.1:{port}",
                                                    f"--storage.path={blocker / 'data'}"),
                          tmp_path / "exporter.log", env={"ALGOPACK_CLOCK": clock.spec()})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/-/ready", timeout=60, proc=proc)

        def failing_but_polling():
            metrics = parse_exposition(requests.get(base + "/metrics", timeout=5).text)
            up = pair_samples(metrics, "algopack_up", endpoint="tradestats")
            failures = metrics.get(("algopack_state_persist_failures_total", ()), 0.0)
            return failures >= 2 and len(up) == 3 and set(up.values()) == {1.0} and metrics

        metrics = wait_for(failing_but_polling, 60, "two failed state writes while the polls succeed")
        assert metrics[("algopack_state_loaded", ())] == 0.0
        assert metrics[("algopack_state_persists_total", ())] == 0.0
        assert proc.poll() is None
    finally:
        proc.stop()
        iss.stop()
    log_text = proc.log_path.read_text(errors="replace")
    assert log_text.count("state not saved") == 1 and "Traceback" not in log_text, log_text[-2000:]


def test_state_of_the_previous_day_is_its_comparison_data_and_its_cursors_are_dropped(tmp_path, caplog):
    """Day 1 watched from before its first session to its end, stopped; day 2 starts from
    that state: the secid comparison day comes from day 1's own observations (no download),
    day 1's cursors and verdicts are dropped, and day 1 is not judged again on day 2."""
    from exporter.app import ExporterApp

    from .exporter_sim import Simulation

    data = tmp_path / "data"
    # FX only (07:00-19:00): a whole watched day in seconds of simulation.
    markets = {"eq": {"enabled": False}, "fo": {"enabled": False},
               "fx": {"enabled": True, "endpoints": ["tradestats", "obstats"]}}
    sim = Simulation(tmp_path, at(6, 55, day=24), markets=markets)
    try:
        sim.app.client.close()
        sim.app = ExporterApp(sim.config, sim.clock, storage_path=str(data))
        sim.app.poller.plan_startup(sim.clock.now())
        sim.run_until(at(23, 59, day=24))
        sim.app.storage.write()                      # what the clean stop writes
        day1 = {pair: state for pair, state in sim.app.store.snapshot.pairs.items()}
        sim.app.client.close()

        sim.clock.set(at(6, 55, day=25))
        caplog.clear()
        caplog.set_level(logging.INFO, logger="exporter")
        sim.app = ExporterApp(sim.config, sim.clock, storage_path=str(data))
        assert sim.app.storage.loaded
        assert sim.app.poller.started_ts == sim.clock.timestamp()   # an earlier day's state: judging starts anew
        sim.app.poller.plan_startup(sim.clock.now())
        sim.run_until(at(8, 30, day=25))
        log_text = "\n".join(r.getMessage() for r in caplog.records)
        assert "previous day obstats market=fx day=2026-11-24" in log_text, log_text[-3000:]
        assert "source=observed" in log_text, log_text[-3000:]
        assert "obstats" not in "\n".join(line for line in log_text.splitlines() if "source=download" in line)
        for pair, state in sim.app.store.snapshot.pairs.items():
            if pair[1] == "hi2":
                continue
            assert state.day == at(0, 0, day=25).date(), pair
            assert all(bucket >= at(0, 0, day=25).timestamp() for bucket in state.judged), pair
            assert state.judged, pair
            # Day 2's verdicts come on top of day 1's (counters are kept), none of day 1's twice.
            day2 = sum(state.buckets_total.values()) - sum(day1[pair].buckets_total.values())
            assert day2 == len(state.judged), (pair, day2, len(state.judged))
    finally:
        sim.close()
