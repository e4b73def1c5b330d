"""Prometheus configuration and alerting rules: promtool checks, promtool unit tests, and
structural checks that keep the rules and their tests honest."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.render_prometheus import render_prometheus_config

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))

# docs/internals.md "Dashboards": the ids alert links may point at.
DASHBOARD_PANELS = {"algopack-overview": set(range(10, 18)), "algopack-health": set(range(20, 26)),
                    "algopack-slo": set(range(30, 36))}
EXPECTED_ALERTS = {
    "AlgopackMissingIntervals", "AlgopackDataDelayed", "AlgopackHi2Missing",
    "AlgopackObstatsSecidsDropped", "AlgopackPollFailing", "AlgopackExporterDown",
    "AlgopackCalendarReloadFailed", "AlgopackCalendarSyncFailing", "AlgopackWatchdog", "AlgopackFeedSLOBurn",
}
# The dead man's switch: always firing, never shown to people (no Telegram, no dashboard).
WATCHDOG = "AlgopackWatchdog"
DATA_ALERTS = {"AlgopackMissingIntervals", "AlgopackDataDelayed", "AlgopackObstatsSecidsDropped"}

pytestmark = pytest.mark.needs_binary("promtool")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def alert_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def unit_tests() -> list[dict]:
    cases = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    assert RULE_FILES
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A broken rule must make the suite fail (guards against tests that cannot fail)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    text = (PROM / "rules" / "algopack.yml").read_text(encoding="utf-8")
    broken = text.replace("algopack_session_elapsed_seconds > 600", "algopack_session_elapsed_seconds >= 0")
    assert broken != text
    (rules_dir / "algopack.yml").write_text(broken, encoding="utf-8")
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    shutil.copy(PROM / "tests" / "data_delayed_test.yml", tests_dir)
    result = promtool("test", "rules", str(tests_dir / "data_delayed_test.yml"))
    assert result.returncode != 0
    assert "AlgopackDataDelayed" in result.stdout + result.stderr


def test_every_alert_is_documented_and_labelled() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    docs = (REPO / "docs" / "alerts.md").read_text(encoding="utf-8")
    for rule in rules:
        name = rule["alert"]
        assert f"`{name}`" in docs, f"{name} is not described in docs/alerts.md"
        if name == WATCHDOG:
            assert rule["expr"] == "vector(1)" and rule["labels"] == {"severity": "none"} and "for" not in rule
            continue
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        for key in ("title", "summary", "description", "resolved", "dashboard"):
            assert annotations.get(key), f"{name} lacks annotation {key}"
        assert re.search("[а-яА-Я]", annotations["title"] + annotations["description"]), name
        link = re.match(r"^/d/([a-z-]+)/\?viewPanel=(\d+)", annotations["dashboard"])
        assert link, f"{name}: dashboard must be /d/<uid>/?viewPanel=<id>..."
        assert int(link.group(2)) in DASHBOARD_PANELS[link.group(1)], name


def test_rules_never_compare_prometheus_time_with_exporter_clock() -> None:
    for rule in alert_rules():
        assert "time()" not in rule["expr"], rule["alert"]
        assert "timestamp(" not in rule["expr"], rule["alert"]


def test_data_alerts_require_an_open_session() -> None:
    for rule in alert_rules():
        if rule["alert"] == "AlgopackMissingIntervals":
            # Holes are judged in the session and for the closing bucket's grace after it.
            assert "algopack_session_checking == 1" in rule["expr"], rule["alert"]
        elif rule["alert"] in DATA_ALERTS:
            assert "algopack_session_open == 1" in rule["expr"], rule["alert"]
            assert "algopack_session_elapsed_seconds" in rule["expr"], rule["alert"]
        if rule["alert"] in DATA_ALERTS:
            assert "unless on(market" in rule["expr"] and "algopack_up" in rule["expr"], rule["alert"]


def test_every_alert_has_positive_and_negative_unit_tests() -> None:
    cases = unit_tests()
    for name in EXPECTED_ALERTS:
        mine = [case for case in cases if case["alertname"] == name]
        firing = [case for case in mine if case.get("exp_alerts")]
        quiet = [case for case in mine if not case.get("exp_alerts")]
        assert firing, f"{name}: no test where it fires"
        assert name == WATCHDOG or len(quiet) >= 2, f"{name}: needs tests where it stays quiet / resolves"
        for case in firing:
            for alert in case["exp_alerts"]:
                assert alert.get("exp_annotations"), f"{name}: exp_annotations not checked"
                assert alert["exp_annotations"].get("description"), name


def test_render_prometheus_config_for_local_runs(tmp_path: Path) -> None:
    out = render_prometheus_config(tmp_path / "prometheus.yml", "127.0.0.1:19877", "127.0.0.1:19093",
                                   PROM / "rules", scrape_interval="2s", eval_interval="1s")
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "1s"}
    job = config["scrape_configs"][0]
    assert job["job_name"] == "algopack"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:19877"]}]
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["127.0.0.1:19093"]}]
    assert Path(config["rule_files"][0]).is_absolute()
    result = promtool("check", "config", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout

    bare = render_prometheus_config(tmp_path / "bare.yml", "127.0.0.1:1", None)
    assert "alerting" not in yaml.safe_load(bare.read_text(encoding="utf-8"))


def test_obstats_alert_compares_with_the_same_interval_of_the_previous_day() -> None:
    """iss-api.md §11: the secid count follows the time of day, so the alert compares a bucket
    with the same bucket of the previous trading day, never with that day's maximum; and the
    promtool tests cover a dip yesterday had too, a real loss, and no such interval yesterday."""
    rule = next(r for r in alert_rules() if r["alert"] == "AlgopackObstatsSecidsDropped")
    assert "algopack_obstats_secids_prev_day_same_interval" in rule["expr"]
    assert "prev_day_max" not in rule["expr"]
    text = (PROM / "tests" / "hi2_obstats_test.yml").read_text(encoding="utf-8")
    assert "algopack_obstats_secids_prev_day_same_interval" in text and "NaN" in text
