"""Shared pieces of the reliability suite: simulation stepping with per-step checks,
promtool evaluation of exporter output, and secret scanning."""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import yaml

from exporter.clock import MSK
from tests.integration.exporter_sim import Simulation
from tests.support import need_binary, wait_until

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "prometheus" / "rules" / "algopack.yml"


def step_until(sim: Simulation, end: datetime, check: Callable[[Simulation], None]) -> int:
    """Like `Simulation.run_until`, but calls `check(sim)` after every poll round (what a
    Prometheus scrape right after each poll would see). Returns the number of rounds."""
    rounds = 0
    sim.poll_due()
    check(sim)
    while True:
        upcoming = [s.next_poll_ts for s in sim.app.store.snapshot.pairs.values() if s.next_poll_ts]
        nxt = min(upcoming) if upcoming else end.timestamp()
        if nxt > end.timestamp():
            sim.clock.set(end)
            check(sim)
            return rounds
        sim.clock.set(datetime.fromtimestamp(max(nxt, sim.clock.timestamp()), MSK))
        sim.poll_due()
        rounds += 1
        check(sim)


def route_stats(sim: Simulation) -> dict[tuple[str, str | None, str | None], dict]:
    return {(r["kind"], r["market"], r["dataset"]): r for r in sim.iss.stats()["routes"]}


# ---------------------------------------------------------------------------- promtool


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def exposition_series(sim: Simulation, names: Iterable[str]) -> dict[str, float]:
    """Current samples of `names` as promtool series strings (NaN samples skipped, as a
    scrape of NaN never satisfies a comparison anyway)."""
    wanted = set(names)
    out = {}
    for (name, labels), value in sim.metrics().items():
        if name in wanted and not math.isnan(value):
            out[_series(name, dict(labels))] = value
    return out


def rules_without_annotations(tmp: Path) -> Path:
    """The shipped rules with annotations dropped: their templates run queries that
    promtool would have to match verbatim; here only the expressions and `for:` matter."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    out = tmp / "rules.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def promtool_alerts(tmp: Path, series: dict[str, float], checks: list[dict], minutes: int = 10) -> subprocess.CompletedProcess:
    """Hold `series` constant for `minutes` (1 m steps) and run promtool alert tests `checks`
    ([{eval_time, alertname, exp_alerts}]) against the shipped rules' expressions."""
    promtool = need_binary("promtool")
    rules = rules_without_annotations(tmp)
    inputs = [{"series": name, "values": f"{value:g}+0x{minutes}"} for name, value in sorted(series.items())]
    inputs.append({"series": 'up{job="algopack",instance="exporter"}', "values": f"1+0x{minutes}"})
    doc = {"rule_files": [str(rules)], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": checks}]}
    test_file = tmp / "promtool_test.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------------- secrets

# Shapes of real secrets, for files we did not write ourselves (git ls-files). The
# "assigned" shape is for configuration files only (in code, names are assigned variables).
CONFIG_ONLY = {"secret assigned in env/yaml"}
SECRET_SHAPES = {
    "telegram bot token": re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    "passport cookie value": re.compile(r"MicexPassportCert=[A-Za-z0-9%+/=_-]{16,}"),
    "bearer credential": re.compile(r"Bearer\s+[A-Za-z0-9._~+/=-]{24,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "secret assigned in env/yaml": re.compile(
        r"^\s*(?:export\s+)?(?:MOEX_PASSPORT_PASSWORD|MOEX_API_KEY|TELEGRAM_BOT_TOKEN(?:_BOT)?|GRAFANA_ADMIN_PASSWORD"
        r"|bot_token|password|api_key)\s*[:=]\s*['\"]?(?!\$\{|<|\{\{|/|['\"]|\s*$|None\b|null\b|changeme\b)\S{8,}",
        re.MULTILINE | re.IGNORECASE),
}


def find_secrets(text: str, known: Iterable[str]) -> list[str]:
    """Names of the known secret values found in `text` (exact and URL-encoded)."""
    from urllib.parse import quote

    found = []
    for secret in known:
        if secret and (secret in text or quote(secret, safe="") in text):
            found.append(secret)
    return found


# ---------------------------------------------------------------------------- stacks


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.3):
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` s."""
    return wait_until(predicate, timeout, what, step)


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def pair_samples(metrics: dict, name: str, **match: str) -> dict[tuple[str, str], float]:
    """{(market, endpoint): value} of metric `name` whose labels include `match`."""
    out = {}
    for (metric, labels), value in metrics.items():
        labels = dict(labels)
        if metric == name and "endpoint" in labels and all(labels.get(k) == v for k, v in match.items()):
            out[(labels["market"], labels["endpoint"])] = value
    return out


def rules_with_short_for(tmp: Path, alerts: dict[str, str]) -> Path:
    """A copy of the shipped rule files where the `for:` of each alert in `alerts` is
    replaced ({"AlgopackPollFailing": "20s"}): expressions stay the shipped ones, only the
    wait is shortened so a test sees the alert fire in seconds instead of minutes."""
    out = tmp / "rules"
    out.mkdir(parents=True, exist_ok=True)
    for source in RULES.parent.glob("*.yml"):
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        current = None
        for index, line in enumerate(lines):
            match = re.match(r"\s*- alert: (\S+)", line)
            if match:
                current = match.group(1)
            elif current in alerts and re.match(r"\s*for: ", line):
                lines[index] = re.sub(r"for: \S+", f"for: {alerts[current]}", line)
                current = None
        (out / source.name).write_text("".join(lines), encoding="utf-8")
    return out


DATA_ALERTS = {"AlgopackMissingIntervals", "AlgopackDataDelayed", "AlgopackObstatsSecidsDropped",
               "AlgopackHi2Missing"}


def data_alerts(alerts: set[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """Data alerts among (alertname, alertstate, market, endpoint) states seen in Prometheus.

    A *pending* AlgopackObstatsSecidsDropped is left out: the sandbox leaves each FX obstats
    instrument out of ~2 % of buckets at random, so one bucket in ~100 lists 3 of its 20 fewer
    than the same interval yesterday; `for: 10m` is what keeps that from paging, and a fast
    clock's real-time `for:` never lets it fire here. Firing, it still counts."""
    return sorted(a for a in alerts if a[0] in DATA_ALERTS
                  and not (a[0] == "AlgopackObstatsSecidsDropped" and a[1] == "pending"))


def alerts_seen(stack, seconds: float) -> set[tuple[str, str, str, str]]:
    """(alertname, alertstate, market, endpoint) of every alert Prometheus had, pending or
    firing, at any evaluation of the last `seconds` (plus 10 s of margin)."""
    alerts = set()
    for item in stack.prom_query(f"max_over_time(ALERTS[{int(seconds) + 10}s])"):
        labels = item["metric"]
        alerts.add((labels["alertname"], labels["alertstate"], labels.get("market", ""),
                    labels.get("endpoint", "")))
    return alerts
