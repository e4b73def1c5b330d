"""The real Prometheus parser (promtool) agrees with every dashboard query; the rest of the
dashboard checks are unit tests (tests/unit/test_dashboards.py), and a live Prometheus runs
them all in tests/integration/test_dashboard_queries.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.unit.test_dashboards import DASHBOARDS, panel_queries, substitute

pytestmark = [pytest.mark.integration, pytest.mark.needs_binary("promtool")]


def test_queries_pass_promtool(tmp_path):
    """The real Prometheus parser agrees: every substituted query as a recording rule."""
    rules = [{"record": f"dashboard:{d['uid'].replace('-', '_')}:panel{p['id']}_{t['refId']}",
              "expr": substitute(t["expr"])}
             for d in DASHBOARDS.values() for p, t in panel_queries(d)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
