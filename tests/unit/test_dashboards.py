"""Structure of the Grafana dashboards and provisioning (no Grafana server needed).

What is checked: every dashboard is valid JSON with the uids and panel ids of
docs/internals.md (alert links depend on them), unique panel ids, no hard-coded datasource
names, the market/endpoint template variables, every panel query parses as PromQL after the
template variables are substituted, and only metric names of the contract are used. Links to
dashboards found in alertmanager/templates and prometheus/rules must point to existing panels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROVISIONING = REPO / "grafana" / "provisioning"
DATASOURCE_VAR = "${datasource}"
DATASOURCE_UID = "algopack-prometheus"

# Concrete values for Grafana's template variables, so each query is plain PromQL.
SUBSTITUTIONS = {
    "market": "eq|fx|fo",
    "endpoint": ".*",
    "__range": "1h",
    "__rate_interval": "1m",
    "__interval": "15s",
    "datasource": DATASOURCE_UID,
}

# The metric table of the design (shared contract), plus Prometheus' own ALERTS series.
DESIGN_METRICS = {
    "algopack_session_open",
    "algopack_session_start_timestamp_seconds",
    "algopack_last_tradetime_timestamp_seconds",
    "algopack_last_systime_timestamp_seconds",
    "algopack_lag_seconds",
    "algopack_publish_delay_seconds",
    "algopack_delay_threshold_seconds",
    "algopack_missing_intervals",
    "algopack_hi2_present",
    "algopack_hi2_expected",
    "algopack_obstats_secids",
    "algopack_obstats_secids_prev_day_max",
    "algopack_up",
    "algopack_polls_total",
    "algopack_poll_errors_total",
    "algopack_poll_duration_seconds_bucket",
    "algopack_poll_duration_seconds_sum",
    "algopack_poll_duration_seconds_count",
    "algopack_last_poll_success_timestamp_seconds",
    "algopack_iss_requests_total",
    "algopack_iss_response_bytes_total",
    "algopack_calendar_last_reload_successful",
    "algopack_build_info",
    "ALERTS",
}


def substitute(expr: str, values: dict[str, str] = SUBSTITUTIONS) -> str:
    """Replace $var, ${var} and [[var]] with concrete values; unknown names are left as is."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(dashboard: dict) -> list[dict]:
    """Panels in document order, including those nested in collapsed rows."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, target) for panel in all_panels(dashboard) for target in panel.get("targets", [])]


def internals_dashboard_table() -> dict[str, set[int]]:
    """uid -> panel ids, from the 'Dashboards' table of docs/internals.md."""
    text = (REPO / "docs" / "internals.md").read_text()
    section = text.split("## Dashboards", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[int]] = {}
    uid = None
    for line in section.splitlines():
        match = re.match(r"\|\s*(?:`([\w-]+)`)?\s*\|\s*(\d+)\s*\|", line)
        if match:
            uid = match.group(1) or uid
            table.setdefault(uid, set()).add(int(match.group(2)))
    return table


def internals_extra_metrics() -> set[str]:
    text = (REPO / "docs" / "internals.md").read_text()
    section = text.split("## Metrics beyond the design table", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`(algopack_\w+)", section, flags=re.MULTILINE))


def recorded_metrics() -> set[str]:
    """Names recorded by prometheus/rules (panels may read them, e.g. the obstats ratio)."""
    names = set()
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names.update(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return names


def metric_names(expr: promql_parser.Expr) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if isinstance(child, promql_parser.Expr):
                visit(child)
        for child in getattr(node, "args", None) or []:
            visit(child)

    visit(expr)
    return names


DASHBOARDS = load_dashboards()
QUERIES = [
    pytest.param(dash, panel, target, id=f"{dash['uid']}:{panel['id']}:{target['refId']}")
    for dash in DASHBOARDS.values()
    for panel, target in panel_queries(dash)
]


def test_dashboards_are_the_documented_ones():
    table = internals_dashboard_table()
    assert set(table) == {"algopack-overview", "algopack-health", "algopack-slo"}
    assert {d["uid"] for d in DASHBOARDS.values()} == set(table)
    for dash in DASHBOARDS.values():
        ids = {p["id"] for p in all_panels(dash)}
        assert table[dash["uid"]] <= ids, f"{dash['uid']}: panels {table[dash['uid']] - ids} are missing"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name):
    dash = DASHBOARDS[name]
    assert name == f"{dash['uid']}.json"
    assert len(dash["uid"]) <= 40 and re.fullmatch(r"[a-z0-9-]+", dash["uid"])
    assert dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in all_panels(dash)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}: {ids}"
    for panel in all_panels(dash):
        assert panel["type"] in {"row", "timeseries", "stat", "table", "state-timeline", "heatmap"}, panel["type"]
        assert panel.get("title"), panel["id"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['id']} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))


def _datasource_refs(node: object, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.{key}", value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{index}]")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_hard_coded_datasource(name):
    dash = DASHBOARDS[name]
    refs = list(_datasource_refs(dash))
    assert refs
    for where, ref in refs:
        # The built-in annotation source is Grafana itself; everything else goes via the variable.
        if where.startswith(".annotations") and ref == {"type": "grafana", "uid": "-- Grafana --"}:
            continue
        assert ref == {"type": "prometheus", "uid": DATASOURCE_VAR}, f"{name}{where}: {ref!r}"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert not variables["datasource"].get("current"), "the default datasource is picked, not named"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_market_and_endpoint_variables(name):
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    for var in ("market", "endpoint"):
        spec = variables[var]
        assert spec["type"] == "query" and spec["multi"] and spec["includeAll"]
        query = spec["query"]["query"] if isinstance(spec["query"], dict) else spec["query"]
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert match and match.group(2) == var
        assert metric_names(promql_parser.parse(substitute(match.group(1)))) <= DESIGN_METRICS
    # The endpoint choices follow the chosen markets.
    assert "$market" in json.dumps(variables["endpoint"]["query"])


@pytest.mark.parametrize(("dash", "panel", "target"), QUERIES)
def test_panel_query_parses(dash, panel, target):
    expr = target["expr"]
    used = set(re.findall(r"\$\{?(\w+)", expr))
    defined = {v["name"] for v in dash["templating"]["list"]}
    assert used <= defined | {"__range", "__rate_interval", "__interval"}, used - defined
    concrete = substitute(expr)
    assert "$" not in concrete
    parsed = promql_parser.parse(concrete)
    recorded = recorded_metrics()
    contract = DESIGN_METRICS | internals_extra_metrics() | recorded
    names = metric_names(parsed)
    assert names, f"no metric in {expr}"
    assert names <= contract, f"unknown metric(s) {names - contract} in {expr}"
    # Per-pair and per-market metrics honour the dashboard's variables.
    for name in names - recorded - {"ALERTS", "algopack_delay_threshold_seconds", "algopack_build_info",
                         "algopack_calendar_last_reload_successful", "algopack_iss_requests_total",
                         "algopack_iss_response_bytes_total", "algopack_calendar_sync_last_run_successful"}:
        assert re.search(re.escape(name) + r'\{[^}]*market=~"\$market"', expr), f"{name} ignores $market"
    if target.get("format") == "table" or panel["type"] == "table":
        assert target.get("instant") and not target.get("range"), "tables are instant queries"


def test_substitute():
    assert substitute('x{m=~"$market"}[$__rate_interval] ${endpoint} [[__range]]') == \
        'x{m=~"eq|fx|fo"}[1m] .* 1h'


def test_metric_names_walks_the_whole_expression():
    expr = promql_parser.parse('quantile_over_time(0.5, (a{x="1"} and changes(b[5m]) > 0)[1h:15s]) / on() c')
    assert metric_names(expr) == {"a", "b", "c"}


def test_publish_delay_table_covers_the_old_daily_statistics():
    overview = DASHBOARDS["algopack-overview.json"]
    table = next(p for p in all_panels(overview) if p["id"] == 13)
    exprs = " ".join(t["expr"] for t in table["targets"])
    for fn in ("max_over_time", "min_over_time", "avg_over_time", "quantile_over_time(0.5,"):
        assert fn in exprs
    assert exprs.count("[$__range:") == 4, "statistics follow the dashboard's time range"
    renamed = next(t for t in table["transformations"] if t["id"] == "organize")["options"]["renameByName"]
    assert sorted(renamed.values()) == ["max", "mean", "median", "min"]


def test_lag_panel_draws_the_configured_threshold():
    overview = DASHBOARDS["algopack-overview.json"]
    lag = next(p for p in all_panels(overview) if p["id"] == 11)
    assert any("algopack_delay_threshold_seconds" in t["expr"] for t in lag["targets"])


# ---------------------------------------------------------------- provisioning


def test_datasource_provisioning():
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == DATASOURCE_UID
    assert source["url"] == "http://prometheus:9090" and source["access"] == "proxy"
    assert source["isDefault"] is True


def test_dashboard_provisioning():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "algopack.yml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    compose = REPO / "docker-compose.yml"
    if compose.exists():
        # The compose file must mount our folders where Grafana and the provider look.
        services = yaml.safe_load(compose.read_text())["services"]
        volumes = [str(v) for s in services.values() if "grafana" in str(s.get("image", ""))
                   for v in s.get("volumes", [])]
        assert any(v.rstrip("/").endswith(":" + provider["options"]["path"]) or
                   (":" + provider["options"]["path"] + ":") in v for v in volumes), volumes
        assert any(":/etc/grafana/provisioning" in v for v in volumes), volumes


# ---------------------------------------------------------------- alert links

LINK = re.compile(r"/d/([A-Za-z0-9_-]+)/?(?:[^\s\"'<>]*?[?&]viewPanel=(\d+))?")


def alert_link_sources() -> list[Path]:
    paths = sorted((REPO / "alertmanager" / "templates").glob("*.tmpl"))
    paths += sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    return [p for p in paths if p.is_file()]


def test_alert_links_point_to_existing_panels():
    panels = {d["uid"]: {p["id"] for p in all_panels(d)} for d in DASHBOARDS.values()}
    links = [(path, m) for path in alert_link_sources() for m in LINK.finditer(path.read_text())]
    for path, match in links:
        uid, panel_id = match.group(1), match.group(2)
        where = f"{path.relative_to(REPO)}: {match.group(0)}"
        assert uid in panels, f"unknown dashboard uid in {where}"
        if panel_id is not None:
            assert int(panel_id) in panels[uid], f"no panel {panel_id} in {uid} ({where})"
    rules = [p for p in alert_link_sources() if p.suffix == ".yml"]
    if rules:
        # Once the alert rules exist, every alert carries a dashboard link (design: Alerts).
        assert links, "alert rules/templates exist but none links to a dashboard panel"


def test_slo_dashboard_reads_the_slo_series():
    slo = DASHBOARDS["algopack-slo.json"]
    by_id = {p["id"]: p for p in all_panels(slo)}
    assert set(by_id) == {30, 31, 32, 33, 34}
    exprs = {i: " ".join(t["expr"] for t in p["targets"]) for i, p in by_id.items()}
    assert "algopack:slo_target:ratio" in exprs[30] and "ratio_rate30d" in exprs[30]
    assert "[$__range]" in exprs[31] and slo["time"]["from"] == "now/M"  # this month by default
    assert by_id[32]["type"] == "heatmap" and by_id[32]["targets"][0]["format"] == "heatmap"
    assert "algopack_bucket_publish_delay_seconds_bucket" in exprs[32]
    assert "histogram_quantile(0.99" in exprs[33]
    assert 'outcome!="on_time"' in exprs[34] and "[1d]" in exprs[34]
